"""The speech-fit policy, from the environment (see ``film/speech_fit.py`` for what it does),
and each line's speech length before rendering.

=========================  ==============================================================
SPARKLE_SPEECH_MAX_TEMPO   how much faster than spoken a line may be played to fit its
                           window: a number from 1.0 (never) to 2.0 (default 1.25)
SPARKLE_SPEECH_OVERRUN     beyond that limit: ``trim`` (default: speed up by the limit,
                           cut the rest with a fade) or ``fail`` (refuse the line)
=========================  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Literal

from pydantic import BaseModel, ValidationError

from sparkle_motion_dagster.film.plan import MoviePlan
from sparkle_motion_dagster.film.speech_fit import (
    DEFAULT_MAX_TEMPO,
    MAX_TEMPO_LIMIT,
    MAX_TEMPO_VARIABLE,
    OVERRUN_VARIABLE,
    FitPolicy,
    LineSpeech,
    line_windows,
    needed_tempo,
)
from sparkle_motion_dagster.resources.settings import SettingsError, env_field, env_values, problems_from
from sparkle_motion_dagster.resources.speech import SpeechEngine


class SpeechFitSettings(BaseModel):
    """The variables above, checked (a bad value is a :class:`SettingsError` naming its variable)."""

    max_tempo: float = env_field(MAX_TEMPO_VARIABLE, DEFAULT_MAX_TEMPO, ge=1.0, le=MAX_TEMPO_LIMIT)
    overrun: Literal["trim", "fail"] = env_field(OVERRUN_VARIABLE, "trim")


def fit_policy_from_env(environ: Mapping[str, str] | None = None) -> FitPolicy:
    """The policy the environment (``os.environ`` when None) sets; the defaults where it sets nothing."""
    env = os.environ if environ is None else environ
    values = env_values(SpeechFitSettings, env)
    try:
        settings = SpeechFitSettings(**values)
    except ValidationError as error:
        raise SettingsError(problems_from(SpeechFitSettings, error)) from None
    return FitPolicy(max_tempo=settings.max_tempo, overrun=settings.overrun)


def line_speech(plan: MoviePlan, engine: SpeechEngine, fields: dict[str, str] | None = None,
                between: Callable[[], None] | None = None) -> list[LineSpeech]:
    """Every line's speech length before rendering: measured where the engine speaks cheaply
    (espeak-ng), else estimated from its pace. ``between`` is called before each line (a stop
    ends the measuring there: a plan of many long lines takes a while)."""
    lines = []
    for window in line_windows(plan, fields):
        if between is not None:
            between()
        entry = window.entry
        profile = plan.character(entry.character_id).voice_profile
        measured = engine.measure_seconds(entry.text, character_id=entry.character_id, voice_profile=profile)
        if measured is None:
            lines.append(LineSpeech(window, engine.pace(profile).seconds(entry.text), "estimated"))
        else:
            lines.append(LineSpeech(window, measured, "measured"))
    return lines


def refused_lines(lines: list[LineSpeech], policy: FitPolicy, *, estimates: bool) -> list[tuple[str, str]]:
    """(field, why) for each line the ``fail`` policy refuses; estimated lengths count only with ``estimates``."""
    refused = []
    for line in lines:
        if line.fit(policy).outcome == "fail" and (estimates or line.basis == "measured"):
            refused.append((line.window.field,
                            f"{line.speech_s:.2f} s of speech ({line.basis}) in a {line.window.window_s:.2f} s window "
                            f"needs tempo {needed_tempo(line.speech_s, line.window.window_s):.2f}, over the limit of "
                            f"{policy.max_tempo:g}"))
    return refused
