"""The files of one film run that several stages read."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.film.plan import MoviePlan, checked_seed, validate_plan
from sparkle_motion_dagster.store.storage import ArtifactStore
from sparkle_motion_dagster.stages import folder

DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 720


class MissingUpstreamError(FileNotFoundError):
    """A stage ran before the stage it reads from produced its file."""


def submit_request(store: ArtifactStore, run_id: str, *, source: str, preview: bool,
                   document: dict | None = None, prompt: dict | None = None,
                   content_sha256: str | None = None) -> None:
    """Record what a film run was asked to make: a plan ``document``, or a ``prompt``
    (``{"prompt", "title", "seed"}``) that the ``movie_plan`` stage turns into a plan;
    ``content_sha256`` is the dropped file's, for the drop folder to know its duplicates."""
    if (document is None) == (prompt is None):
        raise ValueError("a film run is submitted with either a plan document or a prompt")
    if prompt is not None:
        prompt = {**prompt, "seed": checked_seed(prompt.get("seed", 0))}
    request = {"run_id": run_id, "source": source, "preview": preview,
               "submitted_at": datetime.now(timezone.utc).isoformat()}
    if content_sha256 is not None:
        request["content_sha256"] = content_sha256
    request.update({"document": document} if document is not None else {"prompt": prompt})
    store.write_request(run_id, request)


def submitted_document(store: ArtifactStore, run_id: str) -> Any:
    """The plan document a run was submitted with, or for a prompt the planner's plan artifact
    (None when neither exists yet): where field paths such as ``dialogue_timeline[3]`` point."""
    document = store.read_request(run_id).get("document")
    if document is None:
        artifact = stage_file(store, run_id, "movie_plan", "plan_artifact.json")
        document = json.loads(artifact.read_text(encoding="utf-8")) if artifact.exists() else None
    return document


def stage_file(store: ArtifactStore, run_id: str, stage: str, *names: str) -> Path:
    """A file of one stage (by asset key) of one film run."""
    return store.path(run_id, folder(stage), *names)


def read_stage_json(store: ArtifactStore, run_id: str, stage: str, name: str) -> Any:
    """A JSON file another stage (by asset key) wrote; a clear error when that stage has not run."""
    path = stage_file(store, run_id, stage, name)
    if not path.exists():
        raise MissingUpstreamError(f"{run_id}: {folder(stage)}/{name} does not exist yet; materialize {stage} first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_run_plan(store: ArtifactStore, run_id: str) -> MoviePlan:
    return validate_plan(read_stage_json(store, run_id, "movie_plan", "movie_plan.json"))


def output_size(plan: MoviePlan) -> tuple[int, int]:
    video = plan.render_profile.video
    return video.width or DEFAULT_WIDTH, video.height or DEFAULT_HEIGHT


def image_seed(plan: MoviePlan, index: int) -> int:
    """A base image's declared seed, or a stable one derived from the plan."""
    image = plan.base_images[index]
    if image.seed is not None:
        return image.seed
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{plan.title}\x00{image.id}".encode()).digest()[:4], "little") % 2**31
