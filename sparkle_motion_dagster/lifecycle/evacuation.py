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

Symbolic links are never followed. A link that leads to a file or folder inside
the same run is copied as a link (relative, so it works at the destination); a
link that leads outside the run, to nothing, to something not evacuated, or
round a loop is left out, with the reason in the run's ``left_out`` list. Only
links inside the run are read to find out, and files are read through
descriptors opened without following links, so nothing outside the run is read.

A run that is being filmed (running, paused or queued) is refused, naming the
stages it is still missing, unless ``allow_incomplete`` is given; then it is copied
as it is and recorded as ``incomplete``, never ``completed``. A run that is not
being filmed but lacks stages (it failed or was stopped) is copied and recorded as
``incomplete`` too. Every run's event log gets ``filesystem_artifacts.evacuate``
events: status ``pending_copy`` before the copy, then ``completed``,
``incomplete`` (with ``missing_stages``) or ``failed``; the log is copied again
after the last event so the destination has the whole history.

:func:`ephemeral_root_warning` says when the artifact root lives somewhere that
vanishes with the machine (Colab's ``/content`` outside Drive, the temp folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.store.confined import NotConfinedError, open_beneath
from sparkle_motion_dagster.lifecycle.events import events_path, write_event
from sparkle_motion_dagster.store.storage import (
    COPY_CHUNK_BYTES,
    TEMP_MARKER,
    ArtifactStore,
    CopyMismatchError,
    UnknownRunError,
    atomic_output,
    check_run_id,
    sha256_file,
)

EVENT_TYPE = "filesystem_artifacts.evacuate"
PARTIAL = TEMP_MARKER + "evac-"  # contains TEMP_MARKER, so catalog scans and the file service ignore it
SKIP_DIRS = {".catalog"}
PREFIXES_ENV = "SPARKLE_EPHEMERAL_PREFIXES"
MAX_LINK_HOPS = 40  # as the kernel does: more links than this in one lookup is a loop

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class _Entry:
    """One thing to evacuate: a regular file, a link to recreate, or something left out (``note``)."""

    relative: Path
    size: int = 0
    link: str | None = None
    note: str | None = None


class RunActiveError(ValueError):
    """A run that is being filmed: its copy would lack what it is still making."""


def missing_stages(store: ArtifactStore, run_id: str) -> list[str]:
    """The stages (asset keys) whose main file the run does not have yet, in film order."""
    return [row.key for row in stages.STAGES if not store.path(run_id, row.folder, row.done_marker).exists()]


def filming_state(store: ArtifactStore, run_id: str) -> str | None:
    """``running`` while a process is filming the run, ``paused`` while it holds to be continued;
    None when nothing is filming it (read from the run's own files)."""
    if control.is_running(store, run_id):
        return "paused" if control.read_state(store, run_id)["state"] == "paused" else "running"
    return "paused" if control.read_state(store, run_id)["state"] == "paused" else None


class _LeftOut(Exception):
    """A link (or other entry) that evacuation does not copy; the message says why."""


def _run_entries(run_dir: Path) -> list[_Entry]:
    """Every entry of the run folder to evacuate, in a stable order; links are not followed."""
    found = []
    for dirpath, dirs, files in os.walk(run_dir):
        folder = Path(dirpath)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        linked_dirs = [d for d in dirs if (folder / d).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d not in linked_dirs)
        for name in sorted(files + linked_dirs):
            if TEMP_MARKER in name:
                continue
            try:
                found.append(_entry(run_dir, (folder / name).relative_to(run_dir)))
            except FileNotFoundError:
                continue
    return found


def _entry(run_dir: Path, relative: Path) -> _Entry:
    """What to do with one name found in the run folder."""
    info = os.lstat(run_dir / relative)
    if stat.S_ISREG(info.st_mode):
        return _Entry(relative, info.st_size)
    if not stat.S_ISLNK(info.st_mode):
        return _Entry(relative, note="not a regular file or a symbolic link")
    try:
        target = _resolve_in_run(run_dir, relative)
    except _LeftOut as reason:
        return _Entry(relative, note=f"symbolic link left out: {reason}")
    if (target and target[0] in SKIP_DIRS) or any(TEMP_MARKER in part for part in target):
        return _Entry(relative, note="symbolic link left out: its target is not evacuated")
    text = os.path.relpath(run_dir.joinpath(*target), run_dir.joinpath(*relative.parts[:-1]))
    return _Entry(relative, link=text)


def _resolve_in_run(run_dir: Path, relative: Path) -> tuple[str, ...]:
    """Where the link at ``run_dir/relative`` leads, as components under ``run_dir``, following
    links one at a time and reading only those inside the run. Raises :class:`_LeftOut` for a
    target outside the run, a missing target, or a loop."""
    resolved, pending, hops = list(relative.parts[:-1]), [relative.name], 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise _LeftOut("it points outside the run")
            resolved.pop()
            continue
        path = run_dir.joinpath(*resolved, part)
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise _LeftOut("its target does not exist") from None
        except OSError as exc:
            raise _LeftOut(f"its target cannot be looked at ({exc.strerror})") from None
        if not stat.S_ISLNK(info.st_mode):
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise _LeftOut("it is part of a symbolic link loop")
        text = os.readlink(path)  # a link inside the run: reading its text reads nothing outside
        if os.path.isabs(text):
            resolved = []
            text = _inside_run(run_dir, text)
        pending = list(PurePosixPath(text).parts) + pending
    return tuple(resolved)


def _inside_run(run_dir: Path, absolute: str) -> str:
    """An absolute link text as a path relative to the run folder (compared as text, never resolved)."""
    try:
        return PurePosixPath(absolute).relative_to(PurePosixPath(run_dir)).as_posix()
    except ValueError:
        raise _LeftOut("it points outside the run") from None


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


def sync_file(run_dir: Path, relative: Path, destination: Path) -> tuple[str, int]:
    """Make ``destination`` a verified copy of the regular file ``run_dir/relative``, read through a
    descriptor opened without following links. Returns (``copied``|``skipped``|``vanished``, bytes
    copied); raises :class:`NotConfinedError` when the file became a link (or something else)."""
    try:
        descriptor = open_beneath(run_dir, relative.parts)
    except FileNotFoundError:
        return "vanished", 0
    with os.fdopen(descriptor, "rb") as source:
        if _same_copy(source, destination):
            return "skipped", 0
        return "copied", _copy_verified(source, destination)


def _hash_stream(stream) -> str:
    """The sha256 of what is left to read in ``stream``."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(COPY_CHUNK_BYTES), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _same_copy(source, destination: Path) -> bool:
    """Whether ``destination`` is already a regular file with the source's size and sha256."""
    try:
        info = os.lstat(destination)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size != os.fstat(source.fileno()).st_size:
        return False
    source.seek(0)
    same = sha256_file(destination) == _hash_stream(source)
    source.seek(0)
    return same


def _copy_verified(source, destination: Path) -> int:
    """Copy the open ``source`` to ``destination`` through a temporary name, read the copy back
    against the bytes read, keep the mode and times, rename it into place; returns the bytes copied."""
    info = os.fstat(source.fileno())
    source.seek(0)
    with atomic_output(destination, marker=PARTIAL) as temp:
        digest, copied = hashlib.sha256(), 0
        with open(temp, "wb") as copy:
            for chunk in iter(lambda: source.read(COPY_CHUNK_BYTES), b""):
                digest.update(chunk)
                copy.write(chunk)
                copied += len(chunk)
        if sha256_file(temp) != digest.hexdigest():
            raise CopyMismatchError(f"the copy at {temp} does not match the sha256 of the bytes read for {destination}")
        os.chmod(temp, stat.S_IMODE(info.st_mode))
        os.utime(temp, ns=(info.st_atime_ns, info.st_mtime_ns))
    return copied


def sync_link(destination: Path, text: str) -> str:
    """Make ``destination`` a symbolic link reading ``text`` (through a temporary name, renamed into
    place). Returns ``linked`` or ``skipped`` (already that link); a real folder there is left alone."""
    if destination.is_symlink() and os.readlink(destination) == text:
        return "skipped"
    if destination.is_dir() and not destination.is_symlink():
        raise _LeftOut("the destination has a folder under that name")
    destination.parent.mkdir(parents=True, exist_ok=True)
    temp = destination.with_name(f"{destination.name}{PARTIAL}{os.getpid()}-{secrets.token_hex(3)}")
    os.symlink(text, temp)
    try:
        os.replace(temp, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return "linked"


def _clear_partials(folder: Path) -> None:
    """Remove temporary copies an interrupted evacuation left in the destination."""
    if folder.is_dir():
        for leftover in folder.rglob(f"*{PARTIAL}*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def evacuate(store: ArtifactStore, run_ids: Iterable[str], dest: str | Path, progress: Progress | None = None,
             *, actor: str = "cli", allow_incomplete: bool = False,
             active: dict[str, str] | None = None) -> dict[str, Any]:
    """Copy each run to ``dest/runs/<run_id>/``; returns a report with per-run counts and, per run,
    ``left_out``: ``{"path", "reason"}`` of each link (or other entry) not copied, ``status``
    (``completed`` or ``incomplete``) and ``missing_stages``.

    ``active``: the runs being filmed, with their status (queued, running, paused), as the caller
    knows them (a Dagster instance knows queued runs); runs that their own files show being
    filmed count too. Any such run is refused with :class:`RunActiveError` before anything is
    copied, unless ``allow_incomplete``.

    ``progress`` is called after every entry with ``run_id``, ``path`` (relative to the run),
    ``action`` (copied, skipped, vanished, linked or left_out), ``files_done``, ``files_total``,
    ``bytes_done`` and ``bytes_total``. An exception (from the copy or from ``progress``) is logged
    as a ``failed`` event for that run and re-raised; calling again picks up where it stopped.
    """
    target_root = _check_destination(store, dest)
    ids = list(dict.fromkeys(check_run_id(run_id) for run_id in run_ids))
    if not ids:
        raise ValueError("run_ids: no runs to evacuate (give run ids or --all)")
    for run_id in ids:
        if not store.run_dir(run_id).is_dir():
            raise UnknownRunError(f"run_id: unknown run {run_id!r}: no files under {store.root}")
    filming = {run_id: (active or {}).get(run_id) or filming_state(store, run_id) for run_id in ids}
    missing = {run_id: missing_stages(store, run_id) for run_id in ids}
    refused = [run_id for run_id in ids if filming[run_id]]
    if refused and not allow_incomplete:
        raise RunActiveError("refused: " + "; ".join(
            f"{run_id} is {filming[run_id]} (stages missing: {', '.join(missing[run_id]) or 'none, but it may change'})"
            for run_id in refused) + "; evacuate once filming has ended, or pass --allow-incomplete to copy it as it "
                                     "is (recorded as incomplete)")
    plan = {run_id: _run_entries(store.run_dir(run_id)) for run_id in ids}
    totals = {"files_total": sum(len(f) for f in plan.values()),
              "bytes_total": sum(entry.size for f in plan.values() for entry in f)}
    done = {"files_done": 0, "bytes_done": 0}
    report: dict[str, Any] = {"artifacts_fs_root": str(store.root), "destination": str(target_root),
                              "runs": [], "files_copied": 0, "files_skipped": 0, "bytes_copied": 0,
                              "links_copied": 0, "left_out": 0}
    for run_id in ids:
        source, target = store.run_dir(run_id), target_root / "runs" / run_id
        counts: dict[str, Any] = {"files_copied": 0, "files_skipped": 0, "bytes_copied": 0, "links_copied": 0,
                                  "left_out": []}
        base = {"artifacts_fs_root": str(store.root), "destination": str(target), "backend": "filesystem",
                "missing_stages": missing[run_id], "filming": filming[run_id]}
        outcome = "incomplete" if missing[run_id] or filming[run_id] else "completed"
        write_event(store.root, run_id, EVENT_TYPE, {**base, "status": "pending_copy", **counts}, actor=actor)
        try:
            _clear_partials(target)
            for entry in plan[run_id]:
                action = _evacuate_entry(source, target, entry, counts)
                done["files_done"] += 1
                done["bytes_done"] += entry.size
                if progress:
                    progress({"run_id": run_id, "path": entry.relative.as_posix(), "action": action,
                              **done, **totals})
            write_event(store.root, run_id, EVENT_TYPE, {**base, "status": outcome, **counts}, actor=actor)
            _copy_event_log(store, run_id, target)
        except BaseException as exc:
            write_event(store.root, run_id, EVENT_TYPE,
                        {**base, "status": "failed", **counts, "error": f"{type(exc).__name__}: {exc}"}, actor=actor)
            with contextlib.suppress(Exception):
                _copy_event_log(store, run_id, target)
            raise
        report["runs"].append({"run_id": run_id, "status": outcome, "destination": str(target),
                               "missing_stages": missing[run_id], "filming": filming[run_id], **counts})
        for key in ("files_copied", "files_skipped", "bytes_copied", "links_copied"):
            report[key] += counts[key]
        report["left_out"] += len(counts["left_out"])
    report["status"] = "completed" if all(r["status"] == "completed" for r in report["runs"]) else "incomplete"
    return report


def _evacuate_entry(source: Path, target: Path, entry: _Entry, counts: dict[str, Any]) -> str:
    """Copy one entry of the run (a file, or a link as a link), count it, and return the action."""
    try:
        if entry.note is not None:
            raise _LeftOut(entry.note)
        if entry.link is not None:
            action = sync_link(target / entry.relative, entry.link)
            counts["links_copied"] += action == "linked"
            counts["files_skipped"] += action == "skipped"
            return action
        action, copied = sync_file(source, entry.relative, target / entry.relative)
    except (_LeftOut, NotConfinedError) as reason:
        counts["left_out"].append({"path": entry.relative.as_posix(), "reason": str(reason)})
        return "left_out"
    if action == "copied":
        counts["files_copied"] += 1
        counts["bytes_copied"] += copied
    elif action == "skipped":
        counts["files_skipped"] += 1
    return action


def _copy_event_log(store: ArtifactStore, run_id: str, target: Path) -> None:
    relative = events_path(store.root, run_id).relative_to(store.run_dir(run_id))
    sync_file(store.run_dir(run_id), relative, target / relative)


# --- ephemeral roots ---------------------------------------------------------------

COLAB_DEFAULT_PREFIXES = ["/content", "!/content/drive"]
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs"}


def running_on_colab() -> bool:
    """Whether this process runs on a Colab VM (the notebook's kernel, or a command run from it)."""
    import sys

    return "google.colab" in sys.modules or bool(os.environ.get("COLAB_RELEASE_TAG"))


def ephemeral_prefixes() -> tuple[list[Path], list[Path]]:
    """(ephemeral prefixes, persistent exceptions) from ``SPARKLE_EPHEMERAL_PREFIXES``: a comma-separated
    list where an entry starting with ``!`` is an exception. Default on Colab:
    ``/content,!/content/drive,<tempdir>``; elsewhere none (a memory-backed folder still counts, see
    :func:`ephemeral_root_warning`)."""
    raw = os.environ.get(PREFIXES_ENV)
    if raw is not None:
        entries = raw.split(",")
    else:
        entries = [*COLAB_DEFAULT_PREFIXES, tempfile.gettempdir()] if running_on_colab() else []
    ephemeral, persistent = [], []
    for entry in (e.strip() for e in entries):
        if not entry or entry == "!":
            continue
        if entry.startswith("!"):
            persistent.append(Path(entry[1:]).expanduser().resolve())
        else:
            ephemeral.append(Path(entry).expanduser().resolve())
    return ephemeral, persistent


def memory_mount(path: Path, mounts: str = "/proc/self/mounts") -> Path | None:
    """The mount point holding ``path`` when it is a memory-backed file system (tmpfs, ramfs: its
    files vanish at reboot), else None; None where the mount table cannot be read."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    best: tuple[Path, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if _under(path, point) and (best is None or len(point.parts) > len(best[0].parts)):
            best = (point, fields[2])
    return best[0] if best and best[1] in MEMORY_FILESYSTEMS else None


def _under(path: Path, prefix: Path) -> bool:
    return path == prefix or prefix in path.parents


def ephemeral_root_warning(root: str | Path) -> str | None:
    """A warning when the artifact root lives on an ephemeral path (``SPARKLE_EPHEMERAL_PREFIXES``,
    whose default counts Colab's ``/content`` outside Drive and the temp folder only on Colab) or,
    with the default, on a memory-backed file system; else None."""
    resolved = Path(root).expanduser().resolve()
    ephemeral, persistent = ephemeral_prefixes()
    if any(_under(resolved, keep) for keep in persistent):
        return None
    prefix = next((p for p in ephemeral if _under(resolved, p)), None)
    if prefix is None and os.environ.get(PREFIXES_ENV) is None:
        prefix = memory_mount(resolved)
    if prefix is None:
        return None
    destination = ("/content/drive/MyDrive/sparkle_motion/artifacts_fs" if running_on_colab()
                   else "<a persistent folder>")
    return (f"WARNING: the artifact root {resolved} is on an ephemeral path ({prefix}): its files vanish with "
            f"this machine. Copy them off before shutting down, e.g. `sparkle-motion evacuate --all --to "
            f"{destination}`, or point ARTIFACTS_FS_ROOT at persistent "
            f"storage (set {PREFIXES_ENV} to change which paths count as ephemeral).")
