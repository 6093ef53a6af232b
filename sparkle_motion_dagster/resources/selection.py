"""Which adapter each stage uses, chosen from the environment in one place.

With nothing set, every stage runs its embedded default (no weights). A stage
switches to a real model when the variable of its adapter's ``switch`` field is
set: ``SCRIPT_AGENT_MODEL`` (LLM planner), ``TTS_CHATTERBOX_PYTHON`` or
``TTS_PIPER_VOICE`` or ``TTS_VITS_MODEL`` (neural speech; Chatterbox wins, then Piper), ``IMAGES_SDXL_MODEL``,
``VIDEOS_WAN_MODEL``, ``WAV2LIP_CHECKPOINT``. Reading the environment imports
no model library.

:func:`configured_resources` is what the Dagster definitions use: a bad value
fails there, with every bad variable of every adapter named at once.
:func:`adapters_from_env` is the same choice without failing, for the doctor.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from sparkle_motion_dagster.resources.assembly import FfmpegAssembler
from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
from sparkle_motion_dagster.resources.clips.wan import WanClips
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes
from sparkle_motion_dagster.resources.keyframes.storyboard import StoryboardKeyframes
from sparkle_motion_dagster.resources.lipsync.passthrough import PassthroughLipsync
from sparkle_motion_dagster.resources.lipsync.wav2lip import Wav2LipLipsync
from sparkle_motion_dagster.resources.planning.llm import LlmPlanner
from sparkle_motion_dagster.resources.planning.template import TemplatePlanner
from sparkle_motion_dagster.resources.settings import SettingProblem, SettingsError, env_values
from sparkle_motion_dagster.resources.speech import SpeechEngine
from sparkle_motion_dagster.resources.speech.chatterbox import ChatterboxSpeech
from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech
from sparkle_motion_dagster.resources.speech.piper import PiperSpeech
from sparkle_motion_dagster.resources.speech.vits import VitsSpeech
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource


def embedded_resources() -> dict[str, dg.ConfigurableResource]:
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


def speech_from_env(environ: Mapping[str, str] | None = None) -> SpeechEngine | None:
    """The neural engine the environment asks for, or None for the embedded espeak-ng.

    ``TTS_CHATTERBOX_PYTHON`` (with ``TTS_CHATTERBOX_MODEL``, default the
    ``ResembleAI/chatterbox`` weights in the Hugging Face cache) selects
    Chatterbox through its worker; else ``TTS_PIPER_VOICE`` selects Piper; else ``TTS_VITS_MODEL``
    selects VITS. Setting
    ``TTS_CHATTERBOX_MODEL`` without ``TTS_CHATTERBOX_PYTHON`` is an error (the
    pipeline's environment cannot import chatterbox-tts).
    """
    problems: list[SettingProblem] = []
    for engine in (ChatterboxSpeech, PiperSpeech, VitsSpeech):
        try:
            chosen = engine.from_env(environ)
        except SettingsError as error:
            problems += error.problems
            continue
        if chosen is not None and not problems:
            return chosen
    if problems:
        raise SettingsError(problems)
    return None


# resource key -> (the pipeline stage it serves, the reader of its real adapter)
ADAPTERS: dict[str, tuple[str, Callable[[Mapping[str, str] | None], Any]]] = {
    "planner": ("movie_plan", LlmPlanner.from_env),
    "speech": ("dialogue_audio", speech_from_env),
    "keyframes": ("base_images", SdxlKeyframes.from_env),
    "clips": ("video_clips", WanClips.from_env),
    "lipsync": ("video_final", Wav2LipLipsync.from_env),
}


def adapters_from_env(environ: Mapping[str, str] | None = None
                      ) -> tuple[dict[str, dg.ConfigurableResource], dict[str, list[SettingProblem]]]:
    """The real adapters the environment (``os.environ`` when None) asks for, by resource key, and
    the problems of those it asks for with bad values (by resource key too). Never raises for a
    bad value: every adapter is read, and every problem of each is kept."""
    adapters: dict[str, dg.ConfigurableResource] = {}
    problems: dict[str, list[SettingProblem]] = {}
    for key, (_stage, read) in ADAPTERS.items():
        try:
            adapter = read(environ)
        except SettingsError as error:
            problems[key] = list(error.problems)
            continue
        if adapter is not None:
            adapters[key] = adapter
    return adapters, problems


def configured_resources(environ: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The embedded defaults, with real models wherever their environment variables point at one
    (SCRIPT_AGENT_MODEL, TTS_CHATTERBOX_PYTHON / TTS_PIPER_VOICE / TTS_VITS_MODEL, IMAGES_SDXL_MODEL,
    VIDEOS_WAN_MODEL, WAV2LIP_CHECKPOINT). Reading the environment imports no model library;
    bad values raise one :class:`SettingsError` naming every bad variable of every adapter."""
    adapters, problems = adapters_from_env(environ)
    if problems:
        raise SettingsError([problem for found in problems.values() for problem in found])
    return {**embedded_resources(), **adapters}


# resource key -> why the embedded default runs, for the doctor
EMBEDDED_WHY = {
    "planner": "SCRIPT_AGENT_MODEL is not set: embedded deterministic template planner (not a language model)",
    "speech": "TTS_CHATTERBOX_PYTHON, TTS_PIPER_VOICE and TTS_VITS_MODEL are not set: embedded espeak-ng speech (GPL-3)",
    "keyframes": "IMAGES_SDXL_MODEL is not set: embedded storyboard keyframes (not an image model)",
    "clips": "VIDEOS_WAN_MODEL is not set: embedded animatic (plans declaring wan-2.1 need --preview)",
    "lipsync": "WAV2LIP_CHECKPOINT is not set: embedded passthrough (muxes the dialogue, mouths unchanged)",
}
# The adapter classes the environment configures, and the stage of each.
ADAPTER_CLASSES = {LlmPlanner: "planner", ChatterboxSpeech: "speech", PiperSpeech: "speech", VitsSpeech: "speech",
                   SdxlKeyframes: "keyframes", WanClips: "clips", Wav2LipLipsync: "lipsync"}


def stage_entry(key: str, adapter: Any = None, problems: list[SettingProblem] | None = None, *,
                probe: bool = True) -> dict[str, Any]:
    """The doctor's entry for one resource key: its adapter's own description, the embedded default's,
    or (with ``problems``) the adapter the environment asks for with settings that cannot work."""
    chosen: Any = embedded_resources()[key]
    if problems:
        chosen = {cls.__name__: cls for cls in ADAPTER_CLASSES}.get(problems[0].resource, chosen)
        entry = {"backend": chosen.backend, "ok": False, "why": f"{problems[0].resource} settings are invalid",
                 "problem": "\n".join(map(str, problems))}
    elif adapter is not None:
        chosen, entry = adapter, adapter.describe(probe=probe)
    else:
        entry = {"backend": chosen.backend, "ok": True, "device": "cpu", "why": EMBEDDED_WHY[key]}
    if key == "clips":  # the model ids a plan may declare
        entry["serves"] = list(chosen.model_ids)
    if key == "speech" and chosen.backend == EspeakSpeech.backend:
        entry["visemes"] = "espeak-ng phoneme events"
        try:
            importlib.metadata.version("espeakng-loader")
        except importlib.metadata.PackageNotFoundError:
            entry.update(ok=False, problem="espeakng-loader is not installed")
    return entry


def unused_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables of adapters whose switch variable is unset: set, but nothing reads them."""
    env = os.environ if environ is None else environ
    unused = []
    for cls in ADAPTER_CLASSES:
        switch = cls.variable(cls.switch)
        if env.get(switch, "").strip():
            continue
        for name in env_values(cls, env):
            unused.append(f"{cls.variable(name)} is set but {switch} is not: it is not used")
    return unused


def describe(environ: Mapping[str, str] | None = None, *, probe: bool = True) -> dict[str, Any]:
    """What ``sparkle-motion doctor`` reports for the dialogue stage: the engine the environment
    selects, whether it can run, and why. Loads no model; ``probe`` lets Chatterbox's check run
    its Python (a few seconds at most)."""
    try:
        engine = speech_from_env(environ)
    except SettingsError as error:
        return stage_entry("speech", problems=error.problems)
    return stage_entry("speech", engine, probe=probe)
