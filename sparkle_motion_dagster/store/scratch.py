"""Scratch folders: this host's temporary files that are not artifacts (the espeak-ng data
overlay, ...), under ``<state folder>/tmp/<host>/``, named with their writer's pid so that
whatever a killed writer left is cleared by the next process."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from pathlib import Path

from sparkle_motion_dagster.store.locations import state_dir
from sparkle_motion_dagster.store.storage import (
    TEMP_MARKER,
    check_id,
    remove_stale_temps,
)

SCRATCH_FOLDER = "tmp"  # under the state folder: scratch files that are not artifacts
SYSTEM_TEMP_PREFIX = "sparkle-"  # scratch folders that had to go to the system temp folder


def scratch_root() -> Path:
    """This host's scratch folder, ``<state folder>/tmp/<host>/``: temporary files that are not
    artifacts (the espeak-ng data overlay, ...). Per host, because a pid says nothing about
    another machine's processes."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return state_dir() / SCRATCH_FOLDER / host


def clear_stale_scratch() -> int:
    """Remove what writers that are gone left in :func:`scratch_root` (and scratch folders that had
    to go to the system temp folder, see :func:`make_scratch_dir`); returns how many entries."""
    root, system = scratch_root(), Path(tempfile.gettempdir())
    found = list(root.iterdir()) if root.is_dir() else []
    with contextlib.suppress(OSError):
        found += [p for p in system.iterdir() if p.name.startswith(SYSTEM_TEMP_PREFIX)]
    return remove_stale_temps(found)


def make_scratch_dir(kind: str, *, max_path_length: int | None = None) -> Path:
    """A new private folder ``<kind>.partial-<pid>-<random>`` in :func:`scratch_root` (which is
    first cleared of stale entries). The owner removes it when done; if the owner is killed,
    the next process that clears the scratch folder does. Only when that path would be longer
    than ``max_path_length`` (a library with a fixed-size path buffer) does the folder go to
    the system temp folder instead, as ``sparkle-<kind>.partial-<pid>-<random>``, cleared the same way."""
    check_id(kind, field="kind")
    root = scratch_root()
    with contextlib.suppress(OSError):  # tidying up must never stop the new owner
        clear_stale_scratch()
    prefix = f"{kind}{TEMP_MARKER}{os.getpid()}-"
    if max_path_length is not None and len(str(root / prefix)) + 8 > max_path_length:
        return Path(tempfile.mkdtemp(prefix=SYSTEM_TEMP_PREFIX + prefix))
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
