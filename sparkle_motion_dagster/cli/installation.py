"""Set-up commands: ``doctor`` (what each stage will run on), ``paths`` and ``dev make-tiny-models``.

The diagnosis itself is :func:`sparkle_motion_dagster.cli.doctor.diagnose`; this module only
prints its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sparkle_motion_dagster.cli.output import echo_json, echo_table


def echo_doctor_report(report: dict[str, Any]) -> None:
    """The doctor's report for a person: a line per stage, then ffmpeg, CUDA and packages on
    stdout; its warnings and what is missing on stderr."""
    rows = []
    for stage, info in report.get("stages", {}).items():
        rows.append([stage, info.get("backend"), "ok" if info.get("ok") else "PROBLEM", info.get("device"),
                     info.get("why")])
        if info.get("problem"):
            rows.append(["", "", "", "", info["problem"]])
    if rows:
        echo_table(["STAGE", "BACKEND", "STATE", "DEVICE", "WHY"], rows)
    if "ffmpeg" in report:
        click.echo(f"ffmpeg: {report['ffmpeg']}")
    if "cuda" in report:
        cuda = report["cuda"]
        click.echo("cuda: " + ("torch not installed" if cuda is None else
                               ", ".join(cuda["devices"]) if cuda["available"] else "not available (CPU only)"))
    packages = report.get("packages", {})
    if packages:
        click.echo("packages: " + ", ".join(f"{name} {version}" for name, version in packages.items() if version))
    absent = [name for name, version in packages.items() if not version]
    if absent:
        click.echo("not installed: " + ", ".join(absent)
                   + " (the [models] extra adds torch, diffusers, transformers)")
    for warning in report.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    for problem in report.get("missing", []):
        click.echo(f"missing: {problem}", err=True)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def doctor(as_json: bool) -> int:
    """Which backend each stage uses and what is missing.

    Also the device, ffmpeg, CUDA and the installed packages; exit 1 on a problem.
    """
    from sparkle_motion_dagster.cli.doctor import diagnose

    report = diagnose()
    if as_json:
        echo_json(report)
    else:
        echo_doctor_report(report)
    return 0 if report.get("ok") else 1


@click.command("paths")
def paths() -> int:
    """Print (and create) the state and artifact folders.

    The state folder, DAGSTER_HOME and the artifact root.
    """
    from sparkle_motion_dagster.runs.locations import artifacts_root, dagster_instance, ensure_dagster_home, state_dir

    dagster_instance().dispose()  # creates the storage of a new home, once
    click.echo(f"state:         {state_dir()}")
    click.echo(f"DAGSTER_HOME:  {ensure_dagster_home()}")
    click.echo(f"artifact root: {artifacts_root()}")
    return 0


@click.command("make-tiny-models")
@click.argument("directory", metavar="DIR")
def make_tiny_models(directory: str) -> int:
    """Build tiny random SDXL, Wan, VITS and Wav2Lip models in DIR to try the real adapters."""
    from sparkle_motion_dagster.dev.tiny_models import build_all

    built = build_all(Path(directory))
    for name, path in built.items():
        click.echo(f"built {name}: {path}")
    click.echo("try the real adapters on them:")
    click.echo(f"  export IMAGES_SDXL_MODEL={built['sdxl']}")
    click.echo(f"  export VIDEOS_WAN_MODEL={built['wan-flf2v']}   # or {built['wan-i2v']} (image-to-video only)")
    click.echo(f"  export TTS_VITS_MODEL={built['vits']}")
    click.echo(f"  export WAV2LIP_CHECKPOINT={built['wav2lip']}")
    click.echo("  sparkle-motion run --sample --size 64x64")
    return 0


dev = click.Group("dev", help="Developer tools.", commands=[make_tiny_models])

COMMANDS = (doctor, paths, dev)
