"""Where a film run stands, read from the Dagster instance (the seed's ``GET /status``).

A film run is a partition key of the ``run_id`` dynamic partitions, and several
Dagster runs can belong to it (the first launch, retries, re-materializations,
runs started from the UI, the CLI or a sensor). Everything here reads across
every Dagster run tagged ``dagster/partition=<run_id>``:

* a stage has **succeeded** when its asset has a materialization for the
  partition more recent than any failure of its step and its files still match
  their records (size and sha256, ``store/integrity.py``); it is **running** while
  its latest attempt is in an active Dagster run, **held** when its run ended
  before it at a pause (and nothing newer made it), **failed** when its latest
  failure is newer than its latest materialization or a file of it is missing,
  damaged or swapped (``error`` names the files), and **pending** otherwise; the stage a held
  film holds before reads held whatever its steps said (``held_since``: when it began to hold).
  A stage's ``duration_s`` is its own time, from its actual start to its end; ``held_s`` is the
  time it waited at a pause before that start (from its gate closing to its start after the
  resume), so its wall time is the two together;
* the film run's status, in order of precedence: the control state ``stopped``
  -> ``stopped``; ``paused`` while a Dagster run is active -> ``paused`` (the running
  stage finishes, then the run ends); ``paused`` once it ended at a stage boundary ->
  ``held`` (nothing holds a pool slot; ``control resume`` launches the rest); an
  active Dagster run -> ``running`` (``queued`` when none has started yet); a file
  that no longer matches its record -> ``failed``, naming it; every stage
  materialized -> ``succeeded``; the latest Dagster run failed ->
  ``failed`` (cancelled -> ``stopped``); no Dagster run yet -> ``submitted``; a
  dry run -> ``planned``; an idle, incomplete run (a partial materialization) -> ``stopped``,
  with ``detail`` saying what is missing.

A process that was killed (a CLI, a run worker, ``dagster dev``) leaves its Dagster run
"started" until :mod:`.liveness` marks it failed, or "not started" when it was killed between
creating the run and starting it; such a run, tagged with a pid on this host whose process is
gone, is reported as ``abandoned`` and not counted as active (the film run reads ``failed``).
A step that ended its run at a pause is not an attempt of its stage (the stage did not start).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages as stage_table
from sparkle_motion_dagster.orchestration.liveness import HOST_TAG, PID_TAG
from sparkle_motion_dagster.orchestration.liveness import is_dead as is_abandoned
from sparkle_motion_dagster.lifecycle.control import read_record, readable_time
from sparkle_motion_dagster.lifecycle.events import read_events
from sparkle_motion_dagster.insight.qa import status_checks
from sparkle_motion_dagster.lifecycle.review import review_state
from sparkle_motion_dagster.store.run_files import stage_file
from sparkle_motion_dagster.store.storage import (
    TEMP_MARKER,
    ArtifactStore,
    UnknownRunError,
    check_id,
    check_run_id,
    process_alive,
)

# (asset key, stage folder) in film order.
STAGES = tuple((row.key, row.folder) for row in stage_table.STAGES)
STAGE_OF_ASSET = dict(STAGES)
PARTITION_TAG = "dagster/partition"
PARENT_RUN_TAG = "dagster/parent_run_id"
# The metadata key of the engine event a Celery worker writes as it takes a step (dagster_celery.tasks).
CELERY_WORKER_KEY = "Celery worker"

RunStatus = dg.DagsterRunStatus
STARTED = {RunStatus.STARTING, RunStatus.STARTED, RunStatus.CANCELING}
WAITING = {RunStatus.QUEUED, RunStatus.NOT_STARTED}
STEP_EVENTS = {
    dg.DagsterEventType.STEP_START: "started",
    dg.DagsterEventType.STEP_SUCCESS: "succeeded",
    dg.DagsterEventType.STEP_FAILURE: "failed",
    dg.DagsterEventType.STEP_UP_FOR_RETRY: "up for retry",
    dg.DagsterEventType.STEP_RESTARTED: "restarted",
    dg.DagsterEventType.ASSET_MATERIALIZATION: "materialized",
}
RUN_EVENTS = {
    dg.DagsterEventType.RUN_START: "Dagster run started",
    dg.DagsterEventType.RUN_SUCCESS: "Dagster run succeeded",
    dg.DagsterEventType.RUN_FAILURE: "Dagster run failed",
    dg.DagsterEventType.RUN_CANCELED: "Dagster run cancelled",
}


def iso(timestamp: float | None) -> str | None:
    """A Unix timestamp as ISO 8601 UTC with a trailing Z (millisecond precision)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_age(seconds: float | None) -> str:
    """``42s``, ``5m``, ``3h 10m``, ``4d 2h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


# --- what the run is ------------------------------------------------------------

def run_title(store: ArtifactStore, run_id: str) -> str | None:
    """The plan's title: the normalized plan when intake ran, else the submitted document."""
    plan = stage_file(store, run_id, "movie_plan", "movie_plan.json")
    try:
        return json.loads(plan.read_text(encoding="utf-8")).get("title")
    except (OSError, ValueError, AttributeError):
        pass
    try:
        document = store.read_request(run_id).get("document") or {}
        return (document.get("validated_plan") or document).get("title")
    except (OSError, ValueError, LookupError, AttributeError):
        return None


