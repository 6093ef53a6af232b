"""No film outlives its process: every Dagster run of a film says which process runs it, and a
run whose process is gone is marked failed and its pool slots are freed, so ``resume`` can
finish the film and other films get the GPU.

A run started by the CLI is tagged with the CLI's pid and host when it is created. A run
launched from the UI, a sensor or a backfill is tagged by its first step
(:func:`tag_run_process`) with the pid of the process that orchestrates it: the one that
wrote the run's start event (the run worker). :func:`fail_dead_runs` runs at the start of
every film and ``resume``, and in the ``dead_runs`` sensor, which the daemon evaluates as it
starts again after a crash, then every half minute.

Freeing a dead run's slots, and reading which run holds the slot a step waits for
(:func:`slot_wait`), are the two things the public API does not offer: both go through
``dagster_gaps.py``, and ``tests/test_dagster_gaps.py`` fails when either changes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg

from sparkle_motion_dagster.orchestration.dagster_gaps import free_pool_slots, pool_slots
from sparkle_motion_dagster.store.storage import process_alive

PID_TAG = "sparkle/pid"
HOST_TAG = "sparkle/host"
# The Dagster run the two tags above were written for: a run re-executed from the UI inherits its
# parent's tags, whose pid is not its own process.
TAGGED_RUN_TAG = "sparkle/pid_of_run"
PARTITION_TAG = "dagster/partition"
LIVE_STATUSES = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]
GPU_POOL = "gpu"


def process_tags(dagster_run_id: str) -> dict[str, str]:
    """The tags of a run this process orchestrates."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), TAGGED_RUN_TAG: dagster_run_id}


def tag_run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Tag a run that has no process tags with its orchestrating process (the pid in its start
    event) and this host. Called by every step as it starts; a no-op once tagged. Steps on
    Celery workers run on other hosts than the run's orchestrator, so they leave it as it is."""
    if run.tags.get(TAGGED_RUN_TAG) == run.run_id or os.environ.get("SPARKLE_EXECUTOR", "") == "celery":
        return
    starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    pid = next((e.dagster_event.pid for e in starts if e.dagster_event and e.dagster_event.pid), None)
    instance.add_run_tags(run.run_id, {PID_TAG: str(pid or os.getpid()), HOST_TAG: socket.gethostname(),
                                       TAGGED_RUN_TAG: run.run_id})


def is_dead(run: dg.DagsterRun) -> bool:
    """A live-looking run on this host whose process is gone (killed before it could record an end)."""
    pid = run.tags.get(PID_TAG, "")
    return (run.status in LIVE_STATUSES and run.tags.get(TAGGED_RUN_TAG) == run.run_id
            and run.tags.get(HOST_TAG) == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)))


def fail_dead_runs(instance: dg.DagsterInstance, run_id: str | None = None) -> list[str]:
    """Mark failed the Dagster runs on this host whose process is gone (of one film run, or of
    every film run when ``run_id`` is None) and free their pool slots; their ids."""
    tags = {PARTITION_TAG: run_id} if run_id else {HOST_TAG: socket.gethostname()}
    dead = []
    for run in instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=LIVE_STATUSES)):
        if not is_dead(run):
            continue
        instance.report_run_failed(run, message=f"the process running it (pid {run.tags[PID_TAG]} on "
                                                f"{run.tags[HOST_TAG]}) is gone; continue the film with "
                                                f"`sparkle-motion resume {run.tags.get(PARTITION_TAG, '')}`")
        free_slots(instance, run.run_id)
        dead.append(run.run_id)
    return dead


def free_slots(instance: dg.DagsterInstance, dagster_run_id: str) -> None:
    """Hand back every pool slot (and pending claim) of a run that will never do it itself."""
    free_pool_slots(instance, dagster_run_id)


@dataclass(frozen=True)
class SlotWait:
    """A step of this run waiting for a pool slot: since when, and which runs hold the slots."""

    pool: str
    step: str
    since: datetime
    holders: tuple[str, ...]

    def message(self, instance: dg.DagsterInstance) -> str:
        holders = ", ".join(describe_run(instance, h) for h in self.holders)
        since = self.since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"waiting since {since} for a slot of the {self.pool} pool (for {self.step}); held by {holders}"


def slot_wait(instance: dg.DagsterInstance, dagster_run_id: str, pool: str = GPU_POOL) -> SlotWait | None:
    """The step of this run waiting for a slot of ``pool``, or None when none is waiting."""
    info = pool_slots(instance, pool)
    if info is None:
        return None
    claimed = {(slot.run_id, slot.step_key) for slot in info.claimed_slots}
    for step in info.pending_steps:
        if step.run_id == dagster_run_id and (step.run_id, step.step_key) not in claimed:
            holders = tuple(sorted({run for run, _ in claimed if run != dagster_run_id}))
            if not holders:  # a slot is free: it takes it in a moment
                return None
            since = step.enqueued_timestamp
            since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
            return SlotWait(pool, step.step_key, since, holders)
    return None


def describe_run(instance: dg.DagsterInstance, dagster_run_id: str) -> str:
    """``film run_1234 (Dagster run 1a2b3c4d, pid 4242)``, or the bare Dagster run id."""
    run = instance.get_run_by_id(dagster_run_id)
    if run is None:
        return f"Dagster run {dagster_run_id[:8]}"
    pid = f", pid {run.tags[PID_TAG]}" if PID_TAG in run.tags else ""
    film = run.tags.get(PARTITION_TAG)
    return f"{'film ' + film + ' ' if film else ''}(Dagster run {dagster_run_id[:8]}{pid})"


def build_dead_runs_sensor() -> dg.SensorDefinition:
    """The sensor that fails the Dagster runs whose process died (a killed ``dagster dev``, run
    worker or CLI) and frees their slots: evaluated as the daemon starts, then every 30 s."""

    @dg.sensor(name="dead_runs", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Marks failed the film runs whose process is gone and frees their gpu pool "
                           "slots, so `sparkle-motion resume` finishes them and other films get the GPU.")
    def dead_runs(context: dg.SensorEvaluationContext):
        failed = fail_dead_runs(context.instance)
        return dg.SkipReason(f"marked failed (process gone): {', '.join(failed)}" if failed
                             else "every started run's process is alive")

    return dead_runs


def stages_left(instance: dg.DagsterInstance, run_id: str) -> tuple[list[str], dict]:
    """What the film's latest Dagster run was to make and did not (it ended at a pause, or died),
    in film order, with the run config of those stages (a forced stage stays forced): what
    resuming it launches. Empty when the film has no Dagster run."""
    from sparkle_motion_dagster import stages as stage_table

    records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: run_id}), limit=1)
    if not records:
        return [], {}
    run = records[0].dagster_run
    chosen = ({key.to_user_string() for key in run.asset_selection} if run.asset_selection
              else set(stage_table.STAGE_KEYS))
    made = {entry.dagster_event.asset_key.to_user_string()
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            if entry.dagster_event and entry.dagster_event.asset_key}
    left = [key for key in stage_table.STAGE_KEYS if key in chosen and key not in made]
    ops = {key: value for key, value in ((run.run_config or {}).get("ops") or {}).items() if key in left}
    return left, ({"ops": ops} if ops else {})
