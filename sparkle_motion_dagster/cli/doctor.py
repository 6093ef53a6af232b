"""`sparkle-motion doctor`: which backend each stage will use, and what is missing."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from typing import Any

from sparkle_motion_dagster.runs.locations import artifacts_root, state_dir

PACKAGES = ("dagster", "dagster-webserver", "pydantic", "numpy", "pillow", "imageio-ffmpeg", "espeakng-loader",
            "duckdb", "fastapi", "torch", "diffusers", "transformers", "accelerate", "ftfy")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _real_backend(resource, env_var: str, *, field: str = "model") -> dict[str, Any]:
    entry: dict[str, Any] = {"backend": resource.backend, "why": f"{env_var}={getattr(resource, field, '')}",
                             "model": getattr(resource, field, None)}
    try:
        runtime = resource.runtime()
    except Exception as exc:  # report every problem, do not stop at the first
        entry.update(ok=False, problem=str(exc))
        return entry
    entry.update(ok=True, weights_found=True, **{k: v for k, v in runtime.items() if isinstance(v, (str, int, float, bool))})
    return entry


def diagnose() -> dict[str, Any]:
    from sparkle_motion_dagster.definitions import defs

    resources = defs.resources
    stages: dict[str, Any] = {}
    keyframes, clips = resources["keyframes"], resources["clips"]
    stages["base_images"] = (_real_backend(keyframes, "IMAGES_SDXL_MODEL") if keyframes.backend != "storyboard" else
                             {"backend": "storyboard", "ok": True, "device": "cpu",
                              "why": "IMAGES_SDXL_MODEL is not set: embedded storyboard keyframes (not an image model)"})
    stages["video_clips"] = (_real_backend(clips, "VIDEOS_WAN_MODEL") if clips.backend != "animatic" else
                             {"backend": "animatic", "ok": True, "device": "cpu", "serves": list(clips.model_ids),
                              "why": "VIDEOS_WAN_MODEL is not set: embedded animatic (plans declaring wan-2.1 need "
                                     "--preview)"})
    stages["video_clips"]["serves"] = list(clips.model_ids)
    from sparkle_motion_dagster.resources.speech import describe as describe_speech

    stages["dialogue_audio"] = describe_speech()
    stages["video_raw_concat"] = {"backend": resources["assembler"].backend, "ok": True, "device": "cpu",
                                  "why": "ffmpeg concat demuxer, stream copy"}
    lipsync = resources["lipsync"]
    stages["video_final"] = (_real_backend(lipsync, "WAV2LIP_CHECKPOINT", field="checkpoint")
                             if lipsync.backend != "passthrough" else
                             {"backend": "passthrough", "ok": True, "device": "cpu",
                              "why": "WAV2LIP_CHECKPOINT is not set: embedded passthrough (muxes the dialogue, "
                                     "mouths unchanged)"})
    planner = resources["planner"]
    if getattr(planner, "model", None):
        stages["movie_plan"] = {"backend": "llm", "ok": True, "device": "-",
                                "why": f"SCRIPT_AGENT_MODEL={planner.model} at {planner.base_url} "
                                       "(the planner is only called by `plan`, `run --prompt` and inbox requests)"}
    else:
        stages["movie_plan"] = {"backend": "template", "ok": True, "device": "cpu",
                                "why": "SCRIPT_AGENT_MODEL is not set: embedded deterministic template planner "
                                       "(not a language model)"}
    from sparkle_motion_dagster.media.ffmpeg import ffmpeg_exe

    try:
        ffmpeg = ffmpeg_exe()
        ffmpeg_ok = bool(shutil.which(ffmpeg) or os.path.exists(ffmpeg))
    except Exception as exc:  # the wheel is missing its binary
        ffmpeg, ffmpeg_ok = str(exc), False
    cuda = None
    if _version("torch"):
        import torch

        cuda = {"available": torch.cuda.is_available(),
                "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    missing = [f"{stage}: {info.get('problem')}" for stage, info in stages.items() if not info.get("ok")]
    if not ffmpeg_ok:
        missing.append(f"ffmpeg: {ffmpeg}")
    return {
        "stages": stages,
        "ffmpeg": ffmpeg,
        "cuda": cuda,
        "packages": {p: _version(p) for p in PACKAGES},
        "state_dir": str(state_dir()),
        "artifact_root": str(artifacts_root()),
        "missing": missing,
        "ok": not missing,
    }
