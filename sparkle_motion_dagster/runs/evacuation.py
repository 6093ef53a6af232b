"""Copying film runs off an ephemeral artifact root (the seed's evacuation workflow).

:func:`evacuate` copies ``<root>/runs/<run_id>/`` to ``<dest>/runs/<run_id>/`` so
that ``dest`` can later be used as an artifact root itself. It is incremental
like ``rsync``: a file whose destination copy has the same size and sha256 is
skipped. Each file is copied to a temporary name beside its destination,
verified by sha256 against the bytes read from the source, and renamed into
place, so an interrupted evacuation never leaves a partial file under a final
name; running it again finishes the job. Nothing at the destination is ever
deleted. The catalog spool (``.catalog/``) and half-written temporary files are
not copied; run ``sparkle-motion catalog rebuild`` against the destination to
index it.

Every run's event log gets ``filesystem_artifacts.evacuate`` events: status
``pending_copy`` before the copy, then ``completed`` or ``failed``; the log is
copied again after the last event so the destination has the whole history.

:func:`ephemeral_root_warning` says when the artifact root lives somewhere that
vanishes with the machine (Colab's ``/content`` outside Drive, the temp folder).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.runs.events import events_path, write_event
from sparkle_motion_dagster.runs.storage import (
    TEMP_MARKER,
    ArtifactStore,
    UnknownRunError,
    check_run_id,
    copy_file_atomic,
    sha256_file,
)

EVENT_TYPE = "filesystem_artifacts.evacuate"
PARTIAL = TEMP_MARKER + "evac-"  # contains TEMP_MARKER, so catalog scans and the file service ignore it
SKIP_DIRS = {".catalog"}
PREFIXES_ENV = "SPARKLE_EPHEMERAL_PREFIXES"

Progress = Callable[[dict[str, Any]], None]


def _run_files(run_dir: Path) -> list[tuple[Path, int]]:
    """(path relative to the run folder, size) of every file to copy, in a stable order."""
    found = []
    for dirpath, dirs, files in os.walk(run_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if TEMP_MARKER in name:
                continue
            path = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):
                found.append((path.relative_to(run_dir), path.stat().st_size))
    return found


def _check_destination(store: ArtifactStore, dest: str | Path) -> Path:
    if not str(dest).strip():
        raise ValueError("--to: a destination folder is required")
    target = Path(dest).expanduser().resolve()
    if target == store.root or store.root in target.parents:
        raise ValueError(f"--to: {target} is inside the artifact root {store.root}; "
                         "evacuate to another disk (e.g. /content/drive/MyDrive/sparkle_motion/artifacts_fs)")
    if target.exists() and not target.is_dir():
        raise ValueError(f"--to: {target} exists and is not a folder")
    return target


def sync_file(source: Path, destination: Path) -> tuple[str, int]:
    """Make ``destination`` a verified copy of ``source``. Returns (``copied``|``skipped``|``vanished``,
    bytes copied)."""
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        return "vanished", 0
    if destination.is_file() and destination.stat().st_size == size and \
            sha256_file(destination) == sha256_file(source):
        return "skipped", 0
    _, copied = copy_file_atomic(source, destination, read_back=True, keep_metadata=True, marker=PARTIAL)
    return "copied", copied


def _clear_partials(folder: Path) -> None:
    """Remove temporary copies an interrupted evacuation left in the destination."""
    if folder.is_dir():
        for leftover in folder.rglob(f"*{PARTIAL}*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def evacuate(store: ArtifactStore, run_ids: Iterable[str], dest: str | Path, progress: Progress | None = None,
             *, actor: str = "cli") -> dict[str, Any]:
    """Copy each run to ``dest/runs/<run_id>/``; returns a report with per-run counts.

    ``progress`` is called after every file with ``run_id``, ``path`` (relative to the run),
    ``action`` (copied, skipped or vanished), ``files_done``, ``files_total``, ``bytes_done``
    and ``bytes_total``. An exception (from the copy or from ``progress``) is logged as a
    ``failed`` event for that run and re-raised; calling again picks up where it stopped.
    """
    target_root = _check_destination(store, dest)
    ids = list(dict.fromkeys(check_run_id(run_id) for run_id in run_ids))
    if not ids:
        raise ValueError("run_ids: no runs to evacuate (give run ids or --all)")
    for run_id in ids:
        if not store.run_dir(run_id).is_dir():
            raise UnknownRunError(f"run_id: unknown run {run_id!r}: no files under {store.root}")
    plan = {run_id: _run_files(store.run_dir(run_id)) for run_id in ids}
    totals = {"files_total": sum(len(f) for f in plan.values()),
              "bytes_total": sum(size for f in plan.values() for _, size in f)}
    done = {"files_done": 0, "bytes_done": 0}
    report: dict[str, Any] = {"artifacts_fs_root": str(store.root), "destination": str(target_root),
                              "runs": [], "files_copied": 0, "files_skipped": 0, "bytes_copied": 0}
    for run_id in ids:
        source, target = store.run_dir(run_id), target_root / "runs" / run_id
        counts = {"files_copied": 0, "files_skipped": 0, "bytes_copied": 0}
        base = {"artifacts_fs_root": str(store.root), "destination": str(target), "backend": "filesystem"}
        write_event(store.root, run_id, EVENT_TYPE, {**base, "status": "pending_copy", **counts}, actor=actor)
        try:
            _clear_partials(target)
            for relative, size in plan[run_id]:
                action, copied = sync_file(source / relative, target / relative)
                if action == "copied":
                    counts["files_copied"] += 1
                    counts["bytes_copied"] += copied
                elif action == "skipped":
                    counts["files_skipped"] += 1
                done["files_done"] += 1
                done["bytes_done"] += size
                if progress:
                    progress({"run_id": run_id, "path": relative.as_posix(), "action": action, **done, **totals})
            write_event(store.root, run_id, EVENT_TYPE, {**base, "status": "completed", **counts}, actor=actor)
            _copy_event_log(store, run_id, target)
        except BaseException as exc:
            write_event(store.root, run_id, EVENT_TYPE,
                        {**base, "status": "failed", **counts, "error": f"{type(exc).__name__}: {exc}"}, actor=actor)
            with contextlib.suppress(Exception):
                _copy_event_log(store, run_id, target)
            raise
        report["runs"].append({"run_id": run_id, "status": "completed", "destination": str(target), **counts})
        for key in counts:
            report[key] += counts[key]
    report["status"] = "completed"
    return report


def _copy_event_log(store: ArtifactStore, run_id: str, target: Path) -> None:
    log = events_path(store.root, run_id)
    sync_file(log, target / log.relative_to(store.run_dir(run_id)))


# --- ephemeral roots ---------------------------------------------------------------

def ephemeral_prefixes() -> tuple[list[Path], list[Path]]:
    """(ephemeral prefixes, persistent exceptions) from ``SPARKLE_EPHEMERAL_PREFIXES``: a comma-separated
    list where an entry starting with ``!`` is an exception. Default: ``/content,!/content/drive,<tempdir>``."""
    raw = os.environ.get(PREFIXES_ENV)
    entries = raw.split(",") if raw is not None else ["/content", "!/content/drive", tempfile.gettempdir()]
    ephemeral, persistent = [], []
    for entry in (e.strip() for e in entries):
        if not entry or entry == "!":
            continue
        if entry.startswith("!"):
            persistent.append(Path(entry[1:]).expanduser().resolve())
        else:
            ephemeral.append(Path(entry).expanduser().resolve())
    return ephemeral, persistent


def _under(path: Path, prefix: Path) -> bool:
    return path == prefix or prefix in path.parents


def ephemeral_root_warning(root: str | Path) -> str | None:
    """A warning when the artifact root lives on an ephemeral path, else None."""
    resolved = Path(root).expanduser().resolve()
    ephemeral, persistent = ephemeral_prefixes()
    if any(_under(resolved, keep) for keep in persistent):
        return None
    prefix = next((p for p in ephemeral if _under(resolved, p)), None)
    if prefix is None:
        return None
    return (f"WARNING: the artifact root {resolved} is on an ephemeral path ({prefix}): its files vanish with "
            "this machine. Copy them off before shutting down, e.g. `sparkle-motion evacuate --all --to "
            "/content/drive/MyDrive/sparkle_motion/artifacts_fs`, or point ARTIFACTS_FS_ROOT at persistent "
            f"storage (set {PREFIXES_ENV} to change which paths count as ephemeral).")
