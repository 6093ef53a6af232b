"""Replaying a film: what a new run needs to be filmed exactly as a recorded one was.

From the recorded run: its plan (the submitted document, with the size it was
filmed at; for a prompt run the normalized plan the planner made, so the planner
is not asked again), preview or not, its seed overrides (a regenerated shot's
seed), and the per-run keyframe settings its provenance records name. The
backends themselves come from this installation's configuration: what differs
from the recorded ones is reported, not hidden. Dagster-free.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.insight import provenance
from sparkle_motion_dagster.store.run_files import stage_file
from sparkle_motion_dagster.store.storage import (
    ArtifactStore,
    UnknownRunError,
    atomic_write_bytes,
    check_run_id,
)

# Per-run settings of the keyframe stage (BaseImagesConfig) that a replay passes again.
KEYFRAME_RUN_SETTINGS = ("steps", "guidance", "scheduler", "negative_prompt")
# The resource key that makes each stage's files, to compare recorded backends with configured ones.
# By folder, as records name their stage; not the plan intake's planner: a replay films the recorded
# plan without asking it again.
STAGE_RESOURCES = {s.folder: s.resource for s in stages.STAGES if s.resource != "planner"}


@dataclass
class ReplaySource:
    """What the recorded run was filmed from."""

    run_id: str
    document: dict[str, Any]
    preview: bool
    overrides: bytes | None
    run_config: dict[str, Any] = field(default_factory=dict)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage folder: the recorded backend and settings of its first record."""


def replay_source(store: ArtifactStore, run_id: str) -> ReplaySource:
    """Read what ``run_id`` was filmed from; a clear error when it was never filmed."""
    check_run_id(run_id)
    if not store.request_path(run_id).exists():
        raise UnknownRunError(f"run_id: unknown run {run_id!r}: no request under {store.root}")
    request = store.read_request(run_id)
    plan_file = stage_file(store, run_id, "movie_plan", "movie_plan.json")
    document = request.get("document")
    if document is None:
        if not plan_file.exists():
            raise ValueError(f"{run_id} has no plan yet (it was submitted with a prompt and never planned); "
                             f"film it first: sparkle-motion resume {run_id}")
        document = json.loads(plan_file.read_text(encoding="utf-8"))
    overrides_path = store.path(run_id, "overrides", "overrides.json")
    records = provenance.read_records(store, run_id)
    backends: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["stage"] in STAGE_RESOURCES and record.get("model") and record["stage"] not in backends:
            backends[record["stage"]] = record["model"]
    run_config: dict[str, Any] = {}
    keyframe_settings = (backends.get("base_images") or {}).get("settings") or {}
    chosen = {k: keyframe_settings[k] for k in KEYFRAME_RUN_SETTINGS if keyframe_settings.get(k) not in (None, "")}
    if chosen:
        run_config = {"ops": {"base_images": {"config": chosen}}}
    return ReplaySource(run_id, document, bool(request.get("preview")),
                        overrides_path.read_bytes() if overrides_path.exists() else None, run_config, backends)


def copy_overrides(store: ArtifactStore, source: ReplaySource, new_run_id: str) -> None:
    if source.overrides is not None:
        atomic_write_bytes(store.path(new_run_id, "overrides", "overrides.json"), source.overrides)


def backend_differences(source: ReplaySource, configured: dict[str, Any]) -> list[str]:
    """Lines saying where this installation's backends differ from the recorded ones
    (``configured``: resource key -> resource)."""
    lines = []
    for folder, recorded in source.backends.items():
        resource = configured.get(STAGE_RESOURCES[folder])
        if resource is None:
            continue
        now = resource.provenance() if hasattr(resource, "provenance") else provenance.model_provenance(resource)
        if now.get("backend") != recorded.get("backend"):
            lines.append(f"{folder}: recorded backend {recorded.get('backend')}, configured now {now.get('backend')}")
            continue
        for key in ("weights_digest", "dtype", "device"):
            if recorded.get(key) != now.get(key):
                lines.append(f"{folder}: {key} was {recorded.get(key)}, now {now.get(key)}")
        old, new = recorded.get("settings") or {}, now.get("settings") or {}
        for key in sorted(set(old) | set(new)):
            if key not in KEYFRAME_RUN_SETTINGS and old.get(key) != new.get(key):
                lines.append(f"{folder}: setting {key} was {old.get(key)!r}, now {new.get(key)!r}")
    return lines


def compare_runs(store: ArtifactStore, original: str, replay: str) -> list[dict[str, Any]]:
    """Per file of the original: whether the replay's file is byte-identical, and what differs in
    their records when not. Files that name their run (manifests) are compared with the run id swapped;
    the plan intake report's cost estimate depends on the history at the time, so a report that differs
    only there is marked ``only_estimate``."""
    mine = {r["path"]: r for r in provenance.read_records(store, replay)}
    rows = []
    for record in provenance.read_records(store, original):
        other = mine.get(record["path"])
        if other is None:
            rows.append({"path": record["path"], "identical": False, "missing": True})
            continue
        same = record["sha256"] == other["sha256"]
        if not same:
            a = (store.run_dir(original) / record["path"]).read_bytes().replace(original.encode(), replay.encode())
            b = (store.run_dir(replay) / record["path"]).read_bytes()
            same = a == b
            if not same and record["path"].endswith(".json"):
                with contextlib.suppress(ValueError):
                    old_json, new_json = json.loads(a), json.loads(b)
                    if isinstance(old_json, dict) and "estimate" in old_json and isinstance(new_json, dict):
                        old_json.pop("estimate"), new_json.pop("estimate", None)
                        if old_json == new_json:
                            rows.append({"path": record["path"], "identical": False, "only_estimate": True})
                            continue
        rows.append({"path": record["path"], "identical": same,
                     **({} if same else {"differences": provenance.differences(record, other)})})
    return rows
