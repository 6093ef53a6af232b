"""Skip-if-unchanged for per-item outputs (one line, one keyframe, one clip).

Beside each output a sidecar in ``.meta/`` records the fingerprint of every
input that shaped it and the output's own size and sha256 (``store/integrity.py``).
An output is reused only when its sidecar's fingerprint matches and the file is
still the one recorded (not missing, cut short, overwritten or swapped); the
sidecar is written after the output, so a crash in between means the item is
simply rendered again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.store import integrity
from sparkle_motion_dagster.store.storage import atomic_write_json


def fingerprint(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


sidecar_path = integrity.sidecar_path


def check(output: Path, expected: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` when ``output`` can be reused as is; else ``(None, why)``, where ``why``
    says what is wrong with a file that was made before (missing, damaged, swapped) and is None
    for an item never made or whose inputs changed (rendering it is the normal course).

    A sidecar from before file records were kept gets its record now, from the file as it is."""
    sidecar = sidecar_path(output)
    if not sidecar.exists():
        return None, None
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None, None
    if not isinstance(record, dict) or record.get("fingerprint") != expected:
        return None, None
    if integrity.FILE_KEY not in record:
        if not output.exists():
            return None, "missing"
        record = {**record, integrity.FILE_KEY: integrity.file_record(output)}
        atomic_write_json(sidecar, record)
        return record, None
    reason = integrity.problem(output, record[integrity.FILE_KEY])
    return (None, reason) if reason else (record, None)


def record(output: Path, expected: str, metadata: dict[str, Any]) -> dict[str, Any]:
    payload = {"fingerprint": expected, **metadata, integrity.FILE_KEY: integrity.file_record(output)}
    atomic_write_json(sidecar_path(output), payload)
    return payload
