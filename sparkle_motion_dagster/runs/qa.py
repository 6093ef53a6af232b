"""The manual-review flag (the seed's ``QA_AUTOMATION_REMOVED``, default ``1``).

There is no automated QA in Sparkle Motion, so manifests always record
``qa_mode: "disabled"``. The flag decides what the review gate does: with ``1``
a person must approve the final video before it is ready to share (the gate
blocks); with ``0`` the gate is advisory (a missing approval is a warning).
"""

from __future__ import annotations

import os


def qa_automation_removed() -> bool:
    value = os.environ.get("QA_AUTOMATION_REMOVED", "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"QA_AUTOMATION_REMOVED must be 0 or 1, got {value!r}")
    return value == "1"


def qa_flags() -> dict:
    """What manifests record: whether a person must sign off, and that no automated QA ran."""
    removed = qa_automation_removed()
    return {"manual_review_required": removed, "qa_mode": "disabled",
            "review_gate": "blocking" if removed else "advisory"}
