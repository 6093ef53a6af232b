"""Looking at runs: ``artifacts``, ``status``, ``runs``, ``events`` and ``review``.

Each prints a table for a person, or with ``--json`` the same payload the artifact
service serves. :func:`main` runs these commands and the file commands
(:mod:`sparkle_motion_dagster.cli.files`) on their own, as
``python -m sparkle_motion_dagster.cli.inspection``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sparkle_motion_dagster.cli import files
from sparkle_motion_dagster.cli.context import open_instance_and_store, open_store, run_with_files, warn_if_ephemeral
from sparkle_motion_dagster.cli.invocation import command_group, run_command
from sparkle_motion_dagster.cli.options import GreedyOptionsCommand, exactly_one
from sparkle_motion_dagster.cli.output import echo_json, echo_table, human_bytes, progress_bar

# The service's defaults, as ``serve-artifacts`` and ``health`` use them.
DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV = files.DEFAULT_HOST, files.DEFAULT_PORT, files.TOKEN_ENV

json_option = click.option("--json", "as_json", is_flag=True, help="print the JSON the artifact service serves")


def _seconds(value: float | None) -> str | None:
    return f"{value:.2f} s" if value is not None else None


def stage_folder(name: str) -> str:
    """The folder the catalog files a stage under, for an asset key (``video_final``) or a
    folder name (``finalize``, ``lipsync``, ``review``); both name the same stage."""
    from sparkle_motion_dagster import stages

    if name in stages.STAGE_KEYS:
        return stages.folder(name)
    if name in (*stages.folder_order(), "review"):
        return name
    raise ValueError(f"--stage: unknown stage {name!r}; give an asset ({', '.join(stages.STAGE_KEYS)}) "
                     f"or a folder ({', '.join((*stages.folder_order(), 'review'))})")


@click.command("artifacts")
@click.argument("run_id")
@click.option("--stage", help="only this stage: an asset (video_final) or its folder (finalize)")
@json_option
def artifacts(run_id: str, stage: str | None, as_json: bool) -> int:
    """List a run's artifacts (the /artifacts payload)."""
    from sparkle_motion_dagster.orchestration.status import artifacts_view

    stage = stage_folder(stage) if stage else None
    store = open_store(read_only=True)
    payload = artifacts_view(store, run_with_files(store, run_id), stage)
    if as_json:
        echo_json(payload)
        return 0
    run_dir = store.run_dir(run_id)
    rows = []
    for row in payload["artifacts"]:
        path = Path(row["local_path"])
        shown = path.relative_to(run_dir) if run_dir in path.parents else path
        rows.append([row["stage"], row["artifact_type"], row["media_type"], human_bytes(row["size_bytes"]),
                     _seconds(row["duration_s"]), shown])
    if rows:
        echo_table(["STAGE", "TYPE", "MEDIA", "SIZE", "DURATION", "PATH"], rows)
        click.echo(f"{len(rows)} artifact(s) in {len(payload['stages'])} stage(s) under {run_dir}")
    else:
        click.echo(f"{run_id}: no artifacts" + (f" for stage {stage}" if stage else ""))
    review = payload["review_summary"]
    click.echo(f"review: {review['status']}" + (f" ({review['banner']})" if review["banner"] else ""))
    return 0


def held_cell(stage: dict) -> str | None:
    """How long a stage waited at a pause: ``since 12:08:43`` while it holds, else the seconds it held."""
    if stage["status"] == "held":
        return f"since {stage['held_since'][11:19]}" if stage.get("held_since") else "held"
    return _seconds(stage.get("held_s")) if stage.get("held_s") else None


def review_line(review: dict) -> str:
    """``approved by Ava at ...``; a pending review names nobody (an earlier review that no longer
    applies is said as such)."""
    if review["status"] != "pending":
        return f"{review['status']} by {review['reviewer']} at {review['reviewed_at']}" if review["reviewer"] \
            else review["status"]
    if review.get("stale_review") and review["reviewer"]:
        return f"pending (the final changed after {review['reviewer']}'s review at {review['reviewed_at']})"
    return "pending"


