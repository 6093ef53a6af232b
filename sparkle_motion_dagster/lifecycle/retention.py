"""Deleting old film runs: files, catalog rows and the run's Dagster partition.

:func:`plan_retention` lists what a policy would delete; :func:`apply_retention`
deletes it. A policy keeps the ``keep_last`` newest runs and/or the runs newer
than ``older_than``; with both, a run goes only when both say so. A run that is
running or paused, or has a Dagster run that was created and has not ended
(queued, starting, started), is never touched; nor is a run that was submitted
but never filmed (nothing rendered and no Dagster run but a dry run's:
``run --plan`` between its submit and its start, ``submit`` or ``run --mode dry``
waiting for a later ``run --run-id``) unless ``include_unfilmed``
(``--include-unfilmed``) says so. A run whose Dagster run was left behind by a
killed process reads ``failed`` and is treated like any failed run.

A run is deleted whole: its folder is first renamed to a hidden name under
``runs/`` (so it stops being a run at once); if a Dagster run was created for it
since it was checked, the folder is put back and the run is kept. Then its
catalog rows and its ``run_id`` partition are removed, then the folder. An
event cannot be written into a deleted run, so each deletion is appended to
``<root>/retention.log.jsonl`` and returned in the report. A deletion interrupted after the rename is finished
by the next :func:`apply_retention`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages as stage_table
from sparkle_motion_dagster.orchestration.status import film_status, format_age, known_run_ids, run_title, submitted_at
from sparkle_motion_dagster.store.run_files import stage_file
from sparkle_motion_dagster.store.storage import ArtifactStore

LOG_NAME = "retention.log.jsonl"
TRASH_PREFIX = ".deleting-"
KEPT_PREFIX = ".kept-"
PARTITION_TAG = "dagster/partition"
ACTIVE_DAGSTER_STATUSES = ("QUEUED", "STARTING", "STARTED", "CANCELING")
PROTECTED = {"running", "paused"}
AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$", re.IGNORECASE)
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m`` (days, hours, minutes) as a timedelta."""
    match = AGE.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--older-than: {text!r} must be a positive number followed by d, h or m, "
                         "e.g. 7d, 12h or 30m")
    return timedelta(**{UNITS[match.group(2).lower()]: float(match.group(1))})


def describe_age(age: timedelta) -> str:
    """The shortest of ``7d``, ``12h``, ``30m`` that says ``age`` exactly (else ``format_age``)."""
    seconds = age.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return format_age(seconds)


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
    return total


def _protected(instance: dg.DagsterInstance, store: ArtifactStore, run_id: str, *,
               include_unfilmed: bool = False) -> str | None:
    """Why the run must not be deleted now, or None."""
    status = film_status(instance, store, run_id, log_lines=0, artifacts=False)
    if status["status"] in PROTECTED:
        return status["status"]
    runs = status["dagster_runs"]
    if runs and runs[-1]["status"] == "NOT_STARTED":  # created, not abandoned: it is about to start
        return "a Dagster run is about to start"
    active = [r for r in runs if r["status"] in ACTIVE_DAGSTER_STATUSES]
    if active:
        return f"Dagster run {active[0]['dagster_run_id']} is {active[0]['status'].lower()}"
    if not include_unfilmed and _unfilmed(store, run_id, status):
        return "submitted but not filmed yet (--include-unfilmed deletes it)"
    return None


def _unfilmed(store: ArtifactStore, run_id: str, status: dict[str, Any]) -> bool:
    """Submitted and waiting to be filmed: nothing rendered (no stage folder after plan intake), and
    no Dagster run in this instance or only a dry run's (the plan was checked, ``run --run-id`` films it)."""
    run_dir = store.run_dir(run_id)
    intake = stage_table.folder("movie_plan")
    later = [name for row in stage_table.STAGES for name in (row.folder, *row.work_folders) if name != intake]
    if any((run_dir / name).exists() for name in later):
        return False
    runs = status["dagster_runs"]
    return not runs or (runs[-1]["status"] == "SUCCESS" and _intake_mode(store, run_id) == "dry")


