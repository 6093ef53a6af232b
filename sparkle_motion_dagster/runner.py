"""Submitting and filming a run from Python: what the CLI (and tests) use.

A film run is registered by writing its request under the artifact root and
adding its run_id to the ``run_id`` dynamic partitions of the Dagster instance;
it is filmed by executing the ``film`` job for that partition, so every run
shows in the Dagster UI afterwards.
"""

from __future__ import annotations

import threading
import uuid
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from .intake import resolve_video_backend
from .plan import parse_plan_document
from .storage import ArtifactStore, check_run_id, new_run_id

FILM_STAGES = ["movie_plan", "dialogue_audio", "base_images", "video_clips", "video_raw_concat", "video_final"]


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
    clip_model_ids: tuple[str, ...], clip_backend: str, run_id: str | None = None,
) -> str:
    """Validate the plan and register a new film run. Raises before writing anything on bad input."""
    parsed = parse_plan_document(document)
    resolve_video_backend(parsed.plan, served=clip_model_ids, backend=clip_backend, preview=preview)
    from .assets.plan_intake import submit_request

    run_id = check_run_id(run_id) if run_id else new_run_id()
    submit_request(store, run_id, document=document, source=source, preview=preview)
    instance.add_dynamic_partitions("run_id", [run_id])
    return run_id


def film_run(
    defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str, *,
    on_stage: Callable[[str, str, float], None] | None = None, store: ArtifactStore, log_level: str = "WARNING",
) -> FilmResult:
    """Execute the film job for one run_id in this process, reporting each stage as it ends."""
    check_run_id(run_id)
    if not instance.has_dynamic_partition("run_id", run_id):
        raise LookupError(f"unknown run_id {run_id!r}: it was never submitted to this Dagster instance")
    job = defs.resolve_job_def("film")
    dagster_run_id = str(uuid.uuid4())
    done = threading.Event()
    times: dict[str, float] = {}
    watcher = threading.Thread(target=_watch, args=(instance, dagster_run_id, done, times, on_stage), daemon=True)
    watcher.start()
    try:
        result = job.execute_in_process(instance=instance, partition_key=run_id, run_id=dagster_run_id,
                                        raise_on_error=False, tags={"sparkle/run_id": run_id},
                                        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
    finally:
        done.set()
        watcher.join()
    final = store.path(run_id, "finalize", "video_final.mp4")
    if result.success:
        return FilmResult(run_id, dagster_run_id, True, str(final), stage_seconds=times)
    failed_stage, error = None, None
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failed_stage = event.step_key
            info = event.step_failure_data.error
            error = _user_message(info)
            break
    return FilmResult(run_id, dagster_run_id, False, None, failed_stage, error or "the run failed", times)


def _user_message(error) -> str:
    if error is None:
        return "unknown error"
    message = error.message.strip()
    cause = error.cause
    while cause is not None and "Failure" not in error.cls_name:
        message = cause.message.strip()
        cause = cause.cause
    return message


def _watch(instance, dagster_run_id, done, times, on_stage) -> None:
    """Poll the run's event log and report steps as they succeed or fail."""
    seen = 0
    started: dict[str, float] = {}
    while True:
        finished = done.is_set()
        entries = instance.all_logs(dagster_run_id) if instance.has_run(dagster_run_id) else []
        for entry in entries[seen:]:
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = entry.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                seconds = entry.timestamp - started.get(event.step_key, entry.timestamp)
                times[event.step_key] = seconds
                if on_stage:
                    on_stage(event.step_key, "succeeded" if event.event_type == dg.DagsterEventType.STEP_SUCCESS else "failed", seconds)
        seen = len(entries)
        if finished:
            return
        time.sleep(0.1)