def submitted_at(store: ArtifactStore, run_id: str) -> datetime | None:
    """When the run was submitted (``request/plan_request.json`` ``submitted_at``)."""
    try:
        value = store.read_request(run_id)["submitted_at"]
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (OSError, ValueError, LookupError, TypeError):
        return None


def known_run_ids(instance: dg.DagsterInstance, store: ArtifactStore) -> list[str]:
    """Film runs with files under the artifact root or a partition in the instance."""
    return sorted(set(store.run_ids()) | set(instance.get_dynamic_partitions("run_id")))


def _require_known(instance: dg.DagsterInstance, store: ArtifactStore, run_id: str) -> bool:
    """Validate ``run_id``; raise UnknownRunError when neither the instance nor the store knows it."""
    check_run_id(run_id)
    registered = instance.has_dynamic_partition("run_id", run_id)
    if not registered and not store.run_dir(run_id).is_dir():
        raise UnknownRunError(f"run_id: unknown run {run_id!r}: no partition in this Dagster instance "
                              f"and no files under {store.root}")
    return registered


# --- reading the Dagster instance ---------------------------------------------------

def _partition_runs(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: run_id}))
    return sorted(records, key=lambda r: r.create_timestamp.timestamp())


def _source(tags: dict[str, str]) -> str:
    if "sparkle/run_id" in tags:
        return "cli"
    if "dagster/sensor_name" in tags:
        return f"sensor:{tags['dagster/sensor_name']}"
    if "dagster/schedule_name" in tags:
        return f"schedule:{tags['dagster/schedule_name']}"
    if "dagster/backfill" in tags:
        return f"backfill:{tags['dagster/backfill']}"
    return "dagster"


def _abandoned_before_start(run: dg.DagsterRun) -> bool:
    """A run the CLI created on this host and never started because its process is gone. A run
    re-executed from the UI inherits its parent's tags (the pid among them), so it does not count."""
    pid = run.tags.get(PID_TAG, "")
    return (run.status == RunStatus.NOT_STARTED and PARENT_RUN_TAG not in run.tags
            and run.tags.get(HOST_TAG) == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)))


