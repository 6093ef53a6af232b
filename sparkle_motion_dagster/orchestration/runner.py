"""Submitting and filming a run from Python: what the CLI (and tests) use.

A film run is registered by writing its request under the artifact root and
adding its run_id to the ``run_id`` dynamic partitions of the Dagster instance;
it is filmed by executing the ``film`` job for that partition, so every run
shows in the Dagster UI afterwards.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages as stage_table
from sparkle_motion_dagster.assets.stage import CLUSTER_TAG, PAUSED_METADATA, STOPPED_METADATA
from sparkle_motion_dagster.cluster.identity import read_marker
from sparkle_motion_dagster.orchestration import liveness
from sparkle_motion_dagster.orchestration.job_loading import job_for, reconstructable_job
from sparkle_motion_dagster.orchestration.liveness import HOST_TAG, PID_TAG, is_dead  # noqa: F401 - re-exported
from sparkle_motion_dagster.orchestration.run_events import ATTEMPT_TAG, RunEventReader, execute_reading, new_attempt
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.insight import estimates
from sparkle_motion_dagster.store.run_files import stage_file
from sparkle_motion_dagster.store.storage import TEMP_MARKER, ArtifactStore, check_run_id
from sparkle_motion_dagster.lifecycle.titles import title_tags
from sparkle_motion_dagster.orchestration.submission import (  # noqa: F401 - re-exported
    DRY_RUN_CONFIG,
    PARTITION_TAG,
    RUN_TAG,
    dry_run_config,
    submit_prompt_run,
    submit_run,
)

FILM_STAGES = list(stage_table.STAGE_KEYS)
# The signals that stop a film filmed in the foreground (Ctrl-C, and what `kill` and service managers send).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class FilmResult:
    run_id: str
    dagster_run_id: str
    success: bool
    final_video: str | None
    failed_stage: str | None = None
    error: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Each stage's own time, without the time it held at a pause."""
    held_seconds: dict[str, float] = field(default_factory=dict)
    stopped: bool = False
    """The run ended because it was stopped (``control stop``, or a signal)."""
    stop_signal: int | None = None
    """The signal that stopped it, when one did."""
    paused_at: str | None = None
    """The stage before which the run was paused (its Dagster run ended there, holding nothing)."""
    held_since: str | None = None


def film_run(
    defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str, *,
    on_stage: Callable[[str, str, float], None] | None = None, store: ArtifactStore, log_level: str = "WARNING",
    stages: list[str] | None = None, run_config: dict | None = None, job_name: str = "film",
    stop_on_signals: bool = False, on_notice: Callable[[str], None] | None = None,
) -> FilmResult:
    """Execute the film job (or some of its stages) for one run_id in this process,
    reporting each stage as it ends (``on_stage``) and what a person should know on the way
    (``on_notice``: it waits for a pool slot, is stopping). A paused film ends the execution at
    the next stage boundary: the result says where (``paused_at``) and the caller decides.

    With ``stop_on_signals`` (the foreground CLI), SIGINT and SIGTERM stop the film instead of
    interrupting Dagster's step: see :func:`execute_stoppably`."""
    started = time.monotonic()
    check_run_id(run_id)
    if not instance.has_dynamic_partition("run_id", run_id):
        raise LookupError(f"unknown run_id {run_id!r}: it was never submitted to this Dagster instance")
    mark_abandoned_runs(instance)
    job = job_for(defs, job_name, stages)
    clock = _StageClock(on_stage)
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    attempt = new_attempt()
    reader = RunEventReader(instance, attempt, clock.on_event)
    # In process the Dagster run gets this id; an executor's run gets its own, and its first step
    # tags it with the process that orchestrates it (liveness.tag_run_process).
    dagster_run_id = str(uuid.uuid4())
    tags = {RUN_TAG: run_id, ATTEMPT_TAG: attempt, **title_tags(store, run_id),
            **liveness.process_tags(dagster_run_id)}

    def execute() -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
        if job.executor_def.name != dg.in_process_executor.name:
            marker = read_marker(store.root)
            if marker:  # each step checks it sees this artifact root
                tags[CLUSTER_TAG] = marker["id"]
            return execute_with_executor(job_name, stages, instance, run_id, tags, config)
        return job.execute_in_process(
            instance=instance, partition_key=run_id, raise_on_error=False, tags=tags, run_config=config,
            run_id=dagster_run_id,
        )

    control.mark_active(store, run_id)
    try:
        if stop_on_signals and threading.current_thread() is threading.main_thread():
            result, signum = execute_stoppably(execute, store, run_id, reader, on_notice=on_notice,
                                               waiting=_slot_waits(instance, reader))
        else:
            result, signum = execute_reading(execute, reader), None
    finally:
        control.clear_active(store, run_id)
    if signum is not None and result.success:  # the signal came after the last item: nothing was stopped
        control.set_state(store, run_id, "running")
    film = _film_result(result, store, run_id, reader, clock, signum)
    if film.success and stages is None and job_name == "film" and not clock.reused_any():
        record_throughput(defs, store, film, clock, time.monotonic() - started)
    return film


