"""WAV files and the dialogue stitcher.

The stitcher places every line at its planned absolute start on one track whose
length is the film's runtime to the sample.

Overlong speech: a line may run past its own slot into the silence after it,
because cutting words is worse than a late pause; it is trimmed (with a short
fade) only where it would reach the next line's start or the end of the film.
Everything done is recorded per line (padding, overrun, trim).
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparkle_motion_dagster.film.timeline import seconds_to_samples

FADE_OUT_SEC = 0.015


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    pcm = np.asarray(samples)
    if pcm.dtype != np.int16:
        pcm = (np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        if wav.getnchannels() > 1:
            frames = frames.reshape(-1, wav.getnchannels()).mean(axis=1).astype(np.int16)
        return frames, wav.getframerate()


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


def resample_linear(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Good enough to put a differently-sampled line on the shared track."""
    if source_rate == target_rate or len(samples) == 0:
        return samples
    count = int(round(len(samples) * target_rate / source_rate))
    positions = np.linspace(0, len(samples) - 1, count)
    return np.interp(positions, np.arange(len(samples)), samples.astype(np.float32)).astype(np.int16)
