"""Pause, resume and stop for a film run: a small state file every stage consults.

Dagster has no native pause. Every stage calls :func:`wait_at_gate` before it
starts: while the run is paused it holds there (the running stage always
finishes first), on resume it carries on in the same Dagster run without
recomputing anything, and when stopped it ends the run with a non-retryable
failure and the film run's status reads ``stopped``. Rendering loops also call
:func:`raise_if_stopped` between items so a stop does not wait for a long stage.

The state lives at ``runs/<run_id>/control/state.json`` and is written
atomically; any process (the CLI, the UI's run, a sensor's run) sees it. Beside
it, each process filming the run leaves ``active/<host>-<pid>.json`` (so
``control`` can tell whether anything is filming the run) and a run held at the
gate leaves ``hold.json`` (which stage, since when). Dagster-free, so that
``sparkle-motion control`` answers at once.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sparkle_motion_dagster.runs.storage import ArtifactStore, atomic_write_json, process_alive

STATES = ("running", "paused", "stopped")


class RunStopped(RuntimeError):
    """The film run was stopped by a person."""


def state_path(store: ArtifactStore, run_id: str) -> Path:
    return store.path(run_id, "control", "state.json")


def read_state(store: ArtifactStore, run_id: str) -> dict:
    path = state_path(store, run_id)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"state": "running"}


def set_state(store: ArtifactStore, run_id: str, state: str, *, actor: str = "cli") -> dict:
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    record = {"state": state, "actor": actor, "changed_at": datetime.now(timezone.utc).isoformat()}
    atomic_write_json(state_path(store, run_id), record)
    return record


def stopped_message(run_id: str) -> str:
    return f"{run_id} was stopped; continue it with `sparkle-motion resume {run_id}`"


def hold_message(run_id: str, stage: str) -> str:
    """What a run held at a closed gate says, in the foreground CLI and in its Dagster log."""
    return (f"{run_id} is paused: holding before {stage}; continue it with "
            f"`sparkle-motion control resume {run_id}` (or stop it with `sparkle-motion control stop {run_id}`)")


def raise_if_stopped(store: ArtifactStore, run_id: str) -> None:
    if read_state(store, run_id)["state"] == "stopped":
        raise RunStopped(stopped_message(run_id))


def hold_path(store: ArtifactStore, run_id: str) -> Path:
    return store.path(run_id, "control", "hold.json")


def read_hold(store: ArtifactStore, run_id: str) -> dict | None:
    """Where the run is held at the gate (``{"stage", "since", "pid", "host"}``), or None."""
    try:
        return json.loads(hold_path(store, run_id).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_at_gate(store: ArtifactStore, run_id: str, *, stage: str = "the next stage",
                 on_hold: Callable[[str], None] | None = None, poll_seconds: float = 0.5) -> float:
    """Return when the run may start ``stage``; raise RunStopped if it was stopped.

    While paused, ``hold.json`` says where the run holds and ``on_hold`` is told once
    (with :func:`hold_message`). Returns the seconds it held, so that they are reported
    as held rather than as time spent in the stage."""
    held_since: float | None = None
    try:
        while True:
            state = read_state(store, run_id)["state"]
            if state == "stopped":
                raise_if_stopped(store, run_id)
            if state != "paused":
                return 0.0 if held_since is None else time.monotonic() - held_since
            if held_since is None:
                held_since = time.monotonic()
                atomic_write_json(hold_path(store, run_id), {
                    "stage": stage, "since": datetime.now(timezone.utc).isoformat(),
                    "pid": os.getpid(), "host": socket.gethostname()})
                if on_hold:
                    on_hold(hold_message(run_id, stage))
            time.sleep(poll_seconds)
    finally:
        if held_since is not None:
            hold_path(store, run_id).unlink(missing_ok=True)


# --- which processes are filming the run ----------------------------------------------


def _active_dir(store: ArtifactStore, run_id: str) -> Path:
    return store.path(run_id, "control", "active")


def _own_active_file(store: ArtifactStore, run_id: str) -> Path:
    return _active_dir(store, run_id) / f"{socket.gethostname()}-{os.getpid()}.json"


def mark_active(store: ArtifactStore, run_id: str) -> None:
    """Record that this process is filming the run (the runner before it starts, every stage as it
    starts: a run launched from the UI or a sensor is seen too). Left behind by a process that
    dies; :func:`is_running` ignores those."""
    path = _own_active_file(store, run_id)
    if not path.exists():
        atomic_write_json(path, {"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": datetime.now(timezone.utc).isoformat()})


def clear_active(store: ArtifactStore, run_id: str) -> None:
    """This process has finished filming the run (the folders go when nothing else is in them)."""
    path = _own_active_file(store, run_id)
    path.unlink(missing_ok=True)
    for folder in (path.parent, path.parent.parent):
        try:
            folder.rmdir()
        except OSError:  # another process's marker, or the state file, is still there
            break


def is_running(store: ArtifactStore, run_id: str) -> bool:
    """Whether some process is filming the run now: one on this host whose process is alive,
    or one on another host (which cannot be checked from here)."""
    host = socket.gethostname()
    for path in _active_dir(store, run_id).glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        pid = entry.get("pid")
        if entry.get("host") != host or (isinstance(pid, int) and pid > 0 and process_alive(pid)):
            return True
    return False
