"""The plan drop folder: what a file in it is, when it is ready, and where it goes.

A file is read only once it is stable (same size and modification time on two
looks, one sensor tick apart). Every dropped file is kept, byte for byte:

- ``accepted/<run_id>.json``: a valid plan or request that became a film run;
- ``rejected/<name>`` with ``<name>.error.json`` beside it listing every problem;
- ``duplicates/<name>`` with ``<name>.duplicate.json`` naming the run that
  already films the same content (the same sha256, not only the same run id).

Hidden files and names ending in ``.tmp``, ``.part``, ``.partial`` or ``~`` are
files still being written by an editor or a copy tool and are left alone, and so
are folders.

Only regular files are read, opened without following a link (``O_NOFOLLOW``,
then ``fstat``). A symbolic link, a pipe or a device is moved to ``rejected/``
as it is (a link stays a link) and its target is never read; ``accepted/`` only
ever holds the regular file that was read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.film.intake import PREVIEW_FIX_CLI
from sparkle_motion_dagster.film.plan import (
    MAX_PLAN_BYTES,
    PlanInputError,
    decode_json,
    plan_too_big,
    seed_problem,
)
from sparkle_motion_dagster.store.locations import state_dir
from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_bytes, atomic_write_json, new_run_id

IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", "~", ".crdownload")
OUTCOME_DIRS = ("accepted", "rejected", "duplicates")
# A drop's run id is this many hex digits of its sha256: 64 bits, so that two different
# plans share one only by a deliberate search of about 2**32 tries (8 digits took 64k).
RUN_ID_HEX_DIGITS = 16
# The plan size limit: anything bigger is not a plan, and is not read into the sensor's memory.
MAX_DROP_BYTES = MAX_PLAN_BYTES
# Names kept in the outcome folders stay short enough for ``<name>.error.json`` beside them.
MAX_KEPT_NAME_BYTES = 200
NOT_FOLLOWED = "is a symbolic link; the inbox reads only regular files and never follows links (drop the file itself)"


def inbox_dir() -> Path:
    configured = os.environ.get("SPARKLE_PLAN_INBOX")
    return Path(configured).expanduser().resolve() if configured else state_dir() / "inbox"


@dataclass(frozen=True)
class Drop:
    """One entry of the inbox as it was seen (``lstat``: a link is seen as a link)."""

    path: Path
    size: int
    mtime_ns: int
    kind: str = "file"  # "file", "link" or "special" (a pipe, socket or device)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def observation(self) -> list[int]:
        return [self.size, self.mtime_ns]


class DropChanged(Exception):
    """The file changed between the look that found it stable and the read: try it again later."""


def _kind(mode: int) -> str | None:
    """What an inbox entry is, by its ``lstat`` mode; None for a folder."""
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "link"
    return "file" if stat.S_ISREG(mode) else "special"


def scan(inbox: Path) -> list[Drop]:
    """Entries waiting in the inbox, oldest first: regular files, and the links and special
    files that are to be rejected. Folders and files still being written are left alone."""
    inbox.mkdir(parents=True, exist_ok=True)
    drops = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith(IN_PROGRESS_SUFFIXES):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:  # gone since the listing
                continue
            kind = _kind(info.st_mode)
            if kind is not None:
                drops.append(Drop(Path(entry.path), info.st_size, info.st_mtime_ns, kind))
    return sorted(drops, key=lambda d: (d.mtime_ns, d.name))


def split_stable(drops: list[Drop], previous: dict[str, list[int]]) -> tuple[list[Drop], list[Drop]]:
    """(ready, still changing): a drop is ready when it looks as it did last time."""
    ready = [d for d in drops if previous.get(d.name) == d.observation]
    waiting = [d for d in drops if previous.get(d.name) != d.observation]
    return ready, waiting


def content_run_id(data: bytes) -> tuple[str, str]:
    """The film run id for a drop's bytes, and the full digest: same content, same run."""
    digest = hashlib.sha256(data).hexdigest()
    return f"run_{digest[:RUN_ID_HEX_DIGITS]}", digest


