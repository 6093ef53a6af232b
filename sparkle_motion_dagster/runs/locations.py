"""Environment-driven locations. Read when called, never at import time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

DAGSTER_YAML = """\
# Written by sparkle-motion on first use; edit freely.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""


ARTIFACT_BACKENDS = ("filesystem",)


def artifacts_backend() -> str:
    """ARTIFACTS_BACKEND, checked: anything but a supported backend fails at start."""
    value = os.environ.get("ARTIFACTS_BACKEND", "filesystem").strip() or "filesystem"
    if value not in ARTIFACT_BACKENDS:
        raise ValueError(f"ARTIFACTS_BACKEND: {value!r} is not supported; valid values: {', '.join(ARTIFACT_BACKENDS)}")
    return value


def state_dir() -> Path:
    """The project's state folder: the Dagster home and, by default, the artifacts."""
    return Path(os.environ.get("SPARKLE_STATE_DIR") or Path.cwd() / "state").expanduser().resolve()


def artifacts_root() -> Path:
    configured = os.environ.get("ARTIFACTS_FS_ROOT")
    return Path(configured).expanduser().resolve() if configured else state_dir() / "artifacts"


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at a persistent folder (never a temporary one) and create it."""
    home = Path(os.environ.get("DAGSTER_HOME") or state_dir() / "dagster_home").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    os.environ["DAGSTER_HOME"] = str(home)
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def dagster_instance():
    """The persistent Dagster instance. The first process to open a new home creates its
    storage under a lock: two processes doing it at once on a new SQLite home can both
    stamp the schema version, which breaks `dagster dev` later."""
    home = ensure_dagster_home()
    import dagster as dg

    marker = home / ".storage-created"
    if marker.exists():
        return dg.DagsterInstance.get()
    with open(home / ".storage-create.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        marker.touch()
    return instance