def _run_summary(record) -> dict[str, Any]:
    run = record.dagster_run
    abandoned = is_abandoned(run) or _abandoned_before_start(run)
    return {
        "dagster_run_id": run.run_id,
        "status": "ABANDONED" if abandoned else run.status.value,
        "job_name": run.job_name,
        "source": _source(dict(run.tags)),
        "assets": sorted(k.to_user_string() for k in run.asset_selection) if run.asset_selection else None,
        "created_at": iso(record.create_timestamp.timestamp()),
        "started_at": iso(record.start_time),
        "ended_at": iso(record.end_time),
        "_active": run.status in (STARTED | WAITING) and not abandoned,
        "_started": run.status in STARTED and not abandoned,
        "_status": run.status,
    }


def _failure_message(event) -> str:
    data = event.step_failure_data
    if data is None:
        return "failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error is not None and error.cause is not None and "Failure" not in error.cls_name:
        error = error.cause
    return error.message.strip() if error is not None else "failed"


def _worker_of(event) -> str | None:
    """The Celery worker named by the engine event a worker writes as it takes a step."""
    data = event.engine_event_data if event.event_type == dg.DagsterEventType.ENGINE_EVENT else None
    entry = data.metadata.get(CELERY_WORKER_KEY) if data is not None and data.metadata else None
    return str(entry.value) if entry is not None else None


def _read_logs(instance: dg.DagsterInstance, runs: list[dict[str, Any]]) -> tuple[dict, list[dict], dict]:
    """Step attempts per asset, user-facing log lines, and every step of each asset (with the
    worker that ran it), across the partition's Dagster runs.

    A stage rendered as several steps (``video_clips.video_clips_render[shot_001]``...) makes
    one attempt: it starts with the stage's first step and ends with its manifest step, or
    with the first of its steps to fail."""
    attempts: dict[str, list[dict[str, Any]]] = {asset: [] for asset, _ in STAGES}
    steps: dict[str, dict[str, dict[str, Any]]] = {asset: {} for asset, _ in STAGES}
    lines: list[dict[str, Any]] = []
    for run in runs:
        open_attempt: dict[str, dict[str, Any]] = {}
        for entry in instance.all_logs(run["dagster_run_id"]):
            event = entry.dagster_event
            asset = stage_table.stage_of_step(entry.step_key)
            stage = STAGE_OF_ASSET.get(asset) if asset else None
            if event is None:
                if entry.level >= logging.INFO and entry.user_message:
                    lines.append(_line(entry.timestamp, stage, logging.getLevelName(entry.level),
                                       entry.user_message, run, None))
                continue
            kind = event.event_type
            if kind in RUN_EVENTS:
                level = "ERROR" if kind == dg.DagsterEventType.RUN_FAILURE else "INFO"
                lines.append(_line(entry.timestamp, None, level, RUN_EVENTS[kind], run, kind.name))
            if asset is not None:
                _note_step(steps[asset], entry, event, run)
            if asset is None or kind not in STEP_EVENTS:
                continue
            if kind == dg.DagsterEventType.STEP_FAILURE and _ended_at_pause(event):
                attempt = open_attempt.pop(asset, None) or {"dagster_run_id": run["dagster_run_id"], "started": None}
                if attempt not in attempts[asset]:
                    attempts[asset].append(attempt)
                # It held before the stage did anything: neither a failure nor time spent in the stage.
                attempt.update(started=None, ended=entry.timestamp, outcome="held", error=None)
                lines.append(_line(entry.timestamp, stage, "INFO", f"{asset}: held at a pause (the Dagster run "
                                   f"ended before it, keeping no slot)", run, "HELD"))
                continue
            message = f"{asset} {STEP_EVENTS[kind]}"
            one_step = entry.step_key == asset
            if kind == dg.DagsterEventType.STEP_START:
                if one_step or asset not in open_attempt:
                    open_attempt[asset] = {"dagster_run_id": run["dagster_run_id"], "started": entry.timestamp,
                                           "ended": None, "outcome": None, "error": None}
                    attempts[asset].append(open_attempt[asset])
                elif not one_step:
                    continue
            elif kind == dg.DagsterEventType.STEP_SUCCESS and not stage_table.ends_stage(entry.step_key):
                continue  # one group of a stage rendered as several steps: the stage goes on
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                attempt = open_attempt.pop(asset, None)
                failed = kind == dg.DagsterEventType.STEP_FAILURE
                error = _failure_message(event) if failed else None
                if attempt is None:  # a failure before the step started (e.g. resource init)
                    attempt = {"dagster_run_id": run["dagster_run_id"], "started": None}
                    attempts[asset].append(attempt)
                attempt.update(ended=entry.timestamp, outcome="failed" if failed else "succeeded", error=error)
                if failed:
                    message = f"{asset} failed: {error}"
                elif attempt["started"] is not None:
                    message = f"{asset} succeeded in {entry.timestamp - attempt['started']:.2f} s"
            lines.append(_line(entry.timestamp, stage, "ERROR" if kind == dg.DagsterEventType.STEP_FAILURE
                               else "INFO", message, run, kind.name))
    lines.sort(key=lambda line: line["_ts"])
    return attempts, lines, {asset: list(found.values()) for asset, found in steps.items()}