def record_throughput(defs: dg.Definitions, store: ArtifactStore, film: FilmResult, clock: _StageClock,
                      seconds: float) -> None:
    """Add a whole film, rendered from scratch, to this installation's history of stage times
    (what estimates scale from). Never fails the film."""
    from sparkle_motion_dagster.store.run_files import load_run_plan

    try:
        estimates.record_film(store.root, run_id=film.run_id, plan=load_run_plan(store, film.run_id),
                              backends=estimates.backends_of(defs.resources), stage_seconds=film.stage_seconds,
                              peaks=clock.peaks, film_seconds=seconds)
    except Exception as exc:  # noqa: BLE001 - the film is made; its timing is a nicety
        print(f"warning: could not record the film's timings: {exc}", file=sys.stderr)


def execute_with_executor(job_name: str, stages: list[str] | None, instance: dg.DagsterInstance, run_id: str,
                          tags: dict[str, str], run_config: dict) -> dg.JobExecutionResult:
    """Execute the job with its own executor (a process per step, or Celery workers) from this
    process, which orchestrates: ``execute_in_process`` would run every step here. Each step's
    process, here or on a worker, loads the job again from the pointer that
    :func:`~sparkle_motion_dagster.orchestration.job_loading.reconstructable_job` makes, and
    stores its step's events in the instance, where the film's event reader finds them."""
    with warnings.catch_warnings():
        # dagster-celery registers its task again for every step it submits; Celery warns each time.
        warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")
        return dg.execute_job(reconstructable_job(job_name, stages), instance=instance, run_config=run_config,
                              tags={**tags, PARTITION_TAG: run_id}, raise_on_error=False)


def _film_result(result: dg.ExecuteInProcessResult | dg.JobExecutionResult, store: ArtifactStore, run_id: str,
                 reader: RunEventReader, clock: _StageClock, signum: int | None) -> FilmResult:
    """What the film job's execution came to: success and the video, or the first failed stage."""
    times, held = clock.seconds, clock.held
    dagster_run_id = result.run_id
    final = stage_file(store, run_id, "video_final", "video_final.mp4")
    if result.success:
        return FilmResult(run_id, dagster_run_id, True, str(final) if final.exists() else None, stage_seconds=times,
                          held_seconds=held)
    failed_stage, error, stopped = None, None, False
    failures = reader.step_failures()  # stored by whichever process ran the step
    paused = [event for event in failures if _is_pause(event)]
    if paused and signum is None:  # it holds before a stage (or was resumed since: the caller looks)
        hold = control.read_hold(store, run_id) or control.read_record(store, run_id).get("last_hold") or {}
        return FilmResult(run_id, dagster_run_id, False, None, stage_seconds=times, held_seconds=held,
                          paused_at=hold.get("stage") or stage_table.stage_of_step(paused[0].step_key),
                          held_since=hold.get("since"))
    for event in failures:
        if not _is_pause(event):
            failed_stage = stage_table.stage_of_step(event.step_key) or event.step_key
            error = _user_message(event.step_failure_data.error)
            if "blocking asset check failed" in error:  # say what the check measured, naming the item
                from sparkle_motion_dagster.insight.qa import qa_blocks_sharing

                error = "; ".join(qa_blocks_sharing(store, run_id)) or error
            stopped = _is_stop(event)
            break
    return FilmResult(run_id, dagster_run_id, False, None, failed_stage, error or "the run failed", times, held,
                      stopped=stopped or signum is not None, stop_signal=signum)


def execute_stoppably(execute: Callable[[], Any], store: ArtifactStore, run_id: str, reader: RunEventReader, *,
                      on_notice: Callable[[str], None] | None = None,
                      waiting: Callable[[], tuple[str, Callable[[], None]] | None] | None = None,
                      ) -> tuple[Any, int | None]:
    """Run ``execute`` so that the first SIGINT or SIGTERM stops the film cleanly; returns its result
    and the signal that stopped it (None when none came).

    Dagster turns an interrupt inside a step into a retry of that step (its retry policy counts
    it as transient), so the film runs on. Here the execution runs in a worker thread, where
    Dagster leaves signal handling alone, with SIGINT blocked, so that neither the worker nor
    any process it starts (ffmpeg, Dagster's log tailers) sees a terminal's Ctrl-C. This main
    thread takes the signal and sets the run's control state to ``stopped``: the running item
    finishes, the stage ends at the next item (or the next stage at its gate), without a retry,
    and temporary files go as they do on any error. A second signal leaves at once
    (:func:`_leave_now`); the next start of the film marks the abandoned Dagster run failed and
    frees its slots.

    ``waiting`` says what the run waits for (a pool slot another run holds: what, and since when),
    with what ends the wait's Dagster run; it is told once per wait, and a signal during a wait
    ends the command at once: nothing is running to finish first."""
    received: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        if received:
            _leave_now(store, run_id, signum, on_notice)
        received.append(signum)
        watch.look_soon()
        control.set_state(store, run_id, "stopped", actor=f"signal:{signal.Signals(signum).name}")
        _notify(on_notice, f"stopping {run_id}: the running item finishes first (press Ctrl-C again to quit at once)")

    watch = _WaitWatch(waiting, on_notice)
    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}

    def tick() -> None:
        wait = watch.look()
        if received and wait:  # here, not in the handler: it may have interrupted a database call
            _notify(on_notice, f"{run_id}: {signal.Signals(received[0]).name} while waiting; nothing was rendering")
            wait[1]()
            _leave_now(store, run_id, received[0], on_notice)

    try:
        result = execute_reading(execute, reader, tick,
                                 before=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return result, (received[0] if received else None)


def _leave_now(store: ArtifactStore, run_id: str, signum: int, on_notice: Callable[[str], None] | None) -> None:
    """A second signal: remove this process's temporary files and exit at once (128 + signal)."""
    _notify(on_notice, f"quitting now; continue {run_id} with `sparkle-motion resume {run_id}`")
    for temp in store.run_dir(run_id).rglob(f"*{TEMP_MARKER}{os.getpid()}-*"):
        temp.unlink(missing_ok=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(128 + signum)


def _notify(on_notice: Callable[[str], None] | None, message: str) -> None:
    if on_notice:
        try:
            on_notice(message)
        except Exception:  # noqa: BLE001 - telling the user (on a closed pipe, say) must never break the film
            pass


class _WaitWatch:
    """Tells the foreground user what the run waits for (a pool slot, held by which run) and since
    when: once per wait."""

    LOOK_SECONDS = 1.0
    """How often it asks the instance (a wait shorter than this needs no notice)."""

    def __init__(self, waiting, on_notice: Callable[[str], None] | None):
        self.waiting, self.on_notice, self.told = waiting, on_notice, None
        self.last: tuple[str, Callable[[], None]] | None = None
        self.next_look = time.monotonic() + self.LOOK_SECONDS

    def look_soon(self) -> None:
        """Ask the instance at the next look (a signal came: is the run waiting?)."""
        self.next_look = 0.0

    def look(self):
        """Called often while the film runs: what it waits for (or None), as last seen; the
        instance is asked once a second."""
        if time.monotonic() < self.next_look:
            return self.last
        self.next_look = time.monotonic() + self.LOOK_SECONDS
        try:
            wait = self.waiting() if self.waiting else None
        except Exception:  # noqa: BLE001 - a busy instance database: look again next time
            return None
        self.last = wait
        if wait and wait[0] != self.told:
            _notify(self.on_notice, wait[0])
        self.told = wait[0] if wait else None
        return wait


def _slot_waits(instance: dg.DagsterInstance, reader: RunEventReader):
    """What the film's Dagster run waits for now (a message, and how to end the run), or None."""
    def waiting():
        dagster_run_id = reader.find_run()
        wait = liveness.slot_wait(instance, dagster_run_id) if dagster_run_id else None
        if wait is None:
            return None

        def end_run() -> None:
            run = instance.get_run_by_id(dagster_run_id)
            if run is not None and run.status in liveness.LIVE_STATUSES:
                instance.report_run_failed(run, message="ended by a signal while waiting for a pool slot")
            liveness.free_slots(instance, dagster_run_id)
        return wait.message(instance), end_run
    return waiting


def downstream_of(stage: str) -> list[str]:
    """``stage`` and every film stage that depends on it, in film order."""
    if stage not in FILM_STAGES:
        raise ValueError(f"--from: unknown stage {stage!r}; stages are {', '.join(FILM_STAGES)}")
    return stage_table.downstream(stage)


def force_config(stages: list[str]) -> dict:
    """Run config that makes the rendering stages among ``stages`` render every item again."""
    return {"ops": {s: {"config": {"force": True}} for s in stages if s in stage_table.RENDERING_STAGES}}


def missing_stages(instance: dg.DagsterInstance, store: ArtifactStore, run_id: str,
                   damaged: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Stages with no materialization for the partition, whose files are gone, or with a file that
    no longer matches its record (``damaged``: :func:`integrity.damaged_files`, read when not
    given), and what depends on them."""
    from sparkle_motion_dagster.store import integrity

    damaged = integrity.damaged_files(store, run_id) if damaged is None else damaged
    missing: set[str] = set()
    for row in stage_table.STAGES:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(row.key), asset_partitions=[run_id]), limit=1
        ).records
        if not records or not store.path(run_id, row.folder, row.done_marker).exists() or row.key in damaged:
            missing.update(downstream_of(row.key))
    return [s for s in FILM_STAGES if s in missing]


is_abandoned = is_dead


def mark_abandoned_runs(instance: dg.DagsterInstance, run_id: str | None = None) -> list[str]:
    """Mark failed the Dagster runs whose process died (of one film run, or of every film run on
    this host when ``run_id`` is None) and free their slots: see :mod:`.liveness`. Every film
    start does it for all of them: a dead run of another film would otherwise hold the gpu
    pool's slot and this film would wait for it forever."""
    return liveness.fail_dead_runs(instance, run_id)


def _user_message(error) -> str:
    """The innermost message of a step's error, without the exception's module path."""
    if error is None:
        return "unknown error"
    while error.cause is not None and error.cls_name != "Failure":
        error = error.cause
    message = error.message.strip()
    prefix = f"{error.cls_name}: "
    if prefix in message and message.split(prefix, 1)[0].replace(".", "").replace("_", "").isalnum():
        message = message.split(prefix, 1)[1]
    return message


def _is_pause(event: dg.DagsterEvent) -> bool:
    """Whether a step ended its run because the film run is paused (see assets/stage.py)."""
    user_data = event.step_failure_data.user_failure_data
    return bool(user_data and PAUSED_METADATA in (user_data.metadata or {}))


def _is_stop(event: dg.DagsterEvent) -> bool:
    """Whether a step failed because the run was stopped (see assets/stage.py)."""
    user_data = event.step_failure_data.user_failure_data
    return bool(user_data and STOPPED_METADATA in (user_data.metadata or {}))


class _StageClock:
    """Times each step from its start to its end (the times the instance stored; a pause ends the
    run before a stage, so no hold is inside that time: the materialization's ``held_seconds``
    says how long it held before), and reports it as it ends
    (``succeeded``, ``failed`` or ``stopped``). The run's event reader hands it each event, in the
    thread that started the film, a moment after the step stored it."""

    def __init__(self, on_stage: Callable[[str, str, float], None] | None):
        self.on_stage = on_stage
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.held: dict[str, float] = {}
        self.peaks: dict[str, dict[str, int | None]] = {}
        self.reused: dict[str, int] = {}
        self.memory = estimates.MemoryWatch()

    def reused_any(self) -> bool:
        """Whether a rendering stage reused items (its time then says nothing about rendering them)."""
        return any(self.reused.values())

    def on_event(self, event: dg.DagsterEvent, timestamp: float) -> None:
        """One step event; a stage rendered as several steps starts with its first step and
        ends with its manifest step (or the first of its steps to fail)."""
        stage = stage_table.stage_of_step(event.step_key)
        if stage is None or stage in self.seconds:
            return
        if event.event_type == dg.DagsterEventType.STEP_START:
            self.started.setdefault(stage, timestamp)
            self.memory.reset()
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.event_specific_data.materialization.metadata
            held = metadata.get("held_seconds")
            if held is not None:
                self.held[stage] = float(held.value)
            reused = metadata.get("reused") or metadata.get("reused_lines")
            if reused is not None:
                self.reused[stage] = self.reused.get(stage, 0) + int(reused.value)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE and _is_pause(event):
            self.started.pop(stage, None)  # it held: neither a failure nor time spent in the stage
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE or (
                event.event_type == dg.DagsterEventType.STEP_SUCCESS and stage_table.ends_stage(event.step_key)):
            started = self.started.get(stage, timestamp)
            seconds = max(0.0, timestamp - started)  # a hold ends the run before the stage: never inside it
            self.seconds[stage] = seconds
            self.peaks[stage] = self.memory.peak()
            if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                status = "succeeded"
            else:
                status = "stopped" if _is_stop(event) else "failed"
            if self.on_stage:
                try:
                    self.on_stage(stage, status, seconds)
                except Exception:  # noqa: BLE001 - reporting progress (to a closed pipe, say) must never fail the film
                    self.on_stage = None


def run_review_gate(defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str) -> bool:
    """Evaluate the manual review check for the film's partition (alone, in Dagster's job of every
    asset and check, as the UI's *Execute* of a check does), so the UI shows the decision on it."""
    check = dg.AssetCheckKey(dg.AssetKey("video_final"), "approved_by_reviewer")
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_check_selection={check})
    result = job.execute_in_process(
        instance=instance, partition_key=run_id, raise_on_error=False, tags={RUN_TAG: run_id},
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    evaluations = [e.event_specific_data for e in result.all_events
                   if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    return bool(evaluations) and evaluations[-1].passed


def run_quality_checks(defs: dg.Definitions, instance: dg.DagsterInstance, store: ArtifactStore,
                       run_id: str) -> list[dict]:
    """Evaluate every automated quality check on the run's files as they are, through Dagster (the UI
    shows the evaluations on the run's partition); returns the results as the QA report keeps them."""
    from sparkle_motion_dagster.insight.qa import status_checks

    check_run_id(run_id)
    # A checks-only selection has no asset to take the partition from: the partition goes in as a tag.
    defs.resolve_job_def("qa_checks").execute_in_process(
        instance=instance, raise_on_error=False, tags={RUN_TAG: run_id, PARTITION_TAG: run_id},
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    return status_checks(store, run_id)
