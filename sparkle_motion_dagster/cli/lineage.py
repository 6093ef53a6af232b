"""What made every file, and filming it again: ``provenance`` and ``replay``."""

from __future__ import annotations

from pathlib import Path

import click

from sparkle_motion_dagster.cli.errors import CliError
from sparkle_motion_dagster.cli.output import echo_json, echo_table


def _short(digest: str | None) -> str | None:
    return digest.split(":")[-1][:12] if digest else None


@click.command("provenance")
@click.argument("run_id")
@click.option("--file", "wanted", metavar="PATH", help="one file (its path or name): its whole lineage to the plan")
@click.option("--json", "as_json", is_flag=True, help="the records as JSON")
def provenance_command(run_id: str, wanted: str | None, as_json: bool) -> int:
    """What made each file of a run: backend, model, seed and inputs.

    With --file, that file's record and every record it was made from, back to the plan.
    """
    from sparkle_motion_dagster.cli.context import open_store, run_with_files
    from sparkle_motion_dagster.insight import provenance

    store = open_store(read_only=True)
    run_id = run_with_files(store, run_id)
    records = provenance.read_records(store, run_id)
    if wanted:
        record = provenance.find_record(records, wanted, store.run_dir(run_id))
        if record is None:
            raise CliError(f"--file: {wanted!r} is not a published file of {run_id} "
                           f"(see `sparkle-motion provenance {run_id}`)")
        records = provenance.lineage(records, record)
    if as_json:
        echo_json({"run_id": run_id, "records": records})
        return 0
    if not records:
        click.echo(f"{run_id}: no provenance records (filmed before records were kept, or not filmed yet)")
        return 0
    rows = []
    for r in records:
        indent = "  " * r.get("depth", 0)
        rows.append([indent + r["path"], r["stage"], r.get("backend"), r.get("seed"), _short(r["sha256"]),
                     ", ".join(Path(i["path"]).name for i in r["inputs"]) or None])
    echo_table(["FILE", "STAGE", "BACKEND", "SEED", "SHA256", "INPUTS"], rows)
    models = {(r["model"].get("backend"), r["model"].get("model"), r["model"].get("weights_digest"),
               r["model"].get("device"), r["model"].get("dtype"))
              for r in records if (r.get("model") or {}).get("model")}
    for backend, model, digest, device, dtype in sorted(models, key=str):
        click.echo(f"model: {backend} {model} weights {_short(digest)} on {device} ({dtype})")
    versions = records[0]["versions"]
    click.echo("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    click.echo(f"{len(records)} record(s) under {store.run_dir(run_id) / provenance.FOLDER}")
    return 0


@click.command("replay")
@click.argument("run_id")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="compare every file with the original's and say which differ")
def replay(run_id: str, compare: bool) -> int:
    """Film a run again, exactly: a new run_id from its recorded plan, seeds and settings.

    On the embedded backends every file is byte-identical to the original's; with real models
    the comparison says which files (and which recorded settings or versions) differ.
    """
    from sparkle_motion_dagster.cli.context import open_film_context, submitted_run
    from sparkle_motion_dagster.cli.filming import film
    from sparkle_motion_dagster.orchestration.runner import submit_run
    from sparkle_motion_dagster.insight import replay as replaying
    from sparkle_motion_dagster.lifecycle.events import write_event

    instance, defs, store = open_film_context()
    run_id = submitted_run(instance, run_id)
    source = replaying.replay_source(store, run_id)
    clips = defs.resources["clips"]
    for line in replaying.backend_differences(source, defs.resources):
        click.echo(f"note: {line}", err=True)
    new_id = submit_run(store, instance, source.document, source=f"replay:{run_id}", preview=source.preview,
                        clip_model_ids=clips.model_ids, clip_backend=clips.backend)
    replaying.copy_overrides(store, source, new_id)
    write_event(store.root, new_id, "replay", {"of": run_id, "run_config": source.run_config}, actor="cli")
    click.echo(f"replaying {run_id} as {new_id}")
    status = film(instance, defs, store, new_id, run_config=source.run_config or None)
    if status == 0 and compare:
        rows = replaying.compare_runs(store, run_id, new_id)
        differing = [r for r in rows if not r["identical"]]
        click.echo(f"identical: {len(rows) - len(differing)}/{len(rows)} file(s)")
        for row in differing:
            if row.get("only_estimate"):
                click.echo(f"differs only in its cost estimate (the history has grown): {row['path']}")
                continue
            what = "missing" if row.get("missing") else ", ".join(sorted(row["differences"])) or "contents"
            click.echo(f"differs: {row['path']} ({what})")
    return status


COMMANDS = (provenance_command, replay)