def _echo_status(status: dict) -> None:
    click.echo(f"{status['run_id']}  {status['title'] or '(untitled)'}")
    click.echo(f"status:    {status['status']} ({status['detail']})")
    click.echo(f"progress:  {progress_bar(status['progress'])} {status['stages_done']}/{status['stages_total']} "
               f"stages   current stage: {status['current_stage']}")
    if status.get("estimated_seconds_left") is not None:
        from sparkle_motion_dagster.insight.estimates import format_seconds

        click.echo(f"time left: about {format_seconds(status['estimated_seconds_left'])} (estimate)")
    rows = [[s["name"], s["asset"], s["status"], (s["started_at"] or "")[:19].replace("T", " ") or None,
             _seconds(s["duration_s"]), held_cell(s), len(s["artifacts"])] for s in status["stages"]]
    click.echo()
    # DURATION is the stage's own time, from its actual start to its end; HELD is the time it waited
    # at a pause before it started (its wall time is the two together).
    echo_table(["STAGE", "ASSET", "STATUS", "STARTED (UTC)", "DURATION", "HELD", "FILES"], rows)
    for stage in status["stages"]:
        if stage["error"]:
            click.echo(f"error in {stage['name']}: {stage['error']}")
    review = status["review"]
    if review:
        click.echo(f"\nreview:    {review_line(review)}")
        if review["banner"]:
            click.echo(f"           {review['banner']}")
    _echo_checks(status.get("checks") or [])
    for regeneration in status["regenerations"]:
        click.echo(regeneration["note"])
    if status["dagster_runs"]:
        click.echo()
        echo_table(["DAGSTER RUN", "STATUS", "SOURCE", "CREATED (UTC)"],
                   [[run["dagster_run_id"], run["status"], run["source"], run["created_at"]]
                    for run in status["dagster_runs"]])
    if status["log"]:
        click.echo("\nrecent log:")
        for line in status["log"]:
            click.echo(f"  {line['timestamp'][11:19]}  {line['level']:<7} {line['stage'] or '-':<15} "
                       f"{line['message']}")


def _echo_checks(checks: list[dict]) -> None:
    """The automated checks, one line each: what failed names the item and the value against its threshold."""
    if not checks:
        return
    click.echo("\nchecks:")
    for check in checks:
        mark = "passed" if check["passed"] else ("FAILED" if check["severity"] == "ERROR" else "warning")
        click.echo(f"  {check['asset'] + '/' + check['name']:<30} {mark:<8} {check['description']}")


@click.command("status")
@click.argument("run_id")
@json_option
@click.option("--log-lines", type=int, default=10, show_default=True, help="how many recent log lines")
def status(run_id: str, as_json: bool, log_lines: int) -> int:
    """Where a film run stands.

    Its stages with times and files, progress, review, Dagster runs and recent log.
    """
    from sparkle_motion_dagster.orchestration.status import film_status

    instance, store = open_instance_and_store(read_only=True)
    payload = film_status(instance, store, run_id, log_lines=log_lines)
    if as_json:
        echo_json(payload)
    else:
        _echo_status(payload)
    return 0


@click.command("runs")
@json_option
def runs(as_json: bool) -> int:
    """Every film run with its status, progress and age."""
    from sparkle_motion_dagster.orchestration.status import list_runs
    from sparkle_motion_dagster.store.locations import NoStateError

    try:
        instance, store = open_instance_and_store(read_only=True)
    except NoStateError as missing:
        if as_json:
            echo_json([])
        click.echo(f"no film runs: {missing}", err=as_json)
        return 0
    listed = list_runs(instance, store)
    if as_json:
        echo_json(listed)
        return 0
    if listed:
        echo_table(["RUN_ID", "STATUS", "PROGRESS", "AGE", "REVIEW", "TITLE"],
                   [[r["run_id"], r["status"], f"{round(r['progress'] * 100)}%", r["age"], r["review"], r["title"]]
                    for r in listed])
    else:
        click.echo(f"no film runs yet under {store.root}")
    warn_if_ephemeral(store.root)
    return 0


@click.command("events")
@click.argument("run_id")
@json_option
def events(run_id: str, as_json: bool) -> int:
    """A run's event log.

    Reviews, evacuations, control, reruns and regenerations, oldest first.
    """
    from sparkle_motion_dagster.lifecycle.events import read_events

    store = open_store(read_only=True)
    logged = read_events(store.root, run_with_files(store, run_id))
    if as_json:
        echo_json(logged)
        return 0
    if not logged:
        click.echo(f"{run_id}: no events")
        return 0
    rows = []
    for event in logged:
        payload = json.dumps(event["payload"], default=str, separators=(",", ":"))
        rows.append([event["timestamp"][:19].replace("T", " "), event["event_type"], event["actor"],
                     payload if len(payload) <= 90 else payload[:87] + "..."])
    echo_table(["TIME (UTC)", "TYPE", "ACTOR", "PAYLOAD"], rows)
    return 0


