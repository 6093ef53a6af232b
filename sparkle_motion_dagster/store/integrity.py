"""Whether a finished file is still the one that was made: its size and sha256 against its record.

Every rendered item (a keyframe, a clip, a speech line) and every assembled output (the master,
the final cut) gets a file record, ``{"size", "sha256"}``, in its sidecar in ``.meta/`` when it is
written. Reusing it, or calling a run complete, compares the file with that record: a file that is
missing, cut short, overwritten or swapped for another is not the one that was made, and is made
again.

Hashing every file on every check would cost a read of the whole film, so each file's digest is
cached beside its sidecar (``.meta/.digests/<name>.json``, written atomically) under the file's
size, mtime, ctime and inode: an unchanged file is not read again; any write, copy or rename over
it changes one of them, and the file is hashed again. Dagster-free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.store.storage import TEMP_MARKER, ArtifactStore, atomic_write_json, sha256_file

FILE_KEY = "file"
"""The sidecar key of the file record."""
DIGESTS = ".digests"


def sidecar_path(output: Path) -> Path:
    return output.parent / ".meta" / f"{output.name}.json"


def _digest_cache_path(path: Path) -> Path:
    return path.parent / ".meta" / DIGESTS / f"{path.name}.json"


def _stat_key(stat: os.stat_result) -> dict[str, int]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino}


def file_record(path: Path) -> dict[str, Any]:
    """``{"size", "sha256"}`` of ``path``, read from the digest cache when the file is unchanged
    since it was last hashed (same size, mtime, ctime and inode), else hashed and cached."""
    path = Path(path)
    before = _stat_key(path.stat())
    cache = _digest_cache_path(path)
    try:
        cached = json.loads(cache.read_text())
        if isinstance(cached, dict) and cached.get("stat") == before and isinstance(cached.get("sha256"), str):
            return {"size": before["size"], "sha256": cached["sha256"]}
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    after = _stat_key(path.stat())
    if after == before:  # a file changing while it was read is not cached
        try:
            atomic_write_json(cache, {"stat": before, "sha256": digest})
        except OSError:
            pass  # a read-only copy: the digest is still right, only not kept
    return {"size": before["size"], "sha256": digest}


def remembered(path: Path, fact: str) -> Any:
    """What was learnt about ``path``'s content (e.g. that it decodes cleanly) and kept with its cached
    digest, or None: a fact holds for the bytes it was learnt from, so any change to the file drops it."""
    try:
        cached = json.loads(_digest_cache_path(path).read_text())
        if isinstance(cached, dict) and cached.get("stat") == _stat_key(Path(path).stat()):
            return (cached.get("facts") or {}).get(fact)
    except (OSError, ValueError):
        pass
    return None


def remember(path: Path, fact: str, value: Any) -> None:
    """Keep ``fact`` about ``path``'s content beside its digest (see :func:`remembered`)."""
    path = Path(path)
    file_record(path)  # the digest cache entry the fact joins
    cache = _digest_cache_path(path)
    try:
        cached = json.loads(cache.read_text())
        if not isinstance(cached, dict) or cached.get("stat") != _stat_key(path.stat()):
            return  # changed since it was hashed: the fact may not be about these bytes
        atomic_write_json(cache, {**cached, "facts": {**(cached.get("facts") or {}), fact: value}})
    except (OSError, ValueError):
        pass


def problem(path: Path, recorded: Any) -> str | None:
    """Why ``path`` is not the file its record describes, or None when it is."""
    if not isinstance(recorded, dict) or not {"size", "sha256"} <= set(recorded):
        return "no record of the file (size and sha256)"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != recorded["size"]:
        return f"size {size} bytes differs from record ({recorded['size']} bytes)"
    if file_record(path)["sha256"] != recorded["sha256"]:
        return "sha256 differs from record"
    return None


def read_sidecar(output: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_output(output: Path, **details: Any) -> dict[str, Any]:
    """Write the sidecar of an output that is not a reusable item (the master, the final cut): its
    file record, so that completeness and approval can tell it from a damaged or swapped file."""
    payload = {**details, FILE_KEY: file_record(output)}
    atomic_write_json(sidecar_path(output), payload)
    return payload


def output_problem(output: Path) -> str | None:
    """Why ``output`` is not the file its sidecar recorded; None when it is, or when it has no
    record (a file written before records were kept: nothing to compare)."""
    record = read_sidecar(output)
    return problem(output, record[FILE_KEY]) if record is not None and FILE_KEY in record else None


def damaged_files(store: ArtifactStore, run_id: str) -> dict[str, dict[str, str]]:
    """Per stage (asset key), every recorded file of the run that no longer matches its record:
    ``{"video_clips": {"shot_002.mp4": "sha256 differs from record"}}``, and every file a stage's
    manifest lists that is gone (with its sidecar or not). A file whose sidecar carries no file
    record is not judged here (its stage checks it when it reuses it)."""
    found: dict[str, dict[str, str]] = {}
    for row in stages.STAGES:
        folder = store.run_dir(run_id) / row.folder
        for name in _listed_missing(folder, row.outputs):
            found.setdefault(row.key, {})[name] = "missing"
        meta = folder / ".meta"
        if not meta.is_dir():
            continue
        for sidecar in sorted(meta.glob("*.json")):
            if TEMP_MARKER in sidecar.name:
                continue
            try:
                record = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or FILE_KEY not in record:
                continue
            output = meta.parent / sidecar.name[: -len(".json")]
            reason = problem(output, record[FILE_KEY])
            if reason:
                found.setdefault(row.key, {})[output.name] = reason
    return found


def _listed_missing(folder: Path, outputs: tuple[str, ...]) -> list[str]:
    """Files of ``folder`` that its JSON outputs (manifests) list by path but that do not exist."""
    missing = []
    for output in outputs:
        if not output.endswith(".json"):
            continue
        try:
            document = json.loads((folder / output).read_text())
        except (OSError, ValueError):
            continue
        for text in _strings(document):
            path = Path(text)
            if path.is_absolute() and path.parent == folder and not path.exists():
                missing.append(path.name)
    return sorted(set(missing))


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def describe(damaged: dict[str, dict[str, str]]) -> str:
    """``video_clips/shot_002.mp4 (sha256 differs from record)``, for every damaged file."""
    return ", ".join(f"{stages.folder(key)}/{name} ({reason})"
                     for key, files in damaged.items() for name, reason in files.items())