def _ended_at_pause(event) -> bool:
    """A step failure that only says the film run is paused (assets/stage.py)."""
    data = event.step_failure_data
    user = data.user_failure_data if data is not None else None
    return bool(user and "paused" in (user.metadata or {}))


def _note_step(found: dict[str, dict[str, Any]], entry, event, run: dict[str, Any]) -> None:
    """Keep the latest start, end and worker of one step (its last attempt wins)."""
    kind = event.event_type
    worker = _worker_of(event)
    if worker is None and kind not in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
                                       dg.DagsterEventType.STEP_FAILURE):
        return
    step = found.setdefault(entry.step_key, {"step": entry.step_key, "worker": None, "pid": None,
                                             "dagster_run_id": run["dagster_run_id"], "started_at": None,
                                             "ended_at": None, "outcome": None, "_started": None})
    if worker is not None:
        step["worker"] = worker
    elif kind == dg.DagsterEventType.STEP_START:
        step.update(started_at=iso(entry.timestamp), _started=entry.timestamp, ended_at=None, outcome=None,
                    pid=event.pid, dagster_run_id=run["dagster_run_id"])
    else:
        step.update(ended_at=iso(entry.timestamp),
                    outcome="succeeded" if kind == dg.DagsterEventType.STEP_SUCCESS else "failed")


def _line(ts: float, stage: str | None, level: str, message: str, run: dict, event: str | None) -> dict[str, Any]:
    return {"timestamp": iso(ts), "stage": stage, "level": level, "message": message,
            "event": event, "dagster_run_id": run["dagster_run_id"], "_ts": ts}


def _latest_materialization(instance: dg.DagsterInstance, asset: str, run_id: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[run_id]), limit=1).records
    return records[0] if records else None


# --- stages -------------------------------------------------------------------------

def _held_seconds(materialization) -> float:
    """How long the stage's materialization waited at a paused run's gate (``held_seconds``)."""
    if materialization is None or materialization.asset_materialization is None:
        return 0.0
    value = materialization.asset_materialization.metadata.get("held_seconds")
    return float(value.value) if value is not None else 0.0


def _waited_at_pause(attempts: list[dict], started: float | None) -> float:
    """Seconds between the stage's gate closing at a pause (a held attempt just before the one
    that counts) and the stage's actual start after the resume: the wall time of a stage that held
    is this plus its duration."""
    counted = next((i for i, a in enumerate(attempts) if started is not None and a.get("started") == started), None)
    if not counted:
        return 0.0
    before = attempts[counted - 1]
    if before.get("outcome") != "held" or before.get("ended") is None:
        return 0.0
    return max(0.0, started - before["ended"])


