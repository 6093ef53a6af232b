"""The plan drop folder: what a file in it is, when it is ready, and where it goes.

A file is read only once it is stable (same size and modification time on two
looks, one sensor tick apart). Every dropped file is kept, byte for byte:

- ``accepted/<run_id>.json``: a valid plan or request that became a film run;
- ``rejected/<name>`` with ``<name>.error.json`` beside it listing every problem;
- ``duplicates/<name>`` with ``<name>.duplicate.json`` naming the run that
  already films the same content.

Hidden files and names ending in ``.tmp``, ``.part``, ``.partial`` or ``~`` are
files still being written by an editor or a copy tool and are left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.runs.locations import state_dir
from sparkle_motion_dagster.runs.storage import atomic_write_json

IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", "~", ".crdownload")
OUTCOME_DIRS = ("accepted", "rejected", "duplicates")


def inbox_dir() -> Path:
    configured = os.environ.get("SPARKLE_PLAN_INBOX")
    return Path(configured).expanduser().resolve() if configured else state_dir() / "inbox"


@dataclass(frozen=True)
class Drop:
    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def observation(self) -> list[int]:
        return [self.size, self.mtime_ns]


def scan(inbox: Path) -> list[Drop]:
    """Files waiting in the inbox, oldest first."""
    inbox.mkdir(parents=True, exist_ok=True)
    drops = []
    for entry in inbox.iterdir():
        if not entry.is_file() or entry.name.startswith(".") or entry.name.endswith(IN_PROGRESS_SUFFIXES):
            continue
        stat = entry.stat()
        drops.append(Drop(entry, stat.st_size, stat.st_mtime_ns))
    return sorted(drops, key=lambda d: (d.mtime_ns, d.name))


def split_stable(drops: list[Drop], previous: dict[str, list[int]]) -> tuple[list[Drop], list[Drop]]:
    """(ready, still changing): a drop is ready when it looks as it did last time."""
    ready = [d for d in drops if previous.get(d.name) == d.observation]
    waiting = [d for d in drops if previous.get(d.name) != d.observation]
    return ready, waiting


def content_run_id(data: bytes) -> tuple[str, str]:
    """The film run id for a drop's bytes, and the full digest: same content, same run."""
    digest = hashlib.sha256(data).hexdigest()
    return f"run_{digest[:8]}", digest


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
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError("seed: must be an integer")
        return Classified("request", None, preview, data["title"], data["prompt"], seed)
    raise ValueError("not a MoviePlan (no 'shots'), a plan artifact (no 'validated_plan') "
                     "or a planner request (no 'title' and 'prompt')")


def _free_name(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    stem, suffix, n = target.stem, target.suffix, 1
    while target.exists():
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


def accept(inbox: Path, drop: Drop, run_id: str) -> Path:
    target = _free_name(inbox / "accepted", f"{run_id}.json")
    os.replace(drop.path, target)
    return target


def reject(inbox: Path, drop: Drop, problems: list[str]) -> Path:
    target = _free_name(inbox / "rejected", drop.name)
    os.replace(drop.path, target)
    atomic_write_json(target.with_name(target.name + ".error.json"), {
        "file": drop.name, "rejected_at": datetime.now(timezone.utc).isoformat(), "errors": problems,
    })
    return target


def mark_duplicate(inbox: Path, drop: Drop, run_id: str) -> Path:
    target = _free_name(inbox / "duplicates", drop.name)
    os.replace(drop.path, target)
    atomic_write_json(target.with_name(target.name + ".duplicate.json"), {
        "file": drop.name, "run_id": run_id, "noted_at": datetime.now(timezone.utc).isoformat(),
        "reason": f"the same content was already accepted as {run_id}",
    })
    return target


def load_drop(drop: Drop) -> tuple[bytes, Any]:
    data = drop.path.read_bytes()
    try:
        return data, json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