@click.command("review", cls=GreedyOptionsCommand, greedy_options=("--attach",))
@click.argument("run_id")
@click.option("--approve", is_flag=True, help="the final video is good to share")
@click.option("--reject", is_flag=True, help="it is not")
@click.option("--skip", is_flag=True, help="record that review was deliberately skipped (e.g. a test run)")
@click.option("--reviewer", required=True, help="who reviewed it")
@click.option("--notes", default="", help="what the reviewer saw")
@click.option("--attach", multiple=True, metavar="FILE...", help="screenshots, transcripts, notes to keep with it")
@click.option("--sha256", "seen_sha256", metavar="HEX",
              help="the sha256 of the final video you watched (printed by this command; default: the current "
                   "final, only while nothing is filming the run again)")
@click.option("--override-qa", is_flag=True,
              help="with --approve: share the film although automated checks failed (recorded with the approval)")
def review(run_id: str, approve: bool, reject: bool, skip: bool, reviewer: str, notes: str,
           attach: tuple[str, ...], seen_sha256: str | None, override_qa: bool = False) -> int:
    """Record a manual review of a run's final video.

    Give one of --approve, --reject or --skip; the review gate is evaluated again. The review
    binds to the video watched: one of another file, or an approval while the run is being
    filmed again, is refused. Without --sha256 it binds to the current final, except for an
    approval of a final that changed since the last review (watch it, then pass --sha256).
    """
    exactly_one(approve=approve, reject=reject, skip=skip)
    from sparkle_motion_dagster.orchestration.status import film_status
    from sparkle_motion_dagster.lifecycle.review import (
        ReviewRefusedError,
        filming_again,
        final_video_sha256,
        record_review,
        review_state,
    )

    decision = "approve" if approve else "reject" if reject else "skip"
    store = open_store()
    if override_qa and not approve:
        raise click.UsageError("--override-qa goes with --approve")
    run_id = run_with_files(store, run_id)
    instance, _ = open_instance_and_store()
    film = film_status(instance, store, run_id, log_lines=0, artifacts=False)["status"]
    refilming = filming_again(store, run_id, film)
    current = final_video_sha256(store, run_id)
    again = f" (being filmed again: {refilming})" if refilming else ""
    click.echo(f"finalize/video_final.mp4 sha256 {current}{again}")
    if approve and seen_sha256 is None and not refilming and review_state(store, run_id)["stale_review"]:
        raise ReviewRefusedError(f"{run_id}: refused: finalize/video_final.mp4 changed since the last review; watch "
                                 f"it, then approve it with --sha256 {current}")
    record = record_review(store, run_id, decision, reviewer, notes or "", list(attach),
                           sha256=seen_sha256 or (None if refilming else current), refilming=refilming,
                           qa_override=override_qa)
    click.echo(f"{run_id}: {record['status']} by {record['reviewer']} (review {record['review_id']}) "
               f"of sha256 {record['video_final']['sha256']}")
    for attachment in record["attachments"]:
        click.echo(f"  attached {attachment['source']} -> {attachment['path']}")
    state = review_state(store, run_id)
    click.echo("ready to share" if state["ready_to_share"] else
               f"not ready to share: {state['failed_checks'][0]}" if state["failed_checks"] else
               "not ready to share: the final video is not approved")
    from sparkle_motion_dagster.definitions import defs
    from sparkle_motion_dagster.orchestration.runner import run_review_gate

    passed = run_review_gate(defs, instance, run_id)
    click.echo(f"review gate (asset check approved_by_reviewer): {'passed' if passed else 'failed'}")
    return 0


COMMANDS = (artifacts, status, runs, events, review)


def main(argv: list[str] | None = None) -> int:
    """Run one of these commands or a file command; returns the exit status."""
    section = command_group("Look at film runs and their files.", (*COMMANDS, *files.COMMANDS))
    return run_command(section, argv)


if __name__ == "__main__":
    sys.exit(main())
