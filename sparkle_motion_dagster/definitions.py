"""Everything Sparkle Motion runs, assembled once: assets, jobs, resources and the executor."""

import dagster as dg

from .assets.assembly import video_final, video_raw_concat
from .assets.base_images import base_images
from .assets.dialogue_audio import dialogue_audio
from .assets.plan_intake import movie_plan
from .assets.video_clips import video_clips
from .partitions import run_partitions
from .resources.assembly import FfmpegAssembler
from .resources.clips import AnimaticClips
from .resources.keyframes import StoryboardKeyframes
from .resources.lipsync import PassthroughLipsync
from .resources.planner import TemplatePlanner
from .resources.speech import EspeakSpeech
from .resources.storage import ArtifactStoreResource

FILM_ASSETS = [movie_plan, dialogue_audio, base_images, video_clips, video_raw_concat, video_final]

film_job = dg.define_asset_job(
    "film",
    selection=dg.AssetSelection.assets(*FILM_ASSETS),
    partitions_def=run_partitions,
    description="Make the whole film for one run_id: plan intake through the final video.",
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


defs = dg.Definitions(
    assets=FILM_ASSETS,
    jobs=[film_job],
    resources=embedded_resources(),
    # One process per film run: a process per step costs ~1.7 s here and models
    # load once per process. Multiprocess or cluster executors are configuration.
    executor=dg.in_process_executor,
)