def _stage_record(asset: str, attempts: list[dict], materialization, active_runs: set[str]) -> dict[str, Any]:
    latest = attempts[-1] if attempts else None
    failures = [a["ended"] for a in attempts if a.get("outcome") == "failed"]
    last_failure = max(failures) if failures else None
    materialized_at = materialization.timestamp if materialization is not None else None
    if latest and latest.get("outcome") is None and latest["dagster_run_id"] in active_runs:
        status = "running"
    elif latest and latest.get("outcome") == "held" and (materialized_at is None or latest["ended"] > materialized_at):
        status = "held"
    elif materialized_at is not None and (last_failure is None or materialized_at > last_failure):
        status = "succeeded"
    elif last_failure is not None:
        status = "failed"
    else:
        status = "pending"
    started = latest.get("started") if latest else None
    completed = latest.get("ended") if latest else None
    if status == "succeeded" and latest is not None and latest.get("outcome") != "succeeded":
        started, completed = None, materialized_at  # the latest attempt is not the one that counts
    if status == "succeeded" and latest is None:
        completed = materialized_at  # materialized outside a step (reported, or from another instance)
    duration = round(completed - started, 3) if started is not None and completed is not None else None
    # How long it held at a pause before it started: its run ended there, so never part of its duration.
    held = _waited_at_pause(attempts, started) if status in ("succeeded", "running", "failed") else 0.0
    if not held and status == "succeeded":
        held = _held_seconds(materialization)
    return {
        "name": STAGE_OF_ASSET[asset],
        "asset": asset,
        "status": status,
        "started_at": iso(started),
        "completed_at": iso(completed) if status not in ("running", "held") else None,
        "duration_s": duration if status not in ("running", "held") else None,
        "held_s": round(held, 3),
        "held_since": iso(latest["ended"]) if status == "held" and latest and latest.get("ended") else None,
        "attempts": sum(1 for a in attempts if a.get("outcome") != "held"),
        "dagster_run_id": (latest or {}).get("dagster_run_id") or (
            materialization.run_id if materialization is not None else None),
        "error": latest.get("error") if status == "failed" and latest else None,
        "artifacts": [],
    }


def _stage_files(store: ArtifactStore, run_id: str, stage: str) -> list[str]:
    """Finished files in a stage folder (no hidden files, no temporary files)."""
    folder = store.run_dir(run_id) / stage
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [str(Path(dirpath) / f) for f in sorted(files) if not f.startswith(".") and TEMP_MARKER not in f]
    return found


def _catalog_paths(store: ArtifactStore, run_id: str, catalog) -> dict[str, list[str]] | None:
    """The run's cataloged file paths per stage, or None when the catalog cannot be read now."""
    import duckdb

    from sparkle_motion_dagster.insight.catalog import Catalog, CatalogBusyError

    try:
        rows = (catalog or Catalog(store.root)).artifacts(run_id)
    except (CatalogBusyError, OSError, duckdb.Error) as exc:
        logging.getLogger(__name__).debug("catalog unavailable: %s", exc)
        return None
    by_stage: dict[str, list[str]] = {}
    for row in rows:
        by_stage.setdefault(row["stage"], []).append(row["local_path"])
    return by_stage


# --- the status payload -----------------------------------------------------------------

