"""Skip-if-unchanged for per-item outputs (one line, one keyframe, one clip).

Beside each output a sidecar in ``.meta/`` records the fingerprint of every
input that shaped it. An output is reused only when the file exists and its
sidecar's fingerprint matches; the sidecar is written after the output, so a
crash in between means the item is simply rendered again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.runs.storage import atomic_write_json


def fingerprint(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def sidecar_path(output: Path) -> Path:
    return output.parent / ".meta" / f"{output.name}.json"


def reusable(output: Path, expected: str) -> dict[str, Any] | None:
    """The recorded metadata when ``output`` can be reused as is, else None."""
    sidecar = sidecar_path(output)
    if not (output.exists() and sidecar.exists()):
        return None
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    # A sidecar that is not an object (``[]``, a number) is damaged: the item is rendered again.
    return record if isinstance(record, dict) and record.get("fingerprint") == expected else None


def record(output: Path, expected: str, metadata: dict[str, Any]) -> dict[str, Any]:
    payload = {"fingerprint": expected, **metadata}
    atomic_write_json(sidecar_path(output), payload)
    return payload
