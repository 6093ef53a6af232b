"""An append-only event log per film run (the seed's ``write_memory_event``).

Each event is one JSON line in ``<root>/runs/<run_id>/events/events.jsonl``. A
writer opens the file with ``O_APPEND``, takes an exclusive ``flock``, writes
the whole line with one ``write`` and syncs it, so lines from several processes
never interleave and each writer's events keep their order. Readers take a
shared lock, so they never see half a line; a line torn by a crash is skipped
when reading, and the next writer starts on a fresh line.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.store.storage import ArtifactStore

EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def events_path(root: str | Path, run_id: str) -> Path:
    """Where a run's event log lives (the run_id is validated)."""
    return ArtifactStore(root).path(run_id, "events", "events.jsonl")


def write_event(root: str | Path, run_id: str, event_type: str, payload: Mapping[str, Any],
                actor: str = "system") -> dict[str, Any]:
    """Append one event and return it: ``event_id``, ``run_id``, ``event_type``, ``actor``,
    ``timestamp`` (UTC, ISO 8601) and ``payload``. Values JSON cannot hold (paths,
    datetimes) are stored as strings."""
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise ValueError(f"event_type {event_type!r} must be 1-128 letters, digits, '_', '.', ':' or '-'")
    if not isinstance(payload, Mapping):
        raise TypeError("payload must be a dict")
    if not isinstance(actor, str) or not actor.strip():
        raise ValueError("actor must be a non-empty string")
    path = events_path(root, run_id)
    event = {
        "event_id": uuid.uuid4().hex,
        "run_id": run_id,
        "event_type": event_type,
        "actor": actor,
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "payload": dict(payload),
    }
    line = (json.dumps(event, default=str, ensure_ascii=False) + "\n").encode()
    event = json.loads(line)  # what a reader will get back
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a crash tore the last line: do not glue onto it
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return event


def read_events(root: str | Path, run_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
    """The run's events in the order they were written (optionally of one type)."""
    path = events_path(root, run_id)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return []
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        data = handle.read()
    events = []
    for raw in data.split(b"\n"):
        try:
            event = json.loads(raw)
        except ValueError:
            continue  # empty, or torn by a crash
        if isinstance(event, dict) and (event_type is None or event.get("event_type") == event_type):
            events.append(event)
    return events