def film_status(instance: dg.DagsterInstance, store: ArtifactStore, run_id: str, *, log_lines: int = 20,
                artifacts: bool = True, catalog=None) -> dict[str, Any]:
    """The seed's ``/status`` payload for one film run.

    ``artifacts=False`` skips the per-stage file lists (and the catalog); ``log_lines``
    is how many of the most recent log lines to include.
    """
    if log_lines < 0:
        raise ValueError(f"log_lines: must be 0 or more, got {log_lines}")
    registered = _require_known(instance, store, run_id)
    runs = [_run_summary(record) for record in _partition_runs(instance, run_id)]
    for run in runs[:-1]:  # a not-started run that is not the newest was never launched
        if run["_status"] == RunStatus.NOT_STARTED:
            run["_active"] = False
    active_ids = {r["dagster_run_id"] for r in runs if r["_active"]}
    attempts, lines, steps = _read_logs(instance, runs)
    stages = [_stage_record(asset, attempts[asset], _latest_materialization(instance, asset, run_id), active_ids)
              for asset, _ in STAGES]
    for stage in stages:
        stage["steps"] = [{k: v for k, v in step.items() if not k.startswith("_")}
                          for step in sorted(steps[stage["asset"]], key=lambda s: (s["_started"] or 0, s["step"]))]
    if artifacts:
        cataloged = _catalog_paths(store, run_id, catalog)
        for stage in stages:
            known = (cataloged or {}).get(stage["name"])
            stage["artifacts"] = known if known else _stage_files(store, run_id, stage["name"])
    has_files = store.run_dir(run_id).is_dir()
    # While a Dagster run is active a file may be between its rename and its record: judge files once idle.
    damaged = _mark_damaged(store, run_id, stages) if has_files and not active_ids else ""
    done = sum(stage["status"] == "succeeded" for stage in stages)
    record = read_record(store, run_id) if has_files else {"state": "running"}
    control = record.get("state", "running")
    hold = record.get("hold") if control == "paused" else None
    status, detail = _overall(run_id, control, runs, stages, registered, dry_run=has_files and _dry_run(store, run_id),
                              damaged=damaged, hold=hold)
    if status == "held":
        _mark_held(stages, hold)
    submitted = submitted_at(store, run_id)
    checks = status_checks(store, run_id) if has_files else []
    for stage in stages:
        stage["checks"] = [{"name": c["name"], "passed": c["passed"], "severity": c["severity"],
                            "description": c["description"]} for c in checks if c["asset"] == stage["asset"]]
    return {
        "run_id": run_id,
        "title": run_title(store, run_id),
        "status": status,
        "detail": detail,
        "current_stage": _current_stage(status, stages),
        "progress": round(done / len(STAGES), 4),
        "stages_done": done,
        "stages_total": len(STAGES),
        "submitted_at": submitted.isoformat().replace("+00:00", "Z") if submitted else None,
        "started_at": next((r["started_at"] for r in runs if r["started_at"]), None),
        "completed_at": stages[-1]["completed_at"] if status == "succeeded" else None,
        "control_state": control,
        "stages": stages,
        "log": [{k: v for k, v in line.items() if k != "_ts"} for line in lines[-log_lines:]] if log_lines else [],
        "dagster_runs": [{k: v for k, v in run.items() if not k.startswith("_")} for run in runs],
        "review": review_state(store, run_id) if has_files else None,
        "checks": checks,
        "regenerations": regenerations(store, run_id) if has_files else [],
        "estimated_seconds_left": _time_left(store, run_id, stages) if status == "running" else None,
    }


def _mark_held(stages: list[dict], hold: dict | None) -> None:
    """The stage the control record says the film holds before reads held (not pending, nor
    running from an attempt that ended at the gate), with when it began to hold."""
    stage = next((s for s in stages if s["asset"] == (hold or {}).get("stage")), None)
    if stage is None or stage["status"] in ("succeeded", "failed", "held"):
        return
    since = (hold or {}).get("since")
    try:
        since_ts = datetime.fromisoformat(since).timestamp() if since else None
    except ValueError:
        since_ts = None
    stage.update(status="held", completed_at=None, duration_s=None, started_at=None,
                 held_since=stage.get("held_since") or iso(since_ts))


def _mark_damaged(store: ArtifactStore, run_id: str, stages: list[dict]) -> str:
    """Mark as failed each succeeded stage with a file that no longer matches its record; returns
    the damaged files in words (empty when there are none)."""
    from sparkle_motion_dagster.store import integrity

    damaged = integrity.damaged_files(store, run_id)
    for stage in stages:
        if stage["asset"] in damaged and stage["status"] == "succeeded":
            stage["status"] = "failed"
            files = integrity.describe({stage["asset"]: damaged[stage["asset"]]})
            stage["error"] = f"not the file that was made: {files}"
    return integrity.describe(damaged)