def _intake_mode(store: ArtifactStore, run_id: str) -> str | None:
    """``dry`` or ``run``: how the run's latest plan intake ran (``plan_validation.json``), if it did."""
    try:
        report = json.loads(stage_file(store, run_id, "movie_plan", "plan_validation.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return report.get("mode") if isinstance(report, dict) else None


def _dagster_run_ids(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """Every Dagster run created for the film run's partition, whatever its status."""
    return set(instance.get_run_ids(filters=dg.RunsFilter(tags={PARTITION_TAG: run_id})))


def plan_retention(store: ArtifactStore, instance: dg.DagsterInstance, keep_last: int | None = None,
                   older_than: timedelta | None = None, *, now: datetime | None = None,
                   include_unfilmed: bool = False) -> list[dict[str, Any]]:
    """The runs the policy would delete, oldest first: run_id, title, age, size_bytes, reason.
    Runs submitted but not filmed yet are kept unless ``include_unfilmed``."""
    if keep_last is None and older_than is None:
        raise ValueError("give --keep-last N or --older-than AGE (e.g. 7d)")
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 0):
        raise ValueError(f"--keep-last: must be a whole number of runs, 0 or more, got {keep_last!r}")
    if older_than is not None and older_than <= timedelta(0):
        raise ValueError("--older-than: must be a positive age, e.g. 7d")
    now = now or datetime.now(timezone.utc)
    runs = []
    for run_id in known_run_ids(instance, store):
        when = submitted_at(store, run_id)
        if when is None and store.run_dir(run_id).is_dir():
            when = datetime.fromtimestamp(store.run_dir(run_id).stat().st_mtime, timezone.utc)
        runs.append((run_id, when))
    # Newest first; runs of unknown age count as the oldest.
    runs.sort(key=lambda item: item[1] or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
    doomed = []
    for position, (run_id, when) in enumerate(runs):
        age = (now - when) if when else None
        reasons = []
        if keep_last is not None:
            if position < keep_last:
                continue
            reasons.append(f"not among the {keep_last} newest runs")
        if older_than is not None:
            if age is None or age <= older_than:
                continue
            reasons.append(f"older than {describe_age(older_than)}")
        if _protected(instance, store, run_id, include_unfilmed=include_unfilmed):
            continue
        folder = store.run_dir(run_id)
        doomed.append({
            "run_id": run_id,
            "title": run_title(store, run_id),
            "submitted_at": when.isoformat().replace("+00:00", "Z") if when else None,
            "age": format_age(age.total_seconds() if age else None),
            "age_s": round(age.total_seconds(), 1) if age else None,
            "size_bytes": _size(folder) if folder.is_dir() else 0,
            "reason": " and ".join(reasons),
        })
    return doomed[::-1]


def apply_retention(store: ArtifactStore, instance: dg.DagsterInstance, keep_last: int | None = None,
                    older_than: timedelta | None = None, *, catalog=None, now: datetime | None = None,
                    actor: str = "cli", include_unfilmed: bool = False) -> dict[str, Any]:
    """Delete what :func:`plan_retention` lists; returns ``{"deleted", "skipped", "freed_bytes", "log"}``."""
    from sparkle_motion_dagster.insight.catalog import Catalog

    catalog = catalog or Catalog(store.root)
    _finish_interrupted(store)
    deleted, skipped = [], []
    for run in plan_retention(store, instance, keep_last, older_than, now=now, include_unfilmed=include_unfilmed):
        seen = _dagster_run_ids(instance, run["run_id"])
        why = _protected(instance, store, run["run_id"], include_unfilmed=include_unfilmed)  # it may have started
        why = why or _delete_run(store, instance, catalog, run["run_id"], seen)
        if why:
            skipped.append({**run, "skipped_because": why})
            continue
        entry = {**run, "deleted_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                 "actor": actor, "artifacts_fs_root": str(store.root)}
        _append_log(store.root / LOG_NAME, entry)
        deleted.append(entry)
    return {"deleted": deleted, "skipped": skipped, "freed_bytes": sum(r["size_bytes"] for r in deleted),
            "log": str(store.root / LOG_NAME)}


def _delete_run(store: ArtifactStore, instance: dg.DagsterInstance, catalog, run_id: str,
                seen: set[str]) -> str | None:
    """Delete the run; returns why it was kept instead (a Dagster run not in ``seen`` was created
    for it while its folder was being taken away), else None."""
    folder = store.run_dir(run_id)
    trash = None
    if folder.is_dir():
        trash = folder.with_name(f"{TRASH_PREFIX}{run_id}-{secrets.token_hex(3)}")
        os.replace(folder, trash)  # from here on the run no longer exists under runs/
        if _dagster_run_ids(instance, run_id) - seen:
            _put_back(trash, folder)
            return "a Dagster run was created for it while it was being deleted"
    catalog.delete_run(run_id)
    if instance.has_dynamic_partition("run_id", run_id):
        instance.delete_dynamic_partition("run_id", run_id)
    if trash is not None:
        shutil.rmtree(trash)
    return None


def _put_back(trash: Path, folder: Path) -> None:
    """Return a run folder taken away for deletion; when something took its place meanwhile, keep it
    under a name that no later deletion removes and say where."""
    try:
        os.replace(trash, folder)
    except OSError as exc:
        kept = folder.with_name(f"{KEPT_PREFIX}{folder.name}-{secrets.token_hex(3)}")
        os.replace(trash, kept)
        raise RuntimeError(f"run_id: {folder.name} started while it was being deleted and {folder} was "
                           f"created again ({exc.strerror}); its files are kept in {kept}") from exc


def _finish_interrupted(store: ArtifactStore) -> None:
    """Remove folders a previous, interrupted deletion had already renamed away."""
    runs = store.root / "runs"
    if runs.is_dir():
        for trash in runs.glob(f"{TRASH_PREFIX}*"):
            if trash.is_dir() and not trash.is_symlink():
                shutil.rmtree(trash, ignore_errors=True)


def _append_log(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line, whole, under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(root: str | Path) -> list[dict[str, Any]]:
    """The retention log's entries, oldest first."""
    try:
        lines = (Path(root) / LOG_NAME).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries
