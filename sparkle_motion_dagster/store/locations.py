"""Environment-driven locations. Read when called, never at import time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

RUN_MONITORING_YAML = """\
run_monitoring:
  enabled: true
  # A run that ended without handing back its concurrency slots (the gpu pool's) frees them after this long.
  free_slots_after_run_end_seconds: 30
"""

# With SPARKLE_POSTGRES_URL set, runs, events and schedules go to Postgres: what several machines
# (webserver, daemon, workers) share. The URL is read from the environment, never written here.
POSTGRES_STORAGE_YAML = """\
storage:
  postgres:
    postgres_url:
      env: SPARKLE_POSTGRES_URL
"""

HEADER_YAML = """\
# Written by sparkle-motion on first use; edit freely.
telemetry:
  enabled: false
"""

# One GPU step at a time on this machine: the limit of the ``gpu`` pool (and of any other).
POOLS_YAML = """\
concurrency:
  pools:
    default_limit: 1
"""

# Under Celery the ``gpu`` pool has no limit: one worker per GPU, one step at a time each, is what
# keeps each GPU to one step; a limit of the (shared) instance would hold every GPU but one idle.
CELERY_POOLS_YAML = """\
# The gpu pool is unlimited: each GPU's worker runs one step at a time. To hold the cluster to
# N GPU steps at once: dagster instance concurrency set gpu N
"""

DAGSTER_YAML = HEADER_YAML + POOLS_YAML + RUN_MONITORING_YAML


def dagster_yaml() -> str:
    """The dagster.yaml a new home gets: SQLite, or Postgres where SPARKLE_POSTGRES_URL is set;
    the gpu pool limited to one step, except for a Celery cluster (SPARKLE_EXECUTOR=celery)."""
    celery = os.environ.get("SPARKLE_EXECUTOR", "").strip() == "celery"
    return (HEADER_YAML + (CELERY_POOLS_YAML if celery else POOLS_YAML) + RUN_MONITORING_YAML
            + (POSTGRES_STORAGE_YAML if os.environ.get("SPARKLE_POSTGRES_URL", "").strip() else ""))


def upgrade_dagster_yaml(config: Path) -> bool:
    """Bring a dagster.yaml written by an older sparkle-motion up to date, keeping every edit:
    add the ``run_monitoring`` block when the file has none, and the Postgres ``storage`` block
    when SPARKLE_POSTGRES_URL is set and the file names no storage (appended, so nothing else
    moves). A file that has its own ``run_monitoring`` or ``storage`` block is the user's and
    that block is left as it is. Returns whether it changed."""
    import re

    text = config.read_text()
    additions = ""
    if not ("free_slots_after_run_end_seconds" in text or re.search(r"^run_monitoring\s*:", text, re.M)):
        additions += RUN_MONITORING_YAML
    if os.environ.get("SPARKLE_POSTGRES_URL", "").strip() and not re.search(
            r"^(storage|run_storage|event_log_storage)\s*:", text, re.M):
        additions += POSTGRES_STORAGE_YAML
    if not additions:
        return False
    upgraded = text + ("" if text.endswith("\n") or not text else "\n") + additions
    temp = config.with_name(f".{config.name}.{os.getpid()}.tmp")
    temp.write_text(upgraded)
    os.replace(temp, config)
    return True


ARTIFACT_BACKENDS = ("filesystem",)


def artifacts_backend() -> str:
    """ARTIFACTS_BACKEND, checked: anything but a supported backend fails at start."""
    value = os.environ.get("ARTIFACTS_BACKEND", "filesystem").strip() or "filesystem"
    if value not in ARTIFACT_BACKENDS:
        raise ValueError(f"ARTIFACTS_BACKEND: {value!r} is not supported; valid values: {', '.join(ARTIFACT_BACKENDS)}")
    return value


STATE_FOLDER = "state"
HOME_FOLDER = "dagster_home"


class NoStateError(LookupError):
    """A command that only reads found no project state; its message says where it looked."""


def find_state_dir(start: Path | None = None) -> Path | None:
    """The nearest existing project state: ``state/`` holding a ``dagster_home`` in ``start``
    (default the current folder) or a folder above it, the way git finds its repository."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / STATE_FOLDER
        if (candidate / HOME_FOLDER).is_dir():
            return candidate
    return None


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default the current folder) that is a clone of
    this project: it holds ``workspace.yaml`` and the ``sparkle_motion_dagster`` package. A
    notebook opened from ``notebooks/`` belongs to the clone above it."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "workspace.yaml").is_file() and (folder / "sparkle_motion_dagster").is_dir():
            return folder
    return None


def state_dir() -> Path:
    """The project's state folder: the Dagster home and, by default, the artifacts.

    SPARKLE_STATE_DIR when set; else the nearest existing ``state/`` found by walking up from
    the current folder; else ``state/`` at the root of the clone the current folder is in;
    else ``./state`` (created only by a command that writes). The CLI, the notebook and its
    panel all ask this, so a film made by one is seen by the others."""
    configured = os.environ.get("SPARKLE_STATE_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    found = find_state_dir()
    if found is not None:
        return found
    root = find_project_root()
    return (root or Path.cwd().resolve()) / STATE_FOLDER


def where_state_was_looked_for() -> str:
    """Where :func:`state_dir` looks, in words, for messages that say nothing was found."""
    if os.environ.get("SPARKLE_STATE_DIR"):
        return f"SPARKLE_STATE_DIR={state_dir()}"
    return (f"{STATE_FOLDER}/{HOME_FOLDER} in {Path.cwd().resolve()} and every folder above it "
            "(SPARKLE_STATE_DIR is not set)")


def _home_path() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or state_dir() / HOME_FOLDER).expanduser().resolve()


def existing_dagster_home() -> Path:
    """The project's Dagster home, only when it already exists; a command that only reads
    uses this and never creates state. Raises :class:`NoStateError` saying where it looked."""
    home = _home_path()
    if not (home / "dagster.yaml").is_file():
        raise NoStateError(f"no Sparkle Motion state found: looked for {where_state_was_looked_for()}"
                           + (f"; DAGSTER_HOME={home} has no dagster.yaml" if os.environ.get("DAGSTER_HOME") else "")
                           + ". Run this from the project's folder (or below it), set SPARKLE_STATE_DIR, "
                             "or film something first (`sparkle-motion demo`).")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def existing_artifacts_root() -> Path:
    """The artifact root of existing state (ARTIFACTS_FS_ROOT, or the found state's); never created."""
    if os.environ.get("ARTIFACTS_FS_ROOT"):
        return artifacts_root()
    existing_dagster_home()
    return artifacts_root()


def artifacts_root() -> Path:
    configured = os.environ.get("ARTIFACTS_FS_ROOT")
    return Path(configured).expanduser().resolve() if configured else state_dir() / "artifacts"


def path_id(path: Path) -> str:
    """A short fingerprint of a folder's resolved path: what a service says it serves without
    saying where that is."""
    import hashlib

    return hashlib.sha256(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:16]


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at a persistent folder (never a temporary one) and create it."""
    home = _home_path()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    os.environ["DAGSTER_HOME"] = str(home)
    if not config.exists():
        config.write_text(dagster_yaml())
    else:
        upgrade_dagster_yaml(config)
    return home


def dagster_instance(*, create: bool = True):
    """The persistent Dagster instance. The first process to open a new home creates its
    storage under a lock: two processes doing it at once on a new SQLite home can both
    stamp the schema version, which breaks `dagster dev` later. ``create=False`` (commands
    that only read) opens an existing home or raises :class:`NoStateError`."""
    home = ensure_dagster_home() if create else existing_dagster_home()
    import dagster as dg

    marker = home / ".storage-created"
    if marker.exists():
        instance = dg.DagsterInstance.get()
    else:
        with open(home / ".storage-create.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            instance = dg.DagsterInstance.get()
            marker.touch()
    if create:
        mark_cluster_owner(home)
    return instance


def mark_cluster_owner(home: Path) -> None:
    """Record under the artifact root which Dagster storage its runs use (what workers check)."""
    from sparkle_motion_dagster.cluster.identity import ensure_marker, storage_description

    ensure_marker(artifacts_root(), storage_description(os.environ.get("SPARKLE_POSTGRES_URL", "").strip(), home))
