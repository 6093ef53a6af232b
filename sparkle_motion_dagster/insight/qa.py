"""The seed's QA switch (``QA_AUTOMATION_REMOVED``, default ``1``) and the run's QA report.

Automated checks (``film/quality.py``) run on every film as asset checks. The switch
decides what their failures do: with ``1`` they are warnings and a person's review is
what makes the film ready to share; with ``0`` they are blocking: a failed check stops
what depends on it, and the film is not ready to share until every check passes or a
person's approval records the override. Each evaluation is kept with the run and
gathered in ``finalize/qa_report.json``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_json

REPORT = "qa_report.json"
RESULTS_FOLDER = ".qa"


def qa_automation_removed() -> bool:
    value = os.environ.get("QA_AUTOMATION_REMOVED", "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"QA_AUTOMATION_REMOVED must be 0 or 1, got {value!r}")
    return value == "1"


def check_severity() -> str:
    """What a failed automated check is: a warning (QA_AUTOMATION_REMOVED=1) or a blocking error (0)."""
    return "WARN" if qa_automation_removed() else "ERROR"


def qa_flags() -> dict:
    """What manifests record: whether a person must sign off, and that no automated QA ran (yet):
    ``qa_mode`` becomes ``automated`` in the run's QA report once checks have run."""
    removed = qa_automation_removed()
    return {"manual_review_required": removed, "qa_mode": "disabled",
            "review_gate": "blocking" if removed else "advisory"}


def qa_record(store: ArtifactStore, run_id: str) -> dict:
    """What a manifest records: :func:`qa_flags`, with ``qa_mode: automated`` and each check's result
    once checks have run on this film."""
    flags = qa_flags()
    results = check_results(store, run_id)
    if results:
        flags.update(qa_mode="automated", qa_checks={f"{r['asset']}/{r['name']}": r["passed"] for r in results})
    return flags


def _results_dir(store: ArtifactStore, run_id: str):
    return store.path(run_id, "finalize", RESULTS_FOLDER)


def record_result(store: ArtifactStore, run_id: str, result: dict[str, Any]) -> dict:
    """Keep one check's evaluation with the run and rewrite the run's QA report with it."""
    entry = {**result, "severity": check_severity(), "evaluated_at": datetime.now(timezone.utc).isoformat()}
    atomic_write_json(_results_dir(store, run_id) / f"{result['asset']}.{result['name']}.json", entry)
    return write_report(store, run_id)


def check_results(store: ArtifactStore, run_id: str) -> list[dict[str, Any]]:
    """The latest evaluation of every check that ran on this run, in stage order."""
    from sparkle_motion_dagster.stages import STAGE_KEYS

    folder = _results_dir(store, run_id)
    results = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # being replaced this moment: the next report has it
    order = {key: index for index, key in enumerate(STAGE_KEYS)}
    return sorted(results, key=lambda r: (order.get(r.get("asset"), 99), r.get("name", "")))


def write_report(store: ArtifactStore, run_id: str) -> dict:
    results = check_results(store, run_id)
    report = {
        "run_id": run_id,
        "qa_mode": "automated" if results else "disabled",
        "qa_automation_removed": qa_automation_removed(),
        "checks_blocking": not qa_automation_removed(),
        "passed": all(r["passed"] for r in results) if results else None,
        "failed": [f"{r['asset']}/{r['name']}" for r in results if not r["passed"]],
        "checks": results,
    }
    atomic_write_json(store.path(run_id, "finalize", REPORT), report)
    return report


def read_report(store: ArtifactStore, run_id: str) -> dict | None:
    path = store.path(run_id, "finalize", REPORT)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def status_checks(store: ArtifactStore, run_id: str) -> list[dict[str, Any]]:
    """Every check's latest result as status shows it: asset, name, passed, severity, metadata."""
    return [{"asset": r["asset"], "name": r["name"], "passed": r["passed"], "severity": r["severity"],
             "description": r.get("description", ""), "metadata": r.get("metadata", {})}
            for r in check_results(store, run_id)]


def qa_blocks_sharing(store: ArtifactStore, run_id: str) -> list[str]:
    """The failed checks that keep the film from being ready to share (only while checks are blocking)."""
    if qa_automation_removed():
        return []
    return [f"{r['asset']}/{r['name']}: {r.get('description', '')}" for r in check_results(store, run_id)
            if not r["passed"]]
