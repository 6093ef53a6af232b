"""The resampler that puts speech of any sample rate on the dialogue track.

A tone must come out at the same frequency and level, and what lies above the new
Nyquist frequency must be filtered out, not folded back into the audible band as an
alias. The bound is checked against linear interpolation too, which fails it.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparkle_motion_dagster.media.wav import resample, resampled_length

TONE_HZ = 1000.0
AMPLITUDE = 8000.0
ALIAS_BOUND_DB = -60.0  # an aliased tone must stay this far below an in-band tone of the same level

# (source rate, target rate, a tone above the target's Nyquist frequency and below the source's)
CONVERSIONS = [
    (24000, 22050, 11600.0),  # Chatterbox speech onto an espeak-rate track
    (48000, 16000, 11000.0),
    (44100, 22050, 15000.0),
]


def tone(frequency: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return AMPLITUDE * np.sin(2 * np.pi * frequency * t)


def linear_interpolation(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """What the dialogue track used before: sample the input at the new positions, no filter."""
    count = resampled_length(len(samples), source_rate, target_rate)
    positions = np.linspace(0, len(samples) - 1, count)
    return np.interp(positions, np.arange(len(samples)), samples.astype(np.float32)).astype(np.int16)


def spectrum_db(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and magnitudes in dB (Blackman window, so a tone's leakage stays local)."""
    windowed = samples.astype(np.float64) * np.blackman(len(samples))
    magnitude = np.abs(np.fft.rfft(windowed))
    return np.fft.rfftfreq(len(samples), 1 / rate), 20 * np.log10(magnitude + 1e-9)


def level_db(freqs: np.ndarray, db: np.ndarray, frequency: float, width_hz: float = 15.0) -> float:
    return float(db[np.abs(freqs - frequency) <= width_hz].max())


def alias_below_tone_db(converted: np.ndarray, target_rate: int, high_hz: float) -> float:
    """How far the alias of ``high_hz`` (folded about the target's Nyquist) lies below the in-band tone."""
    freqs, db = spectrum_db(converted, target_rate)
    return level_db(freqs, db, target_rate - high_hz) - level_db(freqs, db, TONE_HZ)


@pytest.mark.parametrize(("source", "target", "high_hz"), CONVERSIONS)
def test_nothing_above_the_new_nyquist_folds_back(source, target, high_hz):
    mixed = tone(TONE_HZ, source) + tone(high_hz, source)
    assert alias_below_tone_db(resample(mixed, source, target), target, high_hz) < ALIAS_BOUND_DB
    # the bound is one that linear interpolation does not meet
    assert alias_below_tone_db(linear_interpolation(mixed, source, target), target, high_hz) > ALIAS_BOUND_DB


@pytest.mark.parametrize(("source", "target", "high_hz"), CONVERSIONS)
def test_a_tone_keeps_its_frequency_and_level(source, target, high_hz):
    converted = resample(tone(TONE_HZ, source), source, target)
    freqs, db = spectrum_db(converted, target)
    assert abs(freqs[np.argmax(db)] - TONE_HZ) <= 1.0  # 1 s of audio: 1 Hz bins
    middle = converted[target // 10:-target // 10].astype(np.float64)  # away from the edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(AMPLITUDE / np.sqrt(2), rel=0.01)


def test_the_same_input_gives_the_same_samples_at_the_planned_length():
    speech_like = np.random.default_rng(3).normal(0, 4000, 22050 * 2 + 7).astype(np.int16)
    first = resample(speech_like, 22050, 24000)
    again = resample(speech_like.copy(), 22050, 24000)
    assert first.dtype == np.int16 and np.array_equal(first, again)
    assert len(first) == resampled_length(len(speech_like), 22050, 24000) == 48008
    assert len(resample(speech_like[:2205], 22050, 44100)) == 4410
    assert len(resample(speech_like[:3], 48000, 16000)) == 1


def test_equal_rates_and_empty_input_pass_through_as_int16():
    samples = np.array([1, -2, 32767, -32768], dtype=np.int16)
    same = resample(samples, 16000, 16000)
    assert same.dtype == np.int16 and np.array_equal(same, samples)
    empty = resample(np.zeros(0, dtype=np.int16), 16000, 22050)
    assert empty.dtype == np.int16 and len(empty) == 0
    with pytest.raises(ValueError, match="positive"):
        resample(samples, 0, 16000)


def test_filter_overshoot_at_full_scale_is_clipped_not_wrapped():
    square = np.where(np.arange(24000) % 240 < 120, 32767, -32768).astype(np.int16)
    converted = resample(square, 24000, 22050)
    plateau_highs = converted[np.arange(len(converted)) % 220 == 55]  # the middle of each high half
    assert plateau_highs.min() > 30000  # an int16 wrap would show as a large negative value
