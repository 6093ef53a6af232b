"""How the dry run shows a film's estimated cost: one row per stage, then the total."""

from __future__ import annotations

import click

from sparkle_motion_dagster.cli.output import echo_table, human_bytes


def echo_estimate(estimate: dict | None) -> None:
    """The estimate's table (stage, backend, seconds, peak memory, basis) and its total."""
    if not estimate:
        return
    from sparkle_motion_dagster.insight.estimates import format_seconds

    rows = []
    for stage, figure in estimate["stages"].items():
        seconds = None if figure["seconds"] is None else format_seconds(figure["seconds"])
        count = figure.get("measurements")
        basis = figure["basis"] + (f" ({count} film{'s' if count > 1 else ''}"
                                   + ("" if figure.get("same_size") else ", across sizes") + ")" if count else "")
        rows.append([stage, figure["backend"], figure["device"], seconds,
                     human_bytes(figure["peak_memory_bytes"]) if figure["peak_memory_bytes"] else None, basis])
    echo_table(["STAGE", "BACKEND", "DEVICE", "TIME", "PEAK MEMORY", "BASIS"], rows)
    total = estimate["total_seconds"]
    overhead = estimate.get("overhead_seconds")
    peak = estimate["peak_memory_bytes"]
    click.echo("estimate: " + ("unknown" if total is None else format_seconds(total))
               + (f" (with {format_seconds(overhead)} fixed overhead)" if overhead else "")
               + (f", peak memory {human_bytes(peak)}" if peak else ""))
    gpu = estimate.get("gpu")
    if gpu:
        click.echo(f"on {gpu['name']} ({gpu['memory_gb']:g} GB): " + ("fits" if gpu["fits"] else "does NOT fit")
                   + f", largest peak {gpu['peak_gb']:.1f} GB"
                   + ("" if gpu["total_seconds"] is None else f", about {format_seconds(gpu['total_seconds'])}"))
        echo_table(["STAGE", "PLACEMENT", "PEAK GB", "FITS", "TIME"],
                   [[stage, row["placement"], f"{row['peak_gb']:.1f}", "yes" if row["fits"] else "NO",
                     None if row["seconds"] is None else format_seconds(row["seconds"])]
                    for stage, row in gpu["stages"].items()])
    for stage, figure in estimate["stages"].items():
        if figure.get("memory_plan"):
            click.echo(f"memory plan, {stage}: {figure['memory_plan']}")
    for source in sorted({f["source"] for f in estimate["stages"].values() if f.get("source")}):
        click.echo(f"published figure: {source}")
    if estimate.get("note"):
        click.echo(f"note: {estimate['note']}")
