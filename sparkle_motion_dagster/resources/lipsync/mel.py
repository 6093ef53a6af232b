"""Wav2Lip's audio front end: 16 kHz speech -> 80-bin mel spectrogram -> one window per video frame.

The official model was trained on these features (its ``hparams.py`` and
``audio.py``, which call librosa), so they are reproduced exactly rather than
approximated, the STFT, mel filters and decibels by ``transformers.audio_utils``
(numpy; the ``models`` extra, which Wav2Lip needs for torch anyway):

- audio resampled to 16 kHz mono (here by ffmpeg, from any file it reads);
- pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]``;
- STFT with an 800-sample periodic Hann window (50 ms), hop 200 (12.5 ms,
  so 80 mel frames per second), 800-point FFT, centred frames with reflect
  padding (``librosa.stft`` as the official code called it);
- magnitude -> 80 mel bands, 55-7600 Hz, Slaney mel scale with Slaney area
  normalisation (``librosa.filters.mel`` defaults);
- ``20 log10(max(1e-5, mel)) - 20`` dB, then mapped from [-100, 0] dB onto
  [-4, 4] and clipped (symmetric normalisation).

Alignment with video: video frame ``f`` at ``fps`` gets the 16 mel frames
starting at ``int(f * 80 / fps)`` (0.2 s of audio starting at the frame's
time), as the official inference script does; near the end of the track the
last 16 mel frames are used. :func:`mel_window_starts` gives those starts and
:func:`mel_window_seconds` the audio span a start stands for, for the
alignment map.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 800
HOP_LENGTH = 200
WIN_LENGTH = 800
NUM_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEP = 16  # mel frames per video-frame window
MEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 80.0
WINDOW_SECONDS = MEL_STEP / MEL_FRAMES_PER_SECOND  # 0.2


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any audio file ffmpeg reads, as mono float32 samples at ``sample_rate`` (its first audio stream)."""
    from sparkle_motion_dagster.media.ffmpeg import run_ffmpeg

    result = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate),
                         "-c:a", "pcm_f32le", "-f", "f32le", "-"])
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)


def preemphasis(wav: np.ndarray, coefficient: float = PREEMPHASIS) -> np.ndarray:
    """``y[0] = x[0]``, ``y[n] = x[n] - k x[n-1]`` (``scipy.signal.lfilter([1, -k], [1], x)``)."""
    wav = np.asarray(wav, dtype=np.float64)
    out = wav.copy()
    out[1:] -= coefficient * wav[:-1]
    return out


@functools.cache
def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = NUM_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """``(n_mels, 1 + n_fft // 2)`` triangular filters on the Slaney mel scale, area-normalised
    (``librosa.filters.mel``'s defaults), from ``transformers.audio_utils.mel_filter_bank``."""
    from transformers.audio_utils import mel_filter_bank

    weights = np.ascontiguousarray(mel_filter_bank(
        num_frequency_bins=1 + n_fft // 2, num_mel_filters=n_mels, min_frequency=fmin, max_frequency=fmax,
        sampling_rate=sample_rate, norm="slaney", mel_scale="slaney").T)
    weights.setflags(write=False)
    return weights


@functools.cache
def _window(n_fft: int, win_length: int) -> np.ndarray:
    """The periodic Hann window of ``win_length``, centred in ``n_fft`` samples (``scipy``'s ``'hann'``)."""
    from transformers.audio_utils import window_function

    window = window_function(win_length, "hann", periodic=True, frame_length=n_fft, center=True)
    window.setflags(write=False)
    return window


def _spectrogram(wav: np.ndarray, n_fft: int, hop_length: int, win_length: int, **mel: object) -> np.ndarray:
    """``transformers.audio_utils.spectrogram`` of ``wav`` with Wav2Lip's framing: centred frames, reflect
    padding (zeros for a clip shorter than half a frame, which reflection cannot pad), magnitudes."""
    from transformers.audio_utils import spectrogram

    wav = np.asarray(wav, dtype=np.float64)
    return spectrogram(wav, _window(n_fft, win_length), frame_length=n_fft, hop_length=hop_length, fft_length=n_fft,
                       power=1.0, center=True, pad_mode="reflect" if len(wav) > n_fft // 2 else "constant",
                       dtype=np.float64, **mel)


def stft_magnitude(wav: np.ndarray, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
                   win_length: int = WIN_LENGTH) -> np.ndarray:
    """``|STFT|`` as ``(1 + n_fft // 2, 1 + len(wav) // hop_length)``: centred frames, reflect padding."""
    return _spectrogram(wav, n_fft, hop_length, win_length)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised mel spectrogram of 16 kHz mono samples: float32 ``(80, 1 + len // 200)`` in [-4, 4].

    ``20 log10(max(1e-5, mel)) - 20`` is ``transformers``' decibel mel spectrogram with a floor of 1e-5
    and a reference of 10; the mapping of [-100, 0] dB onto [-4, 4] is Wav2Lip's own.
    """
    min_level = 10 ** (MIN_LEVEL_DB / 20)  # 1e-5
    db = _spectrogram(preemphasis(wav), N_FFT, HOP_LENGTH, WIN_LENGTH, mel_filters=mel_filterbank().T,
                      mel_floor=min_level, log_mel="dB", reference=10 ** (REF_LEVEL_DB / 20), min_value=min_level)
    normalised = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(normalised, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def audio_melspectrogram(path: str | Path) -> np.ndarray:
    """:func:`melspectrogram` of an audio file (decoded and resampled to 16 kHz mono by ffmpeg)."""
    return melspectrogram(load_audio(path))


def mel_window_starts(frame_indices, fps: float, num_mel_frames: int) -> np.ndarray:
    """The first mel frame of each video frame's window: ``int(f * 80 / fps)``, held at ``T - 16`` at the end."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = np.asarray(list(frame_indices), dtype=np.int64)
    starts = np.floor(frames * (MEL_FRAMES_PER_SECOND / fps) + 1e-9).astype(np.int64)
    return np.clip(starts, 0, max(0, num_mel_frames - MEL_STEP))


def mel_windows(mel: np.ndarray, frame_indices, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(windows (N, 80, 16) float32, starts (N,))`` for the given video frames.

    A spectrogram shorter than one window is padded with silence (-4).
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[0] != NUM_MELS:
        raise ValueError(f"expected a ({NUM_MELS}, T) mel spectrogram, got {mel.shape}")
    if mel.shape[1] < MEL_STEP:
        mel = np.pad(mel, ((0, 0), (0, MEL_STEP - mel.shape[1])), constant_values=-MAX_ABS_VALUE)
    starts = mel_window_starts(frame_indices, fps, mel.shape[1])
    if len(starts) == 0:
        return np.zeros((0, NUM_MELS, MEL_STEP), dtype=np.float32), starts
    index = starts[:, None] + np.arange(MEL_STEP)[None, :]
    return np.ascontiguousarray(mel[:, index].transpose(1, 0, 2)), starts


def mel_window_seconds(start: int) -> tuple[float, float]:
    """The audio span (seconds on the track) a window starting at mel frame ``start`` covers."""
    return round(start / MEL_FRAMES_PER_SECOND, 6), round((start + MEL_STEP) / MEL_FRAMES_PER_SECOND, 6)