def _time_left(store: ArtifactStore, run_id: str, stages: list[dict]) -> float | None:
    """A running film's estimated seconds left, from the estimate its plan intake recorded."""
    from sparkle_motion_dagster.insight.estimates import time_left

    try:
        report = json.loads(stage_file(store, run_id, "movie_plan", "plan_validation.json").read_text())
    except (OSError, ValueError):
        return None
    done = {s["asset"] for s in stages if s["status"] == "succeeded"}
    running = next((s for s in stages if s["status"] == "running"), None)
    running_for = 0.0
    if running and running["started_at"]:
        started = datetime.fromisoformat(running["started_at"].replace("Z", "+00:00"))
        running_for = max(0.0, (datetime.now(timezone.utc) - started).total_seconds())
    return time_left(report.get("estimate") or {}, done, running["asset"] if running else None, running_for)


def _dry_run(store: ArtifactStore, run_id: str) -> bool:
    """The run's latest plan intake was a dry run (``plan_validation.json`` mode ``dry``)."""
    try:
        report = json.loads(stage_file(store, run_id, "movie_plan", "plan_validation.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and report.get("mode") == "dry"


def _overall(run_id: str, state: str, runs: list[dict], stages: list[dict], registered: bool, *,
             dry_run: bool = False, damaged: str = "", hold: dict | None = None) -> tuple[str, str]:
    active = [r for r in runs if r["_active"]]
    done = sum(s["status"] == "succeeded" for s in stages)
    if state == "stopped":
        return "stopped", f"stopped by a person; continue with `sparkle-motion resume {run_id}`"
    if state == "paused" and active:
        return "paused", "paused: the running stage finishes, then the run ends and holds until resumed"
    if state == "paused" and hold:
        return "held", (f"held before {hold.get('stage')} since {readable_time(hold.get('since', ''))} "
                        f"(no Dagster run, no GPU); "
                        f"continue with `sparkle-motion control resume {run_id}`")
    if any(r["_started"] for r in active):
        return "running", f"{done}/{len(stages)} stages done"
    if active:
        return "queued", "a Dagster run is queued for this film run"
    if damaged:
        return "failed", (f"not the files that were made: {damaged}; make them again with "
                          f"`sparkle-motion resume {run_id}`")
    if done == len(stages):
        return "succeeded", "every stage is materialized"
    if runs and runs[-1]["status"] == "ABANDONED":
        return "failed", (f"the process running the latest Dagster run is gone; "
                          f"continue with `sparkle-motion resume {run_id}`")
    if runs and runs[-1]["status"] == "FAILURE":
        failed = next((s for s in stages if s["status"] == "failed"), None)
        where = f" at {failed['name']}: {failed['error']}" if failed else ""
        return "failed", f"the latest Dagster run failed{where}"
    if runs and runs[-1]["status"] == "CANCELED":
        return "stopped", "the latest Dagster run was cancelled"
    if not runs:
        if not registered:
            return "queued", "files exist but this Dagster instance has no partition for the run"
        return "submitted", f"submitted; never launched (film it with `sparkle-motion run --run-id {run_id}`)"
    if dry_run and runs[-1]["status"] == "SUCCESS":
        return "planned", (f"a dry run: the plan is validated, nothing is rendered; "
                           f"film it with `sparkle-motion run --run-id {run_id}`")
    return "stopped", (f"idle after {done}/{len(stages)} stages (a dry run or a partial materialization); "
                       f"finish with `sparkle-motion resume {run_id}`")


def _current_stage(status: str, stages: list[dict]) -> str | None:
    for wanted in ("running", "held", "failed"):
        found = next((s["name"] for s in stages if s["status"] == wanted), None)
        if found:
            return found
    if status == "succeeded":
        return stages[-1]["name"]
    return next((s["name"] for s in stages if s["status"] != "succeeded"), stages[-1]["name"])


def regenerations(store: ArtifactStore, run_id: str) -> list[dict[str, Any]]:
    """How often each shot was regenerated (``regeneration`` events), e.g. ``shot_002 regenerations: 2``."""
    counts = Counter(str(event["payload"]["shot_id"]) for event in read_events(store.root, run_id, "regeneration")
                     if isinstance(event.get("payload"), dict) and event["payload"].get("shot_id"))
    return [{"shot_id": shot, "count": count, "note": f"{shot} regenerations: {count}"}
            for shot, count in sorted(counts.items())]


def list_runs(instance: dg.DagsterInstance, store: ArtifactStore) -> list[dict[str, Any]]:
    """One summary per film run (``sparkle-motion runs``), newest first."""
    now = datetime.now(timezone.utc)
    summaries = []
    for run_id in known_run_ids(instance, store):
        status = film_status(instance, store, run_id, log_lines=0, artifacts=False)
        submitted = submitted_at(store, run_id)
        age = (now - submitted).total_seconds() if submitted else None
        summaries.append({
            "run_id": run_id, "title": status["title"], "status": status["status"],
            "progress": status["progress"], "current_stage": status["current_stage"],
            "review": status["review"]["status"] if status["review"] else None,
            "submitted_at": status["submitted_at"], "age_s": round(age, 1) if age is not None else None,
            "age": format_age(age),
        })
    return sorted(summaries, key=lambda s: (s["age_s"] is None, s["age_s"] or 0))


# --- the /artifacts view ------------------------------------------------------------------

def artifacts_view(store: ArtifactStore, run_id: str, stage: str | None = None, *, catalog=None) -> dict[str, Any]:
    """The seed's ``/artifacts`` payload (:func:`catalog.artifacts_payload`) with the review
    state as ``review_summary`` (top level and on the finalize stage) and the QA flags.

    Stage folders the catalog has no rows for yet (runs filmed before the stages recorded
    their files) are cataloged from disk first.
    """
    from sparkle_motion_dagster.insight.catalog import Catalog, artifacts_payload

    check_run_id(run_id)
    if stage is not None:
        check_id(stage, field="stage")
    if not store.run_dir(run_id).is_dir():
        raise UnknownRunError(f"run_id: unknown run {run_id!r}: no files under {store.root}")
    catalog = catalog or Catalog(store.root)
    catalog_missing_stages(catalog, store, run_id)
    review = review_state(store, run_id)
    payload = artifacts_payload(catalog, run_id, stage, review_summary={"finalize": review})
    return {**payload, "review_summary": review, "manual_review_required": review["manual_review_required"],
            "qa_mode": review["qa_mode"], "checks": status_checks(store, run_id)}


def catalog_missing_stages(catalog, store: ArtifactStore, run_id: str) -> int:
    """Record the files of stage folders (and the review folder) that have no catalog rows; returns
    how many files were recorded. Records are idempotent, so a later record by the stage wins."""
    from sparkle_motion_dagster.insight.catalog import infer_artifact_type

    known = {row["stage"] for row in catalog.artifacts(run_id)}
    recorded = 0
    for stage in [name for _, name in STAGES] + ["review"]:
        if stage in known:
            continue
        for path in _stage_files(store, run_id, stage):
            rel = Path(path).relative_to(store.run_dir(run_id) / stage)
            artifact_type = infer_artifact_type(stage, path)
            shot_id = rel.parts[0] if len(rel.parts) > 1 else (
                Path(path).stem if artifact_type in ("shot_video", "shot_lipsync_video") else None)
            catalog.record_file(run_id, stage, path, artifact_type=artifact_type, shot_id=shot_id)
            recorded += 1
    return recorded
