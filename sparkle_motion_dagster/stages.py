"""The stage table: every stage of a film, named once.

Each row is one asset of the graph and the folder its files go to under
``runs/<run_id>/``. The folder is the asset's own name except where the seed's
stage names (``plan_intake``, ``assembly``, ``finalize``) are what users see in
``/artifacts`` and on disk. Every list of stages in the code (definitions,
runner, status, catalog ordering, regenerate, the assets' output paths) derives
from this table. Dagster-free: the CLI, the service and the tests read it
without loading the definitions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    key: str
    """The asset key (and the name used by ``rerun --from`` and ``status``)."""
    folder: str
    """Where its files live under ``runs/<run_id>/``."""
    outputs: tuple[str, ...]
    """Its main files; the first one existing means the stage has finished."""
    renders: bool
    """Renders items (keyframes, clips, lines) that are reused when their inputs did not change."""
    deps: tuple[str, ...] = ()
    """The stages whose files it reads."""
    gpu: bool = False
    """Runs a model that wants the GPU to itself (one such stage at a time per GPU)."""
    work_folders: tuple[str, ...] = ()
    """Other folders it writes (intermediate files the catalog lists under their own stage)."""
    resource: str = ""
    """The resource key whose adapter does its work (what provenance and estimates describe)."""
    work_unit: str = "run"
    """What its cost is counted in for estimates (see ``runs/estimates.py``: ``plan_units``)."""
    cost_grows_with_pixels: bool = False
    """Whether that cost grows with the frame's pixels as well."""

    @property
    def done_marker(self) -> str:
        return self.outputs[0]


STAGES: tuple[Stage, ...] = (
    Stage("movie_plan", "plan_intake", ("movie_plan.json", "plan_validation.json"), renders=False,
          resource="planner"),
    Stage("dialogue_audio", "dialogue_audio",
          ("tts_timeline.wav", "dialogue_timeline_audio.json", "dialogue.srt", "dialogue.vtt"),
          renders=True, deps=("movie_plan",), resource="speech", work_unit="second of speech"),
    Stage("character_refs", "character_refs", ("character_refs_manifest.json",), renders=True, deps=("movie_plan",),
          gpu=True, resource="keyframes", work_unit="character", cost_grows_with_pixels=True),
    Stage("base_images", "base_images", ("base_images_manifest.json",), renders=True,
          deps=("movie_plan", "character_refs"), gpu=True, resource="keyframes", work_unit="keyframe",
          cost_grows_with_pixels=True),
    Stage("video_clips", "video_clips", ("motion_manifest.json",), renders=True, deps=("movie_plan", "base_images"),
          gpu=True, resource="clips", work_unit="frame", cost_grows_with_pixels=True),
    Stage("video_raw_concat", "assembly", ("video_raw_concat.mp4", "assembly_plan.json"), renders=False,
          deps=("video_clips",), resource="assembler", work_unit="frame"),
    Stage("video_final", "finalize", ("video_final.mp4", "alignment_map.json"), renders=False,
          deps=("video_raw_concat", "dialogue_audio"), gpu=True, work_folders=("lipsync",), resource="lipsync",
          work_unit="second of film", cost_grows_with_pixels=True),
)

STAGE_KEYS: tuple[str, ...] = tuple(stage.key for stage in STAGES)
RENDERING_STAGES: tuple[str, ...] = tuple(stage.key for stage in STAGES if stage.renders)

# The folder a run's submitted request is kept in; it comes before every stage.
REQUEST_FOLDER = "request"

_BY_KEY = {stage.key: stage for stage in STAGES}


def stage(key: str) -> Stage:
    """The row for an asset key; a clear error for anything else."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"{key!r} is not a stage; stages: {', '.join(STAGE_KEYS)}") from None


def folder(key: str) -> str:
    return stage(key).folder


def folder_order() -> tuple[str, ...]:
    """Every folder of a run in the order the film makes them (how the catalog sorts stages)."""
    order = [REQUEST_FOLDER]
    for row in STAGES:
        order.append(row.folder)
        order.extend(row.work_folders)
    return tuple(order)


def downstream(key: str) -> list[str]:
    """``key`` and every stage that depends on it, directly or not, in table order."""
    stage(key)
    chosen = {key}
    for row in STAGES:
        if any(dep in chosen for dep in row.deps):
            chosen.add(row.key)
    return [row.key for row in STAGES if row.key in chosen]


def stage_of_step(step_key: str | None) -> str | None:
    """The stage a Dagster step belongs to: the step itself (``video_clips``) or one of the
    steps of a stage rendered as several (``video_clips.video_clips_render[shot_001]``)."""
    if not step_key:
        return None
    key = step_key.split(".", 1)[0]
    return key if key in _BY_KEY else None


def ends_stage(step_key: str) -> bool:
    """Whether this step's success is its stage's: the stage's only step, or its manifest step."""
    key = stage_of_step(step_key)
    return key is not None and step_key in (key, f"{key}.{key}_manifest")
