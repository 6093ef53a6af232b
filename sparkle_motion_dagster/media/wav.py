"""Mono 16-bit WAV files and sample-rate conversion.

WAV reading and writing use the standard library's ``wave``; resampling uses
libsoxr (the ``soxr`` package) at its very-high-quality setting: a linear-phase
low-pass filter that keeps the passband flat and removes what lies above the new
Nyquist frequency instead of folding it back as audible aliases.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import soxr

SAMPLE_WIDTH_BYTES = 2  # 16-bit PCM
RESAMPLE_QUALITY = "VHQ"


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A mono 16-bit WAV file: int16 samples as they are, floats in [-1, 1] scaled to int16."""
    pcm = np.asarray(samples)
    if pcm.dtype != np.int16:
        pcm = (np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH_BYTES)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples (channels averaged) and the sample rate of a 16-bit PCM WAV file."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != SAMPLE_WIDTH_BYTES:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        if wav.getnchannels() > 1:
            frames = frames.reshape(-1, wav.getnchannels()).mean(axis=1).astype(np.int16)
        return frames, wav.getframerate()


def wav_duration_s(path: Path) -> float:
    """A WAV file's length in seconds, from its header."""
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def resampled_length(count: int, source_rate: int, target_rate: int) -> int:
    """How many samples ``count`` samples at ``source_rate`` make at ``target_rate``."""
    return int(round(count * target_rate / source_rate))


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Mono PCM (int16 units) converted from ``source_rate`` to ``target_rate`` as int16.

    The result has :func:`resampled_length` samples, so a line keeps its duration to
    the sample. The same input always gives the same samples (libsoxr, one pass, no
    dither: the filtered signal is rounded and clipped to int16).
    """
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {source_rate} -> {target_rate}")
    signal = np.asarray(samples, dtype=np.float64).reshape(-1)
    if source_rate == target_rate or len(signal) == 0:
        return _to_int16(signal)
    converted = soxr.resample(signal, source_rate, target_rate, quality=RESAMPLE_QUALITY)
    length = resampled_length(len(signal), source_rate, target_rate)
    if len(converted) < length:
        converted = np.pad(converted, (0, length - len(converted)))
    return _to_int16(converted[:length])


def _to_int16(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
