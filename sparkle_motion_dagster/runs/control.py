"""Pause, resume and stop for a film run: a small state file every stage consults.

Dagster has no native pause. Every stage calls :func:`wait_at_gate` before it
starts: while the run is paused it holds there (the running stage always
finishes first), on resume it carries on in the same Dagster run without
recomputing anything, and when stopped it ends the run with a non-retryable
failure and the film run's status reads ``stopped``. Rendering loops also call
:func:`raise_if_stopped` between items so a stop does not wait for a long stage.

The state lives at ``runs/<run_id>/control/state.json`` and is written
atomically; any process (the CLI, the UI's run, a sensor's run) sees it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sparkle_motion_dagster.runs.storage import ArtifactStore, atomic_write_json

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


def raise_if_stopped(store: ArtifactStore, run_id: str) -> None:
    if read_state(store, run_id)["state"] == "stopped":
        raise RunStopped(f"{run_id} was stopped; continue it with `sparkle-motion resume {run_id}`")


def wait_at_gate(store: ArtifactStore, run_id: str, *, on_hold: Callable[[], None] | None = None,
                 poll_seconds: float = 0.5) -> None:
    """Return when the run may start its next stage; raise RunStopped if it was stopped."""
    announced = False
    while True:
        state = read_state(store, run_id)["state"]
        if state == "stopped":
            raise_if_stopped(store, run_id)
        if state != "paused":
            return
        if not announced and on_hold:
            on_hold()
            announced = True
        time.sleep(poll_seconds)
