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

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from functools import cache
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.resources.settings import SettingProblem, SettingsError, env_values
from sparkle_motion_dagster.resources.speech import SpeechEngine
from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource


@cache
def adapter_class(path: str) -> type:
    """The class a stage row names as ``module:Class`` under ``sparkle_motion_dagster.resources``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(f"sparkle_motion_dagster.resources.{module}"), name)


def _rows() -> dict[str, stages.Stage]:
    """Resource key -> the row that names its adapters (a stage that shares another's resource,
    as character_refs shares base_images' keyframe renderer, names none)."""
    return {row.resource: row for row in stages.with_resources() if row.embedded}


def adapter_classes() -> dict[type, str]:
    """The real adapter classes the environment can configure, and the resource key of each."""
    return {adapter_class(path): key for key, row in _rows().items() for path in row.adapters}


def embedded_resources() -> dict[str, dg.ConfigurableResource]:
    """The weight-free defaults that run anywhere, by resource key (from the stage table)."""
    return {"artifact_store": ArtifactStoreResource(),
            **{key: adapter_class(row.embedded)() for key, row in _rows().items()}}


def adapter_from_env(key: str, environ: Mapping[str, str] | None = None) -> Any:
    """The real adapter of a resource key the environment asks for, or None for the embedded default.
    Its stage's adapters are tried in table order and the first whose switch variable is set wins;
    a bad value in any of them raises one :class:`SettingsError` naming them all."""
    problems: list[SettingProblem] = []
    for path in _rows()[key].adapters:
        try:
            chosen = adapter_class(path).from_env(environ)
        except SettingsError as error:
            problems += error.problems
            continue
        if chosen is not None and not problems:
            return chosen
    if problems:
        raise SettingsError(problems)
    return None


def speech_from_env(environ: Mapping[str, str] | None = None) -> SpeechEngine | None:
    """The neural engine the environment asks for, or None for the embedded espeak-ng.

    ``TTS_CHATTERBOX_PYTHON`` (with ``TTS_CHATTERBOX_MODEL``, default the
    ``ResembleAI/chatterbox`` weights in the Hugging Face cache) selects
    Chatterbox through its worker; else ``TTS_PIPER_VOICE`` selects Piper; else ``TTS_VITS_MODEL``
    selects VITS. Setting
    ``TTS_CHATTERBOX_MODEL`` without ``TTS_CHATTERBOX_PYTHON`` is an error (the
    pipeline's environment cannot import chatterbox-tts).
    """
    return adapter_from_env("speech", environ)


def adapters_from_env(environ: Mapping[str, str] | None = None
                      ) -> tuple[dict[str, dg.ConfigurableResource], dict[str, list[SettingProblem]]]:
    """The real adapters the environment (``os.environ`` when None) asks for, by resource key, and
    the problems of those it asks for with bad values (by resource key too). Never raises for a
    bad value: every adapter is read, and every problem of each is kept."""
    adapters: dict[str, dg.ConfigurableResource] = {}
    problems: dict[str, list[SettingProblem]] = {}
    for key in _rows():
        try:
            adapter = adapter_from_env(key, environ)
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


def embedded_why(key: str) -> str:
    """Why the embedded default of a resource key runs, for the doctor: the switch variables left
    unset, and what the default is."""
    row = _rows()[key]
    switches = [adapter_class(path).variable(adapter_class(path).switch) for path in row.adapters]
    if not switches:
        return row.embedded_why
    unset = f"{switches[0]} is not set" if len(switches) == 1 else f"{' and '.join(switches)} are not set"
    return f"{unset}: {row.embedded_why}"


def stage_entry(key: str, adapter: Any = None, problems: list[SettingProblem] | None = None, *,
                probe: bool = True) -> dict[str, Any]:
    """The doctor's entry for one resource key: its adapter's own description, the embedded default's,
    or (with ``problems``) the adapter the environment asks for with settings that cannot work."""
    chosen: Any = embedded_resources()[key]
    if problems:
        chosen = {cls.__name__: cls for cls in adapter_classes()}.get(problems[0].resource, chosen)
        entry = {"backend": chosen.backend, "ok": False, "why": f"{problems[0].resource} settings are invalid",
                 "problem": "\n".join(map(str, problems))}
    elif adapter is not None:
        chosen, entry = adapter, adapter.describe(probe=probe)
        if probe:
            entry.update(_memory_plan_entry(adapter))
    else:
        entry = {"backend": chosen.backend, "ok": True, "device": "cpu", "why": embedded_why(key)}
    if key == "clips":  # the model ids a plan may declare
        entry["serves"] = list(chosen.model_ids)
    if key == "speech" and chosen.backend == EspeakSpeech.backend:
        entry["visemes"] = "espeak-ng phoneme events"
        try:
            importlib.metadata.version("espeakng-loader")
        except importlib.metadata.PackageNotFoundError:
            entry.update(ok=False, problem="espeakng-loader is not installed")
    return entry


def _memory_plan_entry(adapter: Any) -> dict[str, Any]:
    """The doctor's ``memory_plan`` of a GPU adapter (where its largest generation goes on this
    machine's card), or nothing when it has none or its settings do not resolve (``describe`` says why)."""
    from sparkle_motion_dagster.resources.memory_plan import doctor_plan

    try:
        runtime = adapter.runtime()
    except Exception:  # noqa: BLE001 - the adapter's own entry already carries the problem
        return {}
    plan = doctor_plan(adapter, runtime)
    return {} if plan is None else {"memory_plan": plan}


def unused_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables of adapters whose switch variable is unset: set, but nothing reads them."""
    env = os.environ if environ is None else environ
    unused = []
    for cls in adapter_classes():
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
