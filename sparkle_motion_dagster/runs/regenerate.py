"""Regenerating one shot: choose new seeds and the stages to redo."""

from __future__ import annotations

import json

from sparkle_motion_dagster.runs.overrides import read_overrides, seed_override, set_seed
from sparkle_motion_dagster.runs.run_files import load_run_plan
from sparkle_motion_dagster.runs.storage import ArtifactStore

CLIP_STAGES = ["video_clips", "video_raw_concat", "video_final"]
KEYFRAME_STAGES = ["base_images", *CLIP_STAGES]


def _current_seed(store: ArtifactStore, run_id: str, kind: str, item_id: str, fallback_stage: str) -> int:
    seed = seed_override(read_overrides(store, run_id), kind, item_id)
    if seed is not None:
        return seed
    if fallback_stage == "base_images":
        manifest = json.loads(store.path(run_id, "base_images", "base_images_manifest.json").read_text())
        return next(e["seed"] for e in manifest["base_image_assets"] if e["id"] == item_id)
    manifest = json.loads(store.path(run_id, "video_clips", "motion_manifest.json").read_text())
    return next(e["seed"] for e in manifest["clip_assets"] if e["shot_id"] == item_id)


def plan_regeneration(store: ArtifactStore, run_id: str, shot_id: str, *, what: str, seed: int | None) -> dict:
    """Record the new seed(s) for the shot and say which stages must run.

    ``clip`` re-renders only that shot's clip. ``keyframe`` re-renders the shot's
    start and end keyframes; the neighbouring shots share those keyframes, so
    their clips are re-rendered too (continuity), and every other file stays.
    """
    plan = load_run_plan(store, run_id)
    shot = next((s for s in plan.shots if s.id == shot_id), None)
    if shot is None:
        raise ValueError(f"--shot: {shot_id!r} is not a shot of {run_id}; shots are {', '.join(s.id for s in plan.shots)}")
    if what == "clip":
        if not store.path(run_id, "video_clips", "motion_manifest.json").exists():
            raise ValueError(f"{run_id} has no clips yet; film it first (sparkle-motion resume {run_id})")
        new = seed if seed is not None else _current_seed(store, run_id, "shots", shot_id, "video_clips") + 1
        set_seed(store, run_id, "shots", shot_id, new)
        return {"shot_id": shot_id, "what": what, "seeds": {shot_id: new}, "stages": CLIP_STAGES}
    if what == "keyframe":
        if not store.path(run_id, "base_images", "base_images_manifest.json").exists():
            raise ValueError(f"{run_id} has no keyframes yet; film it first (sparkle-motion resume {run_id})")
        seeds = {}
        for offset, image_id in enumerate((shot.start_base_image_id, shot.end_base_image_id)):
            new = seed + offset if seed is not None else _current_seed(store, run_id, "base_images", image_id, "base_images") + 1
            set_seed(store, run_id, "base_images", image_id, new)
            seeds[image_id] = new
        return {"shot_id": shot_id, "what": what, "seeds": seeds, "stages": KEYFRAME_STAGES}
    raise ValueError(f"--what: must be clip or keyframe, got {what!r}")
