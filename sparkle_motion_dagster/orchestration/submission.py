"""Registering a film run: its plan (or prompt) checked and stored, its partition added, and the
run config of a dry run. What the definitions' jobs and sensors need to start a film, without the
runner that drives Dagster (which imports the definitions)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from sparkle_motion_dagster.film.intake import resolve_video_backend
from sparkle_motion_dagster.film.plan import parse_plan_document
from sparkle_motion_dagster.store.run_files import submit_request
from sparkle_motion_dagster.store.storage import ArtifactStore, check_run_id, new_run_id

RUN_TAG = "sparkle/run_id"
PARTITION_TAG = "dagster/partition"
"""Dagster's tag of a run's partition (a documented system tag)."""
DRY_RUN_CONFIG = {"ops": {"movie_plan": {"config": {"dry_run": True}}}}


def dry_run_config(budget: str | None = None) -> dict:
    """The run config of a dry run, with the time budget its estimate is checked against."""
    return {"ops": {"movie_plan": {"config": {"dry_run": True, **({"budget": budget} if budget else {})}}}}


def submit_run(
    store: ArtifactStore, instance: dg.DagsterInstance, document: dict[str, Any], *, source: str, preview: bool,
    clip_model_ids: tuple[str, ...], clip_backend: str, run_id: str | None = None, check_backend: bool = True,
) -> str:
    """Validate the plan and register a new film run. Raises before writing anything on bad input.

    ``check_backend=False`` (dry runs) leaves an unconfigured video model to be reported as a warning."""
    parsed = parse_plan_document(document)
    if check_backend:
        resolve_video_backend(parsed.plan, served=clip_model_ids, backend=clip_backend, preview=preview)
    run_id = check_run_id(run_id) if run_id else new_run_id()
    submit_request(store, run_id, document=document, source=source, preview=preview)
    instance.add_dynamic_partitions("run_id", [run_id])
    return run_id


def submit_prompt_run(
    store: ArtifactStore, instance: dg.DagsterInstance, *, prompt: str, title: str, seed: int = 0,
    size: tuple[int, int] | None = None, preview: bool, source: str = "prompt", run_id: str | None = None,
) -> str:
    """Register a new film run from a story prompt; its ``movie_plan`` stage asks the planner."""
    if not prompt.strip() or not title.strip():
        raise ValueError("prompt and title: both must be non-empty")
    run_id = check_run_id(run_id) if run_id else new_run_id()
    request = {"prompt": prompt, "title": title, "seed": seed, **({"size": list(size)} if size else {})}
    submit_request(store, run_id, prompt=request, source=source, preview=preview)
    instance.add_dynamic_partitions("run_id", [run_id])
    return run_id