def filmed_digest(store: ArtifactStore, run_id: str) -> str | None:
    """The sha256 of the drop a run was submitted from, or None (no such run, or not from a drop)."""
    try:
        recorded = store.read_request(run_id).get("content_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) else None


def run_id_for_content(store: ArtifactStore, digest: str) -> tuple[str, bool]:
    """(the run id a drop with this sha256 is filmed as, whether it is already filmed).

    A run id holds only the digest's first 64 bits: should a run with a different
    content already have it, the drop is filmed as its 128-bit id (then a random one),
    never taken for a duplicate of a film it is not."""
    for run_id in (f"run_{digest[:RUN_ID_HEX_DIGITS]}", f"run_{digest[:2 * RUN_ID_HEX_DIGITS]}"):
        if not store.request_path(run_id).exists():
            return run_id, False
        if filmed_digest(store, run_id) == digest:
            return run_id, True
    return new_run_id(), False


@dataclass(frozen=True)
class Classified:
    kind: str  # "plan" or "request"
    document: dict[str, Any] | None
    preview: bool
    title: str = ""
    prompt: str = ""
    seed: int = 0


def classify(data: Any) -> Classified:
    """A MoviePlan, a plan artifact envelope, or a ``{"title", "prompt"}`` planner request.

    A top-level ``"preview": true`` asks for the animatic when the declared video
    model is not configured (as ``--preview`` does on the command line).
    """
    if not isinstance(data, dict):
        raise ValueError(f"a dropped file must hold a JSON object, got {type(data).__name__}")
    data = dict(data)
    preview = data.pop("preview", False)
    if not isinstance(preview, bool):
        raise ValueError("preview: must be true or false")
    if "validated_plan" in data or "shots" in data:
        return Classified("plan", data, preview)
    if "prompt" in data or "title" in data:
        missing = [k for k in ("title", "prompt") if not isinstance(data.get(k), str) or not data[k].strip()]
        if missing:
            raise ValueError(f"a planner request needs non-empty strings for: {', '.join(missing)}")
        extra = sorted(set(data) - {"title", "prompt", "seed"})
        if extra:
            raise ValueError(f"a planner request takes title, prompt, seed and preview; unknown: {', '.join(extra)}")
        seed = data.get("seed", 0)
        problem = seed_problem(seed) if not isinstance(seed, str) else "must be an integer"
        if problem:
            raise ValueError(f"seed: {problem}")
        return Classified("request", None, preview, data["title"], data["prompt"], seed)
    raise ValueError("not a MoviePlan (no 'shots'), a plan artifact (no 'validated_plan') "
                     "or a planner request (no 'title' and 'prompt')")


def kept_name(name: str) -> str:
    """``name`` as it is kept in an outcome folder: the same, unless it is too long to
    have ``.error.json`` added, when it is shortened and made unique with a hash."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= MAX_KEPT_NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
    head = encoded[:MAX_KEPT_NAME_BYTES - 40].decode("utf-8", "ignore")
    return f"{head}-{digest}{suffix}"


def _free_name(folder: Path, name: str) -> Path:
    """A name in ``folder`` that nothing has, a link included (``name``, then ``stem.1.suffix``...)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / kept_name(name)
    stem, suffix, n = target.stem, target.suffix, 1
    while os.path.lexists(target):
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


def _file_id(info: os.stat_result) -> tuple[int, int]:
    """Which file a stat describes, whatever its name: (device, inode)."""
    return info.st_dev, info.st_ino


def _set_aside(inbox: Path, path: Path, name: str, problems: list[str]) -> Path:
    """Move whatever is at ``path`` (a link is moved as a link) to ``rejected/`` with the reasons beside it."""
    target = _free_name(inbox / "rejected", name)
    os.replace(path, target)
    atomic_write_json(target.with_name(target.name + ".error.json"), {
        "file": name, "rejected_at": datetime.now(timezone.utc).isoformat(), "errors": problems,
    })
    return target


def accept(inbox: Path, drop: Drop, run_id: str, loaded: LoadedDrop) -> Path:
    """Move the drop to ``accepted/<run_id>.json``. Should the name have been pointed at
    something else since it was read (a link, another file), that goes to ``rejected/``
    and the bytes that were read are written in its place: accepted/ keeps what became the run."""
    target = _free_name(inbox / "accepted", f"{run_id}.json")
    os.replace(drop.path, target)
    moved = os.lstat(target)
    if stat.S_ISREG(moved.st_mode) and _file_id(moved) == loaded.file_id:
        return target
    reason = (f"replaced while it was being accepted; the content read before was filmed as {run_id} "
              "and kept in accepted/")
    _set_aside(inbox, target, drop.name, [reason])
    atomic_write_bytes(target, loaded.raw)
    return target


# In the drop folder the fix is in the file, not a command-line flag.
PREVIEW_FIX_INBOX = 'add "preview": true to the dropped file'


def in_inbox_words(problem: str) -> str:
    """A problem as the drop folder's user acts on it: a fix said as a command-line flag is said as
    the field of the dropped file that does the same."""
    return problem.replace(PREVIEW_FIX_CLI, PREVIEW_FIX_INBOX)


def reject(inbox: Path, drop: Drop, problems: list[str]) -> Path:
    """Move the drop to ``rejected/`` with its problems, in the drop folder's words, beside it."""
    return _set_aside(inbox, drop.path, drop.name, [in_inbox_words(p) for p in problems])


def mark_duplicate(inbox: Path, drop: Drop, run_id: str) -> Path:
    target = _free_name(inbox / "duplicates", drop.name)
    os.replace(drop.path, target)
    atomic_write_json(target.with_name(target.name + ".duplicate.json"), {
        "file": drop.name, "run_id": run_id, "noted_at": datetime.now(timezone.utc).isoformat(),
        "reason": f"the same content was already accepted as {run_id}",
    })
    return target


@dataclass(frozen=True)
class LoadedDrop:
    """A drop's bytes, what they hold as JSON, and which file they were read from."""

    raw: bytes
    data: Any
    file_id: tuple[int, int]


def _open_no_follow(path: Path) -> int:
    """A read-only descriptor for ``path`` itself: a link is refused (ELOOP), a pipe does not block."""
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def read_regular_file(path: Path, *, name: str) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at ``path`` (never a link's target) and its ``fstat``, or
    PlanInputError naming the file and why it cannot be read."""
    try:
        descriptor = _open_no_follow(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PlanInputError(f"{name} {NOT_FOLLOWED}") from None
        raise PlanInputError(f"{name} cannot be opened: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PlanInputError(f"{name} is not a regular file")
        if info.st_size > MAX_DROP_BYTES:
            raise PlanInputError(plan_too_big(name, info.st_size))
        try:
            raw = handle.read(MAX_DROP_BYTES + 1)
        except OSError as exc:
            raise PlanInputError(f"{name} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_DROP_BYTES:
        raise PlanInputError(f"{name} is larger than {MAX_DROP_BYTES} bytes; a plan is smaller")
    return raw, info


def load_drop(drop: Drop) -> LoadedDrop:
    """Read a stable drop: PlanInputError (naming the file) for anything that is not a
    readable regular file of JSON, DropChanged when it changed since it was last seen."""
    if drop.kind == "link":
        raise PlanInputError(f"{drop.name} {NOT_FOLLOWED}")
    if drop.kind != "file":
        raise PlanInputError(f"{drop.name} is not a regular file (a pipe, socket or device)")
    raw, info = read_regular_file(drop.path, name=drop.name)
    if [info.st_size, info.st_mtime_ns] != drop.observation:
        raise DropChanged(f"{drop.name} changed while it was being read")
    return LoadedDrop(raw, decode_json(raw, source=drop.name), _file_id(info))
