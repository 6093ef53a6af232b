"""A film run's state, in one record: what a person asked (run, pause, stop), where a paused
run holds, and who waits to carry it on. Every reader and writer goes through this module.

What Dagster knows (which Dagster runs exist, started, ended, failed) stays in Dagster's run
storage, the source of truth for it; this record holds only what Dagster cannot know, and
:mod:`sparkle_motion_dagster.orchestration.status` reads the two together. The record lives at
``runs/<run_id>/control/state.json``, written atomically under a lock (``state.lock``), so the
gate of a stage and a ``control resume`` never both miss each other.

Pause ends the Dagster run at the next stage boundary: the stage about to start sees the
closed gate (:func:`close_gate`), records where it holds (``hold``: the stage, since when)
and ends its run without a retry, so the run keeps no pool slot and no GPU worker. A
foreground ``sparkle-motion run`` waits, holding nothing, and carries on when resumed
(it registers itself as ``waiter``); a film launched from the UI is carried on by
whoever resumes it (:func:`resume`), which launches the stages that are missing.

Dagster-free, so that ``sparkle-motion control`` answers at once. Beside the record, each
process filming the run leaves ``active/<host>-<pid>.json`` (so ``control`` can tell whether
anything is filming the run now).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_json, process_alive

STATES = ("running", "paused", "stopped")


class RunStopped(RuntimeError):
    """The film run was stopped by a person."""


class RunPaused(RuntimeError):
    """The film run is paused: the stage about to start holds (its Dagster run ends here)."""

    def __init__(self, message: str, stage: str):
        super().__init__(message)
        self.stage = stage


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def state_path(store: ArtifactStore, run_id: str) -> Path:
    return store.path(run_id, "control", "state.json")


@contextlib.contextmanager
def _locked(store: ArtifactStore, run_id: str) -> Iterator[None]:
    """Hold the record's lock for a read-modify-write (every process on this machine sees it)."""
    lock = store.path(run_id, "control", "state.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_record(store: ArtifactStore, run_id: str) -> dict:
    """The whole record: ``state``, ``actor``, ``changed_at``, and where present ``hold``
    (``stage``, ``since``), ``last_hold`` (a hold that ended: ``stage``, ``since``,
    ``resumed_at``) and ``waiter`` (``pid``, ``host``, ``since``: a foreground command that
    carries the run on when resumed)."""
    try:
        record = json.loads(state_path(store, run_id).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"state": "running"}
    return record if isinstance(record, dict) and record.get("state") in STATES else {"state": "running"}


def read_state(store: ArtifactStore, run_id: str) -> dict:
    return read_record(store, run_id)


def _write(store: ArtifactStore, run_id: str, record: dict) -> dict:
    atomic_write_json(state_path(store, run_id), record)
    return record


def set_state(store: ArtifactStore, run_id: str, state: str, *, actor: str = "cli") -> dict:
    """Set what a person asked. Leaving ``paused`` ends a hold (kept as ``last_hold``, so the
    stage that starts next reports the time held apart from its own)."""
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    with _locked(store, run_id):
        record = read_record(store, run_id)
        hold = record.pop("hold", None)
        if hold and state != "paused":
            record["last_hold"] = {**hold, "resumed_at": _now()}
        elif hold:
            record["hold"] = hold
        record.update(state=state, actor=actor, changed_at=_now())
        return _write(store, run_id, record)


def stopped_message(run_id: str) -> str:
    return f"{run_id} was stopped; continue it with `sparkle-motion resume {run_id}`"


def hold_message(run_id: str, stage: str, since: str | None = None) -> str:
    """What a run held at a closed gate says, in the foreground CLI and in its Dagster log."""
    when = f" since {readable_time(since)}" if since else ""
    return (f"{run_id} is paused: holding before {stage}{when}; continue it with "
            f"`sparkle-motion control resume {run_id}` (or stop it with `sparkle-motion control stop {run_id}`)")


def readable_time(iso: str) -> str:
    """``2026-12-07 06:01:02 UTC`` from an ISO timestamp (as written here)."""
    try:
        return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def raise_if_stopped(store: ArtifactStore, run_id: str) -> None:
    if read_state(store, run_id)["state"] == "stopped":
        raise RunStopped(stopped_message(run_id))


def read_hold(store: ArtifactStore, run_id: str) -> dict | None:
    """Where the paused run holds (``{"stage", "since"}``), or None while it does not."""
    record = read_record(store, run_id)
    return record.get("hold") if record["state"] == "paused" else None


def close_gate(store: ArtifactStore, run_id: str, stage: str) -> float:
    """At the start of ``stage``: raise RunStopped when the run was stopped, RunPaused when it is
    paused (recording that it holds before ``stage``, unless it already holds), or return the
    seconds this stage was held at the last pause (0.0 when it was not), once."""
    quick = read_record(store, run_id)
    if quick["state"] == "running" and (quick.get("last_hold") or {}).get("stage") != stage:
        return 0.0  # nothing to honour (a pause set from now on is honoured at the next gate)
    with _locked(store, run_id):
        record = read_record(store, run_id)
        if record["state"] == "stopped":
            raise RunStopped(stopped_message(run_id))
        if record["state"] == "paused":
            hold = record.setdefault("hold", {"stage": stage, "since": _now()})
            _write(store, run_id, record)
            raise RunPaused(hold_message(run_id, hold["stage"], hold["since"]), hold["stage"])
        last = record.get("last_hold")
        if not last or last.get("stage") != stage:
            return 0.0
        del record["last_hold"]
        _write(store, run_id, record)
    try:
        held = datetime.fromisoformat(last["resumed_at"]) - datetime.fromisoformat(last["since"])
    except (KeyError, ValueError):
        return 0.0
    return max(0.0, held.total_seconds())


# --- who carries a paused run on ------------------------------------------------------------


def _alive_here(entry: dict | None) -> bool:
    pid = (entry or {}).get("pid")
    return bool(entry) and (entry.get("host") != socket.gethostname()
                            or (isinstance(pid, int) and pid > 0 and process_alive(pid)))


def set_waiter(store: ArtifactStore, run_id: str, present: bool) -> None:
    """This foreground process carries the run on when it is resumed (or no longer does)."""
    with _locked(store, run_id):
        record = read_record(store, run_id)
        if present:
            record["waiter"] = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        elif (record.get("waiter") or {}).get("pid") == os.getpid():
            del record["waiter"]
            if record == {"state": "running"}:  # nobody ever paused or stopped it: leave no files behind
                state_path(store, run_id).unlink(missing_ok=True)
                _remove_if_empty(_active_dir(store, run_id))
                return
        else:
            return
        _write(store, run_id, record)


def resume(store: ArtifactStore, run_id: str, *, actor: str = "cli") -> bool:
    """Resume a paused run; returns whether the caller must launch the rest: True when the run
    holds (its Dagster run ended) and no foreground command waits to carry it on, or when
    nothing films it at all; False when a running stage or a waiting command carries on."""
    with _locked(store, run_id):
        record = read_record(store, run_id)
        hold = record.pop("hold", None) if record["state"] == "paused" else None
        if hold:
            record["last_hold"] = {**hold, "resumed_at": _now()}
        record.update(state="running", actor=actor, changed_at=_now())
        _write(store, run_id, record)
    if hold:
        return not _alive_here(record.get("waiter"))
    return not is_running(store, run_id)


# --- which processes are filming the run ----------------------------------------------


def _active_dir(store: ArtifactStore, run_id: str) -> Path:
    return store.path(run_id, "control", "active")


def _own_active_file(store: ArtifactStore, run_id: str) -> Path:
    return _active_dir(store, run_id) / f"{socket.gethostname()}-{os.getpid()}.json"


def mark_active(store: ArtifactStore, run_id: str) -> bool:
    """Record that this process is filming the run (the runner before it starts, every stage as it
    starts: a run launched from the UI or a sensor is seen too); whether this call made the record
    (its maker clears it). Left behind by a process that dies; :func:`is_running` ignores those."""
    path = _own_active_file(store, run_id)
    if path.exists():
        return False
    atomic_write_json(path, {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
    return True


def clear_active(store: ArtifactStore, run_id: str) -> None:
    """This process has finished filming the run (the folder goes when nothing else is in it)."""
    path = _own_active_file(store, run_id)
    path.unlink(missing_ok=True)
    _remove_if_empty(path.parent)


def _remove_if_empty(active: Path) -> None:
    """Remove ``active/`` and, when no record is left beside it, the lock and ``control/``."""
    try:
        active.rmdir()
    except FileNotFoundError:
        pass
    except OSError:  # another process's marker is still there
        return
    control = active.parent
    if not (control / "state.json").exists():
        (control / "state.lock").unlink(missing_ok=True)
        try:
            control.rmdir()
        except OSError:
            pass


def is_running(store: ArtifactStore, run_id: str) -> bool:
    """Whether some process is filming the run now: one on this host whose process is alive,
    or one on another host (which cannot be checked from here)."""
    for path in _active_dir(store, run_id).glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if _alive_here(entry):
            return True
    return False
