"""Submitting and filming a run from Python: what the CLI (and tests) use.

A film run is registered by writing its request under the artifact root and
adding its run_id to the ``run_id`` dynamic partitions of the Dagster instance;
it is filmed by executing the ``film`` job for that partition, so every run
shows in the Dagster UI afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages as stage_table
from sparkle_motion_dagster.film.intake import resolve_video_backend
from sparkle_motion_dagster.film.plan import parse_plan_document
from sparkle_motion_dagster.runs.run_files import stage_file
from sparkle_motion_dagster.runs.storage import ArtifactStore, check_run_id, new_run_id, process_alive

RUN_TAG = "sparkle/run_id"
PID_TAG = "sparkle/pid"
HOST_TAG = "sparkle/host"
DRY_RUN_CONFIG = {"ops": {"movie_plan": {"config": {"dry_run": True}}}}
FILM_STAGES = list(stage_table.STAGE_KEYS)


@dataclass
class FilmResult:
    run_id: str
    dagster_run_id: str
    success: bool
    final_video: str | None
    failed_stage: str | None = None
    error: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def submit_run(
    store: ArtifactStore, instance: dg.DagsterInstance, document: dict[str, Any], *, source: str, preview: bool,
    clip_model_ids: tuple[str, ...], clip_backend: str, run_id: str | None = None, check_backend: bool = True,
) -> str:
    """Validate the plan and register a new film run. Raises before writing anything on bad input.

    ``check_backend=False`` (dry runs) leaves an unconfigured video model to be reported as a warning."""
    parsed = parse_plan_document(document)
    if check_backend:
        resolve_video_backend(parsed.plan, served=clip_model_ids, backend=clip_backend, preview=preview)
    from sparkle_motion_dagster.runs.run_files import submit_request

    run_id = check_run_id(run_id) if run_id else new_run_id()
    submit_request(store, run_id, document=document, source=source, preview=preview)
    instance.add_dynamic_partitions("run_id", [run_id])
    return run_id


def submit_prompt_run(
    store: ArtifactStore, instance: dg.DagsterInstance, *, prompt: str, title: str, seed: int = 0,
    size: tuple[int, int] | None = None, preview: bool, source: str = "prompt", run_id: str | None = None,
) -> str:
    """Register a new film run from a story prompt; its ``movie_plan`` stage asks the planner."""
    from sparkle_motion_dagster.runs.run_files import submit_request

    if not prompt.strip() or not title.strip():
        raise ValueError("prompt and title: both must be non-empty")
    run_id = check_run_id(run_id) if run_id else new_run_id()
    request = {"prompt": prompt, "title": title, "seed": seed, **({"size": list(size)} if size else {})}
    submit_request(store, run_id, prompt=request, source=source, preview=preview)
    instance.add_dynamic_partitions("run_id", [run_id])
    return run_id


def film_run(
    defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str, *,
    on_stage: Callable[[str, str, float], None] | None = None, store: ArtifactStore, log_level: str = "WARNING",
    stages: list[str] | None = None, run_config: dict | None = None, job_name: str = "film",
) -> FilmResult:
    """Execute the film job (or some of its stages) for one run_id in this process,
    reporting each stage as it ends."""
    check_run_id(run_id)
    if not instance.has_dynamic_partition("run_id", run_id):
        raise LookupError(f"unknown run_id {run_id!r}: it was never submitted to this Dagster instance")
    mark_abandoned_runs(instance, run_id)
    job = defs.resolve_job_def(job_name)
    if stages is not None:
        # Only these stages, and none of the checks (the review gate runs on its own).
        job = job.get_subset(asset_selection={dg.AssetKey(stage) for stage in stages}, asset_check_selection=set())
    dagster_run_id = str(uuid.uuid4())
    clock = _StageClock(on_stage)
    instance.add_event_listener(dagster_run_id, clock)
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    result = job.execute_in_process(
        instance=instance, partition_key=run_id, run_id=dagster_run_id, raise_on_error=False,
        tags={RUN_TAG: run_id, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()},
        run_config=config,
    )
    times = clock.seconds
    final = stage_file(store, run_id, "video_final", "video_final.mp4")
    if result.success:
        return FilmResult(run_id, dagster_run_id, True, str(final) if final.exists() else None, stage_seconds=times)
    failed_stage, error = None, None
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failed_stage = event.step_key
            error = _user_message(event.step_failure_data.error)
            break
    return FilmResult(run_id, dagster_run_id, False, None, failed_stage, error or "the run failed", times)


def downstream_of(stage: str) -> list[str]:
    """``stage`` and every film stage that depends on it, in film order."""
    if stage not in FILM_STAGES:
        raise ValueError(f"--from: unknown stage {stage!r}; stages are {', '.join(FILM_STAGES)}")
    return stage_table.downstream(stage)


def force_config(stages: list[str]) -> dict:
    """Run config that makes the rendering stages among ``stages`` render every item again."""
    return {"ops": {s: {"config": {"force": True}} for s in stages if s in stage_table.RENDERING_STAGES}}


def missing_stages(instance: dg.DagsterInstance, store: ArtifactStore, run_id: str) -> list[str]:
    """Stages with no materialization for the partition (or whose files are gone), and what depends on them."""
    missing: set[str] = set()
    for row in stage_table.STAGES:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(row.key), asset_partitions=[run_id]), limit=1
        ).records
        if not records or not store.path(run_id, row.folder, row.done_marker).exists():
            missing.update(downstream_of(row.key))
    return [s for s in FILM_STAGES if s in missing]


def is_abandoned(run: dg.DagsterRun) -> bool:
    """A started CLI run on this host whose process is gone (killed before it could record an end)."""
    pid = run.tags.get(PID_TAG, "")
    return (run.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING)
            and run.tags.get(HOST_TAG) == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)))


def mark_abandoned_runs(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Mark as failed the Dagster runs of this film run that a killed CLI process left 'started'."""
    abandoned = []
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_TAG: run_id},
                                                   statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]))
    for run in filter(is_abandoned, runs):
        instance.report_run_failed(run, message=f"the process running it (pid {run.tags[PID_TAG]}) is gone")
        # A killed process never hands back its concurrency-pool slots (the gpu pool):
        # without this the next run would wait for them forever.
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        abandoned.append(run.run_id)
    return abandoned


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


class _StageClock:
    """An event listener on the run: times each step from its start to its end and reports it
    as it ends. The instance calls it right after storing each event, in the executing thread."""

    def __init__(self, on_stage: Callable[[str, str, float], None] | None):
        self.on_stage = on_stage
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, entry) -> None:
        event = entry.dagster_event
        if event is None or event.step_key is None:
            return
        if event.event_type == dg.DagsterEventType.STEP_START:
            self.started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            seconds = entry.timestamp - self.started.get(event.step_key, entry.timestamp)
            self.seconds[event.step_key] = seconds
            if self.on_stage:
                succeeded = event.event_type == dg.DagsterEventType.STEP_SUCCESS
                try:
                    self.on_stage(event.step_key, "succeeded" if succeeded else "failed", seconds)
                except Exception:  # noqa: BLE001 - reporting progress (to a closed pipe, say) must never fail the film
                    self.on_stage = None


def run_review_gate(defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str) -> bool:
    """Evaluate the manual review check on the run's final video, so the UI shows the decision."""
    result = defs.resolve_job_def("review_gate").execute_in_process(
        instance=instance, raise_on_error=False, tags={RUN_TAG: run_id},
        run_config={"ops": {"video_final_approved_by_reviewer": {"config": {"run_id": run_id}}},
                    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    evaluations = [e.event_specific_data for e in result.all_events
                   if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    return bool(evaluations) and evaluations[-1].passed
