"""The stage table: every stage of a film, named once.

Each row is one asset of the graph and the folder its files go to under
``runs/<run_id>/``. The folder is the asset's own name except where the seed's
stage names (``plan_intake``, ``assembly``, ``finalize``) are what users see in
``/artifacts`` and on disk. Every list of stages in the code (definitions,
runner, status, catalog ordering and artifact types, regenerate, the doctor, the
adapter selection, estimates, the panel's preview tabs, the assets' output
paths) derives from this table. Dagster-free: the CLI, the service and the
tests read it without loading the definitions (adapters are named by their
``module:Class`` path and imported only by ``resources/selection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileType:
    """The catalog's artifact type for a stage's media files of one kind."""

    media: str
    """The media type it applies to (``image``, ``audio``, ``video``)."""
    artifact_type: str
    prefix: str = ""
    """Only for file names starting with this (``""``: every file of that media type)."""
    folder: str = ""
    """Only for files under this folder of the run (``""``: the stage's own folder)."""


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
    """What its cost is counted in for estimates (see ``insight/estimates.py``: ``plan_units``)."""
    cost_grows_with_pixels: bool = False
    """Whether that cost grows with the frame's pixels as well."""
    manifest: str = ""
    """The JSON file listing its items, which the stages after it read (``""``: none)."""
    embedded: str = ""
    """The weight-free default adapter of ``resource``, as ``module:Class`` under ``resources``."""
    adapters: tuple[str, ...] = ()
    """The real adapters the environment can switch to, first match wins (``module:Class``)."""
    embedded_why: str = ""
    """What the embedded default is (the doctor says it when no adapter's switch variable is set)."""
    file_types: tuple[FileType, ...] = ()
    """The artifact types of its media files, most specific first."""
    tab: str = ""
    """The title of its preview tab in the notebook panel (``""``: no tab)."""

    @property
    def done_marker(self) -> str:
        return self.outputs[0]


STAGES: tuple[Stage, ...] = (
    Stage("movie_plan", "plan_intake", ("movie_plan.json", "plan_validation.json"), renders=False,
          resource="planner", embedded="planning.template:TemplatePlanner", adapters=("planning.llm:LlmPlanner",),
          embedded_why="embedded deterministic template planner (not a language model)"),
    Stage("dialogue_audio", "dialogue_audio",
          ("tts_timeline.wav", "dialogue_timeline_audio.json", "dialogue.srt", "dialogue.vtt"),
          renders=True, deps=("movie_plan",), resource="speech", work_unit="second of speech",
          manifest="dialogue_timeline_audio.json", embedded="speech.espeak:EspeakSpeech",
          adapters=("speech.chatterbox:ChatterboxSpeech", "speech.piper:PiperSpeech", "speech.vits:VitsSpeech"),
          embedded_why="embedded espeak-ng speech (GPL-3)",
          file_types=(FileType("audio", "tts_timeline_audio", prefix="tts_timeline"),
                      FileType("audio", "shot_dialogue_audio")),
          tab="Dialogue"),
    # Drawn by the keyframe renderer that base_images' row names (one resource, two stages).
    Stage("character_refs", "character_refs", ("character_refs_manifest.json",), renders=True, deps=("movie_plan",),
          gpu=True, resource="keyframes", work_unit="character", cost_grows_with_pixels=True,
          manifest="character_refs_manifest.json", file_types=(FileType("image", "character_reference"),),
          tab="Characters"),
    Stage("base_images", "base_images", ("base_images_manifest.json",), renders=True,
          deps=("movie_plan", "character_refs"), gpu=True, resource="keyframes", work_unit="keyframe",
          cost_grows_with_pixels=True, manifest="base_images_manifest.json",
          embedded="keyframes.storyboard:StoryboardKeyframes", adapters=("keyframes.sdxl:SdxlKeyframes",),
          embedded_why="embedded storyboard keyframes (not an image model)",
          file_types=(FileType("image", "shot_frames"),), tab="Keyframes"),
    Stage("video_clips", "video_clips", ("motion_manifest.json",), renders=True, deps=("movie_plan", "base_images"),
          gpu=True, resource="clips", work_unit="frame", cost_grows_with_pixels=True,
          manifest="motion_manifest.json", embedded="clips.animatic:AnimaticClips", adapters=("clips.wan:WanClips",),
          embedded_why="embedded animatic (plans declaring wan-2.1 need --preview)",
          file_types=(FileType("video", "shot_video"),), tab="Clips"),
    Stage("video_raw_concat", "assembly", ("video_raw_concat.mp4", "assembly_plan.json"), renders=False,
          deps=("video_clips",), resource="assembler", work_unit="frame", manifest="assembly_plan.json",
          embedded="assembly:FfmpegAssembler", embedded_why="ffmpeg concat demuxer, stream copy",
          file_types=(FileType("video", "video_raw", prefix="video_raw"),), tab="Assembly"),
    Stage("video_final", "finalize", ("video_final.mp4", "alignment_map.json"), renders=False,
          deps=("video_raw_concat", "dialogue_audio"), gpu=True, work_folders=("lipsync",), resource="lipsync",
          work_unit="second of film", cost_grows_with_pixels=True,
          embedded="lipsync.passthrough:PassthroughLipsync", adapters=("lipsync.wav2lip:Wav2LipLipsync",),
          embedded_why="embedded passthrough (muxes the dialogue, mouths unchanged)",
          file_types=(FileType("video", "video_final", prefix="video_final"),
                      FileType("video", "shot_lipsync_video", folder="lipsync")),
          tab="Final video"),
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


def manifest(key: str) -> str:
    """The file listing a stage's items; a clear error for a stage without one."""
    row = stage(key)
    if not row.manifest:
        raise KeyError(f"stage {key!r} writes no manifest")
    return row.manifest


def with_resources() -> tuple[Stage, ...]:
    """The stages whose work an adapter (a resource) does, in table order."""
    return tuple(row for row in STAGES if row.resource)


def preview_tabs() -> tuple[tuple[str, str], ...]:
    """The panel's preview tabs, ``(title, folder)``, in table order."""
    return tuple((row.tab, row.folder) for row in STAGES if row.tab)


def preview_first() -> tuple[str, ...]:
    """Artifact types a stage's preview shows before the others of their media type: whole-stage
    files (a ``prefix`` rule) before a work folder's items, later stages first (the most finished)."""
    rows = tuple(reversed(STAGES))
    return (tuple(rule.artifact_type for row in rows for rule in row.file_types if rule.prefix)
            + tuple(rule.artifact_type for row in rows for rule in row.file_types if rule.folder and not rule.prefix))


def artifact_type(folder_name: str, file_name: str, media: str) -> str | None:
    """The artifact type the table gives a media file of a run folder (a stage's own folder or one of
    its work folders), or None when no row says. A row's rule for a file name (``prefix``) applies in
    any folder; a rule for every file of a media type applies in its own folder first, and elsewhere
    in table order."""
    name = file_name.lower()
    rules = [(row, rule) for row in STAGES for rule in row.file_types if rule.media == media]
    for row, rule in rules:
        if rule.prefix and name.startswith(rule.prefix):
            return rule.artifact_type
    general = [(row, rule) for row, rule in rules if not rule.prefix]
    for row, rule in general:
        if folder_name == (rule.folder or row.folder):
            return rule.artifact_type
    for row, rule in general:
        if not rule.folder:
            return rule.artifact_type
    return None


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
