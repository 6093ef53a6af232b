"""The files of one film run that several stages read."""

from __future__ import annotations

import json
from typing import Any

from sparkle_motion_dagster.film.plan import MoviePlan, validate_plan
from sparkle_motion_dagster.runs.storage import ArtifactStore

DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 720


class MissingUpstreamError(FileNotFoundError):
    """A stage ran before the stage it reads from produced its file."""


def read_stage_json(store: ArtifactStore, run_id: str, stage: str, name: str) -> Any:
    path = store.path(run_id, stage, name)
    if not path.exists():
        raise MissingUpstreamError(f"{run_id}: {stage}/{name} does not exist yet; materialize {stage} first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_run_plan(store: ArtifactStore, run_id: str) -> MoviePlan:
    return validate_plan(read_stage_json(store, run_id, "plan_intake", "movie_plan.json"))


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
