"""The dialogue stitcher.

The stitcher places every line at its planned absolute start on one track whose
length is the film's runtime to the sample.

Overlong speech: a line may run past its own slot into the silence after it,
because cutting words is worse than a late pause. Where it would reach the next
line's start or the end of the film (its *window*), it is first sped up with a
pitch-preserving time stretch by the smallest factor that fits, up to the
policy's ``max_tempo`` (see ``speech_fit.py``); beyond that, ``trim`` speeds it up
by the limit and cuts the rest with a short fade, and ``fail`` refuses the line.
Everything done is recorded per line (tempo, padding, overrun, trim).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sparkle_motion_dagster.film.speech_fit import FitPolicy, fit_speech, needed_tempo, overrun_failure
from sparkle_motion_dagster.film.timeline import seconds_to_samples
from sparkle_motion_dagster.media.tempo import stretch as atempo_stretch

FADE_OUT_SEC = 0.015

# (samples, sample_rate, tempo, length) -> exactly ``length`` samples, spoken ``tempo`` times faster
Stretch = Callable[[np.ndarray, int, float, int], np.ndarray]


@dataclass(frozen=True)
class LineAudio:
    line_id: str
    start_sec: float
    slot_sec: float
    samples: np.ndarray  # int16 mono at the stitch sample rate
    field: str = ""  # the line's place in the plan, e.g. "dialogue_timeline[3]", for errors


@dataclass(frozen=True)
class PlacedLine:
    line_id: str
    start_time_actual_s: float
    end_time_actual_s: float
    duration_audio_raw_s: float
    duration_audio_fitted_s: float
    tempo: float
    timeline_padding_s: float
    timeline_overrun_s: float
    timeline_trimmed_s: float
    overrun_policy: str

    def as_dict(self) -> dict[str, float | str]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def stitch(lines: list[LineAudio], *, runtime_sec: float, sample_rate: int, policy: FitPolicy = FitPolicy(),
           stretch: Stretch = atempo_stretch) -> tuple[np.ndarray, list[PlacedLine]]:
    """Lay the lines on one silent track of exactly ``runtime_sec``, fitting overlong speech
    to its window (see the module docstring). Under the ``fail`` policy, a line that does not
    fit even at ``max_tempo`` raises :class:`SpeechOverrunError` naming every such line."""
    total = seconds_to_samples(runtime_sec, sample_rate)
    track = np.zeros(total, dtype=np.int16)
    ordered = sorted(lines, key=lambda line: line.start_sec)
    placed: list[PlacedLine] = []
    refused: list[tuple[str, str]] = []
    for index, line in enumerate(ordered):
        start = seconds_to_samples(line.start_sec, sample_rate)
        slot_end = min(start + seconds_to_samples(line.slot_sec, sample_rate), total)
        hard_end = seconds_to_samples(ordered[index + 1].start_sec, sample_rate) if index + 1 < len(ordered) else total
        window = max(min(hard_end, total) - start, 0)
        raw = line.samples.astype(np.int16, copy=False)
        fit = fit_speech(len(raw), window, policy)
        if fit.outcome == "fail":
            refused.append((line.field or line.line_id,
                            f"{len(raw) / sample_rate:.2f} s of speech in a {window / sample_rate:.2f} s window needs "
                            f"tempo {needed_tempo(len(raw), window):.2f}, over the limit of {policy.max_tempo:g}"))
            continue
        if fit.tempo > 1.0:
            fitted_length = window if fit.outcome == "tempo" else int(round(len(raw) / fit.tempo))
            fitted = stretch(raw, sample_rate, fit.tempo, fitted_length)
        else:
            fitted = raw
        keep = min(len(fitted), window)
        clip = fitted[:keep].astype(np.int16, copy=True)
        if keep < len(fitted):
            fade = min(keep, int(FADE_OUT_SEC * sample_rate))
            if fade:
                clip[-fade:] = (clip[-fade:] * np.linspace(1.0, 0.0, fade)).astype(np.int16)
        track[start:start + keep] = clip
        end = start + keep
        placed.append(
            PlacedLine(
                line_id=line.line_id,
                start_time_actual_s=start / sample_rate,
                end_time_actual_s=end / sample_rate,
                duration_audio_raw_s=len(raw) / sample_rate,
                duration_audio_fitted_s=len(fitted) / sample_rate,
                tempo=round(fit.tempo, 6),
                timeline_padding_s=max(slot_end - end, 0) / sample_rate,
                timeline_overrun_s=max(end - slot_end, 0) / sample_rate,
                timeline_trimmed_s=(len(fitted) - keep) / sample_rate,
                overrun_policy=policy.overrun,
            )
        )
    if refused:
        raise overrun_failure(refused)
    return track, placed
