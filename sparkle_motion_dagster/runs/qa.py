"""The manual-review flag (the seed's ``QA_AUTOMATION_REMOVED``, default ``1``)."""

from __future__ import annotations

import os


def qa_automation_removed() -> bool:
    value = os.environ.get("QA_AUTOMATION_REMOVED", "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"QA_AUTOMATION_REMOVED must be 0 or 1, got {value!r}")
    return value == "1"


def qa_flags() -> dict:
    """What manifests record: a person must sign off while QA automation is removed."""
    removed = qa_automation_removed()
    return {"manual_review_required": removed, "qa_mode": "disabled" if removed else "enabled"}
