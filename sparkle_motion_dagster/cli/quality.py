"""``check``: evaluate every automated quality check on a film's files as they are on disk."""

from __future__ import annotations

import click

from sparkle_motion_dagster.cli.context import open_instance_and_store, run_with_files
from sparkle_motion_dagster.cli.output import echo_json, echo_table


@click.command("check")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="print every check with its measured values as JSON")
def check(run_id: str, as_json: bool) -> int:
    """Check a film as it is now, rendering nothing.

    Every automated check (plan, keyframes, clips, dialogue, final cut) runs through Dagster on
    the files on disk (after an evacuation round trip, a copy back, or a suspicion), so the UI's
    Checks tab shows the results too. Exits 1 when any check fails, naming the item.
    """
    from sparkle_motion_dagster.definitions import defs
    from sparkle_motion_dagster.orchestration.runner import run_quality_checks

    instance, store = open_instance_and_store()
    run_with_files(store, run_id)
    results = run_quality_checks(defs, instance, store, run_id)
    failed = [r for r in results if not r["passed"]]
    if as_json:
        echo_json({"run_id": run_id, "passed": not failed, "checks": results})
    else:
        echo_table(["ASSET", "CHECK", "RESULT", "DETAIL"],
                   [[r["asset"], r["name"], "passed" if r["passed"] else "FAILED", r["description"][:120]]
                    for r in results])
        for result in failed:
            for failure in result["metadata"].get("failures", []):
                click.echo(f"FAILED {result['asset']}/{result['name']}: {failure}", err=True)
        click.echo(f"{run_id}: " + ("every check passed" if not failed else
                                   f"{len(failed)} of {len(results)} checks failed"))
    return 1 if failed else 0


COMMANDS = (check,)
