"""The dialogue stitcher.

The stitcher places every line at its planned absolute start on one track whose
length is the film's runtime to the sample.

Overlong speech: a line may run past its own slot into the silence after it,
because cutting words is worse than a late pause; it is trimmed (with a short
fade) only where it would reach the next line's start or the end of the film.
Everything done is recorded per line (padding, overrun, trim).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparkle_motion_dagster.film.timeline import seconds_to_samples

FADE_OUT_SEC = 0.015


@dataclass(frozen=True)
class LineAudio:
    line_id: str
    start_sec: float
    slot_sec: float
    samples: np.ndarray  # int16 mono at the stitch sample rate


@dataclass(frozen=True)
class PlacedLine:
    line_id: str
    start_time_actual_s: float
    end_time_actual_s: float
    duration_audio_raw_s: float
    timeline_padding_s: float
    timeline_overrun_s: float
    timeline_trimmed_s: float

    def as_dict(self) -> dict[str, float | str]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def stitch(lines: list[LineAudio], *, runtime_sec: float, sample_rate: int) -> tuple[np.ndarray, list[PlacedLine]]:
    """Lay the lines on one silent track of exactly ``runtime_sec``."""
    total = seconds_to_samples(runtime_sec, sample_rate)
    track = np.zeros(total, dtype=np.int16)
    ordered = sorted(lines, key=lambda line: line.start_sec)
    placed: list[PlacedLine] = []
    for index, line in enumerate(ordered):
        start = seconds_to_samples(line.start_sec, sample_rate)
        slot_end = min(start + seconds_to_samples(line.slot_sec, sample_rate), total)
        hard_end = seconds_to_samples(ordered[index + 1].start_sec, sample_rate) if index + 1 < len(ordered) else total
        hard_end = min(hard_end, total)
        raw = line.samples
        keep = min(len(raw), max(hard_end - start, 0))
        clip = raw[:keep].astype(np.int16, copy=True)
        if keep < len(raw):
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
                timeline_padding_s=max(slot_end - end, 0) / sample_rate,
                timeline_overrun_s=max(end - slot_end, 0) / sample_rate,
                timeline_trimmed_s=(len(raw) - keep) / sample_rate,
            )
        )
    return track, placed

