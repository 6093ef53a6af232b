"""Commands for a run already submitted: ``resume``, ``rerun``, ``regenerate`` and ``control``.

Each records what it did in the run's event log (actor ``cli``) before filming.
"""

from __future__ import annotations

import click

from sparkle_motion_dagster.cli.context import open_film_context, submitted_run
from sparkle_motion_dagster.cli.errors import CliError
from sparkle_motion_dagster.cli.filming import film
from sparkle_motion_dagster.cli.options import SEED

CONTROL_TARGETS = {"pause": "paused", "resume": "running", "stop": "stopped"}


@click.command("resume")
@click.argument("run_id")
def resume(run_id: str) -> int:
    """Materialize only what is missing or failed for a run.

    A file that no longer matches its record (missing, damaged, swapped) counts as missing: its
    stage makes it again, and the stages after it follow.
    """
    return resume_film(run_id)


def resume_film(run_id: str, *, actor: str = "cli") -> int:
    """Film what is missing: first mark failed the film's Dagster runs whose process died (freeing
    their slots), and wait, saying so, while another process still films it."""
    from sparkle_motion_dagster.orchestration.runner import mark_abandoned_runs, missing_stages
    from sparkle_motion_dagster.lifecycle import control
    from sparkle_motion_dagster.store import integrity
    from sparkle_motion_dagster.lifecycle.events import write_event
    from sparkle_motion_dagster.store.run_files import stage_file

    instance, defs, store = open_film_context()
    run_id = submitted_run(instance, run_id)
    state = control.read_state(store, run_id)["state"]
    if state == "paused" and not control.resume(store, run_id, actor=actor):
        click.echo(f"{run_id} resumed; the command filming it carries on")
        return 0
    if state == "stopped":
        control.set_state(store, run_id, "running", actor=actor)
    abandoned = mark_abandoned_runs(instance, run_id)
    signum = wait_for_other_runs(instance, store, run_id)
    if signum is not None:
        return 128 + signum
    damaged = integrity.damaged_files(store, run_id)
    stages = missing_stages(instance, store, run_id, damaged)
    write_event(store.root, run_id, "resume", {"stages": stages, "abandoned_dagster_runs": abandoned,
                                               "damaged": damaged}, actor=actor)
    if not stages:
        click.echo(f"{run_id} is complete (every file matches its record); nothing to do")
        click.echo(f"video_final: {stage_file(store, run_id, 'video_final', 'video_final.mp4')}")
        return 0
    click.echo(f"resuming {run_id}: {', '.join(stages)}")
    if damaged:
        click.echo(f"made again: {integrity.describe(damaged)}")
    return film(instance, defs, store, run_id, stages=stages)


def film_what_was_left(run_id: str) -> int:
    """Film what the film's held Dagster run was to make and did not (with its config: a forced
    stage stays forced); what is missing when that is nothing."""
    from sparkle_motion_dagster.orchestration.liveness import stages_left

    instance, defs, store = open_film_context()
    stages, run_config = stages_left(instance, run_id)
    if not stages:
        return resume_film(run_id)
    click.echo(f"resuming {run_id}: {', '.join(stages)}")
    return film(instance, defs, store, run_id, stages=stages, run_config=run_config or None)


def wait_for_other_runs(instance, store, run_id: str) -> int | None:
    """While another live Dagster run films ``run_id``, wait for it to end, saying which and since
    when (a run whose process dies meanwhile is marked failed). Returns the signal that ended the
    wait, or None."""
    from datetime import datetime, timezone

    import dagster as dg

    from sparkle_motion_dagster.cli.waiting import say, signal_name, wait_until
    from sparkle_motion_dagster.orchestration import liveness

    told: set[str] = set()

    def others_ended() -> bool:
        liveness.fail_dead_runs(instance, run_id)
        live = instance.get_run_records(filters=dg.RunsFilter(tags={liveness.PARTITION_TAG: run_id},
                                                              statuses=liveness.LIVE_STATUSES))
        for record in live:
            if record.dagster_run.run_id not in told:
                told.add(record.dagster_run.run_id)
                since = datetime.fromtimestamp(record.start_time, timezone.utc) if record.start_time \
                    else record.create_timestamp
                say(f"{run_id}: waiting since {since.strftime('%Y-%m-%d %H:%M:%S UTC')} for "
                    f"{liveness.describe_run(instance, record.dagster_run.run_id)}, which films it now, to end")
        return not live

    _, signum = wait_until(others_ended, poll_seconds=1.0)
    if signum is not None:
        say(f"{run_id}: {signal_name(signum)}: stopped waiting; nothing was started "
            f"(continue later with `sparkle-motion resume {run_id}`)")
    return signum


