"""Which artifact root and Dagster storage a box sees, so that a worker that sees others than
the runs it would serve refuses to start.

The box that owns the Dagster instance (the one whose CLI, webserver or daemon opens it)
writes ``<artifact root>/.sparkle-cluster.json``: an id made once, and the storage its
records go to (the Postgres URL without its password, or the SQLite home). A worker reads
that file from its own artifact root and compares the storage with its own settings.
Dagster-free.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.store.storage import atomic_write_json

MARKER = ".sparkle-cluster.json"


class ClusterMismatchError(RuntimeError):
    """This box does not see the artifact root or the Dagster storage the runs use."""


def storage_description(postgres_url: str, dagster_home: Path) -> str:
    from sparkle_motion_dagster.cluster.settings import redact

    return redact(postgres_url) if postgres_url else f"sqlite:{dagster_home}"


def read_marker(root: Path) -> dict[str, Any] | None:
    path = Path(root) / MARKER
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterMismatchError(f"{path} cannot be read ({exc}); remove it and open the instance again "
                                   "(`sparkle-motion paths --create` on the box that owns the runs)") from None


def ensure_marker(root: Path, storage: str) -> dict[str, Any]:
    """Write (or bring up to date) the marker of the instance owner; returns it."""
    current = read_marker(root)
    if current is not None and current.get("storage") == storage:
        return current
    marker = {"id": (current or {}).get("id") or secrets.token_hex(8), "storage": storage,
              "artifact_root": str(Path(root).resolve())}
    Path(root).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(root) / MARKER, marker)
    return marker


def check_worker_view(root: Path, storage: str) -> dict[str, Any]:
    """The marker, when this box sees the same artifact root and storage as the runs; else
    :class:`ClusterMismatchError` saying what to set."""
    marker = read_marker(root)
    if marker is None:
        raise ClusterMismatchError(
            f"no {MARKER} under the artifact root {root}: this box does not see the artifact root the runs use. "
            "Mount the shared artifact root here and point ARTIFACTS_FS_ROOT at it (the same folder the webserver, "
            "daemon and CLI use); if it is that folder, open the instance once on the box that owns it "
            "(`sparkle-motion paths --create`).")
    if marker.get("storage") != storage:
        hint = ("set SPARKLE_POSTGRES_URL to the URL the webserver and daemon use"
                if str(marker.get("storage", "")).startswith("postgres") else
                "the runs keep their records in SQLite on the box that owns them: a worker on another box needs "
                "SPARKLE_POSTGRES_URL set on every box (and the same DAGSTER_HOME on this one)")
        raise ClusterMismatchError(f"this worker's Dagster storage is {storage}, but the runs under {root} use "
                                   f"{marker.get('storage')}: {hint}")
    return marker


def check_step_view(root: Path, expected_id: str) -> None:
    """A step of a run started where the marker's id was ``expected_id`` (the run's tag) must see
    that marker under its own artifact root: else it would write the film's files elsewhere."""
    marker = read_marker(root)
    found = (marker or {}).get("id")
    if found != expected_id:
        raise ClusterMismatchError(
            f"this box's artifact root {root} is not the run's (its {MARKER} has id {found or 'none'}, the run's is "
            f"{expected_id}): mount the shared artifact root here and point ARTIFACTS_FS_ROOT at it, as on the box "
            "that started the run")
