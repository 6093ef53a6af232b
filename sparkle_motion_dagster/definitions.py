"""Everything Sparkle Motion runs, assembled once: assets, jobs, resources and the executor."""

import dagster as dg

from sparkle_motion_dagster.assets.assembly import video_final, video_raw_concat
from sparkle_motion_dagster.assets.base_images import base_images
from sparkle_motion_dagster.assets.dialogue_audio import dialogue_audio
from sparkle_motion_dagster.assets.movie_plan import movie_plan
from sparkle_motion_dagster.assets.review_check import approved_by_reviewer
from sparkle_motion_dagster.assets.video_clips import video_clips
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.orchestration.runner import DRY_RUN_CONFIG
from sparkle_motion_dagster.sensors import build_plan_inbox_sensor
from sparkle_motion_dagster.resources.assembly import FfmpegAssembler
from sparkle_motion_dagster.resources.clips import AnimaticClips
from sparkle_motion_dagster.resources.keyframes import StoryboardKeyframes
from sparkle_motion_dagster.resources.lipsync import PassthroughLipsync
from sparkle_motion_dagster.resources.planning.llm import LlmPlanner
from sparkle_motion_dagster.resources.planning import TemplatePlanner
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes
from sparkle_motion_dagster.resources.speech import EspeakSpeech, speech_from_env
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.resources.clips.wan import WanClips
from sparkle_motion_dagster.resources.lipsync.wav2lip import Wav2LipLipsync

FILM_ASSETS = [movie_plan, dialogue_audio, base_images, video_clips, video_raw_concat, video_final]

film_job = dg.define_asset_job(
    "film",
    selection=dg.AssetSelection.assets(*FILM_ASSETS).without_checks(),
    partitions_def=run_partitions,
    description="Make the whole film for one run_id: plan intake through the final video.",
)

review_gate_job = dg.define_asset_job(
    "review_gate",
    selection=dg.AssetSelection.checks(approved_by_reviewer),
    description="Re-run the manual review gate on one film run's final video (set run_id in the config) "
                "after `sparkle-motion review RUN_ID --approve`.",
)

plan_dry_run_job = dg.define_asset_job(
    "plan_dry_run",
    selection=dg.AssetSelection.assets(movie_plan).without_checks(),
    partitions_def=run_partitions,
    config=DRY_RUN_CONFIG,
    description="Plan intake only: validation report and warnings before paying for a render.",
)


def embedded_resources() -> dict:
    """The weight-free defaults that run anywhere."""
    return {
        "artifact_store": ArtifactStoreResource(),
        "planner": TemplatePlanner(),
        "speech": EspeakSpeech(),
        "keyframes": StoryboardKeyframes(),
        "clips": AnimaticClips(),
        "assembler": FfmpegAssembler(),
        "lipsync": PassthroughLipsync(),
    }


def configured_resources() -> dict:
    """The embedded defaults, with real models wherever their environment variables point at one
    (SCRIPT_AGENT_MODEL, TTS_CHATTERBOX_PYTHON / TTS_VITS_MODEL, IMAGES_SDXL_MODEL,
    VIDEOS_WAN_MODEL, WAV2LIP_CHECKPOINT). Reading the environment here imports
    no model library, and a bad value fails here, naming the variable."""
    resources = embedded_resources()
    if (planner := LlmPlanner.from_env()) is not None:
        resources["planner"] = planner
    if (speech := speech_from_env()) is not None:
        resources["speech"] = speech
    if (keyframes := SdxlKeyframes.from_env()) is not None:
        resources["keyframes"] = keyframes
    if (clips := WanClips.from_env()) is not None:
        resources["clips"] = clips
    if (lipsync := Wav2LipLipsync.from_env()) is not None:
        resources["lipsync"] = lipsync
    return resources


defs = dg.Definitions(
    assets=FILM_ASSETS,
    asset_checks=[approved_by_reviewer],
    jobs=[film_job, plan_dry_run_job, review_gate_job],
    sensors=[build_plan_inbox_sensor(film_job)],
    resources=configured_resources(),
    # One process per film run: a process per step costs ~1.7 s here and models
    # load once per process. Multiprocess or cluster executors are configuration.
    executor=dg.in_process_executor,
)