@click.command("rerun")
@click.argument("run_id")
@click.option("--from", "from_stage", required=True, metavar="STAGE", help="the stage (asset) to redo")
def rerun(run_id: str, from_stage: str) -> int:
    """Redo a stage and everything downstream.

    The stage renders every item again (forced); the stages after it reuse what did not change.
    A stage before it that is missing or has a file that no longer matches its record is made
    first (only what is missing or damaged).
    """
    from sparkle_motion_dagster.orchestration.runner import FILM_STAGES, downstream_of, force_config, missing_stages
    from sparkle_motion_dagster.store import integrity
    from sparkle_motion_dagster.lifecycle.events import write_event

    instance, defs, store = open_film_context()
    run_id = submitted_run(instance, run_id)
    chosen = set(downstream_of(from_stage))
    damaged = integrity.damaged_files(store, run_id)
    repairs = [s for s in missing_stages(instance, store, run_id, damaged) if s not in chosen]
    stages = [s for s in FILM_STAGES if s in chosen or s in repairs]
    write_event(store.root, run_id, "rerun", {"from": from_stage, "stages": stages, "repairs": repairs,
                                              "damaged": damaged}, actor="cli")
    click.echo(f"re-materializing {', '.join(stages)} for {run_id}")
    if repairs:
        why = integrity.describe({k: v for k, v in damaged.items() if k in repairs}) or "never materialized"
        click.echo(f"first making again what {from_stage} needs: {', '.join(repairs)} ({why})")
    return film(instance, defs, store, run_id, stages=stages, run_config=force_config([from_stage]))


@click.command("regenerate")
@click.argument("run_id")
@click.option("--shot", help="the shot id, e.g. shot_002")
@click.option("--character", help="a character id: its reference portrait, then the keyframes and clips it is in")
@click.option("--what", type=click.Choice(["clip", "keyframe"]), default="clip", show_default=True,
              help="with --shot: the shot's clip, or its two keyframes (and the neighbouring clips)")
@click.option("--seed", type=SEED, help="the new seed (default: the current one + 1)")
def regenerate(run_id: str, shot: str | None, character: str | None, what: str, seed: int | None) -> int:
    """Re-render one shot's clip or keyframes, or one character's portrait.

    Then what depends on it: for a character, exactly the keyframes and clips it is
    in; assembly and the final cut. Every other file stays as it is.
    """
    from sparkle_motion_dagster.lifecycle.events import read_events, write_event
    from sparkle_motion_dagster.lifecycle.regenerate import (
        format_seeds,
        plan_character_regeneration,
        plan_regeneration,
    )

    if (shot is None) == (character is None):
        raise CliError("regenerate: give either --shot SHOT_ID or --character CHARACTER_ID")
    instance, defs, store = open_film_context()
    run_id = submitted_run(instance, run_id)
    if character is not None:
        change = plan_character_regeneration(store, run_id, character, seed=seed)
        subject, key = character, "character_id"
    else:
        change = plan_regeneration(store, run_id, shot, what=what, seed=seed)
        subject, key = shot, "shot_id"
    earlier = sum(1 for e in read_events(store.root, run_id, "regeneration") if e["payload"].get(key) == subject)
    count = earlier + 1
    write_event(store.root, run_id, "regeneration", {**change, "count": count}, actor="cli")
    if character is not None:
        click.echo(f"{character}: regenerating the reference portrait with seed {change['seeds'][character]}, then "
                   f"the keyframes it is in ({', '.join(change['keyframes']) or 'none'}) "
                   f"(regenerations: {count})")
        if change.get("note"):
            click.echo(change["note"])
    else:
        click.echo(f"{shot}: regenerating the {what} with seed(s) {format_seeds(change['seeds'])} "
                   f"(regenerations: {count})")
    return film(instance, defs, store, run_id, stages=change["stages"])


@click.command("control")
@click.argument("action", type=click.Choice(list(CONTROL_TARGETS)))
@click.argument("run_id")
def control(action: str, run_id: str) -> int:
    """Pause, resume or stop a film run that is being filmed.

    pause: the running stage finishes, then the run's Dagster run ends and the film holds,
    keeping no GPU; resume: the film carries on (the command that filmed it, if it waits, or this
    one: only what is missing is filmed); stop: it ends at the next item or stage (continue it
    later with ``resume``). A run that nothing is filming is left as it is (start it with ``resume``).
    """
    from sparkle_motion_dagster.cli.context import open_store, run_with_files
    from sparkle_motion_dagster.lifecycle import control as run_control
    from sparkle_motion_dagster.lifecycle.events import write_event

    # Dagster-free unless there is the rest to film here: the record and the filming processes' markers say it all.
    store = open_store()
    run_id = run_with_files(store, run_id)
    current = run_control.read_state(store, run_id)["state"]
    if action == "resume" and current == "stopped":
        raise CliError(run_control.stopped_message(run_id))
    running = run_control.is_running(store, run_id)
    if not running and current != "paused":
        raise CliError(f"{run_id} is not running (nothing is filming it), so there is nothing to {action}; "
                       f"start it with `sparkle-motion resume {run_id}`")
    hold = run_control.read_hold(store, run_id)
    if action == "resume":
        launch = run_control.resume(store, run_id)
        write_event(store.root, run_id, "control.resume", {"previous": current, "launched": launch}, actor="cli")
        if not launch:
            click.echo(f"{run_id} resumed")
            return 0
        click.echo(f"{run_id} resumed; nothing is filming it, so the rest is filmed here")
        return film_what_was_left(run_id)
    run_control.set_state(store, run_id, CONTROL_TARGETS[action])
    write_event(store.root, run_id, f"control.{action}", {"previous": current}, actor="cli")
    click.echo({"pause": f"{run_id} paused: the running stage finishes, then the film holds (its Dagster run "
                         f"ends, keeping no GPU); continue it with `sparkle-motion control resume {run_id}`",
                "stop": f"{run_id} stopped: it ends " + ("now (it was held at a pause)" if hold else
                                                          "at the next item or stage")
                        + f"; continue later with `sparkle-motion resume {run_id}`"}[action])
    return 0


COMMANDS = (resume, rerun, regenerate, control)
