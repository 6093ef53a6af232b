"""Measurements of finished media for the quality checks: what a clip's frames, a track's
samples and a mix's loudness really are, read back from the files with the project's ffmpeg.

One ffmpeg decode per clip gives its frame count, its first and last frames and its black
and frozen stretches (ffmpeg's ``blackdetect`` and ``freezedetect``); audio is read as
samples and compared in numpy; loudness is EBU R128 as ffmpeg's ``ebur128`` and ``loudnorm``
measure it.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sparkle_motion_dagster.media.ffmpeg import FfmpegError, ffmpeg_exe, run_ffmpeg

# blackdetect: a pixel is black below 10 % luma; a picture is black when 98 % of its pixels are.
BLACK_PIXEL_THRESHOLD = 0.10
# freezedetect: frames whose mean difference stays under -50 dB count as one frozen picture.
FREEZE_NOISE_DB = -50


@dataclass
class ClipReading:
    """What one decode of a clip found."""
    frames: int
    width: int
    height: int
    fps: float | None
    first: np.ndarray | None
    """The first frame, as luma at the clip's size (float32, 0..255)."""
    last: np.ndarray | None
    black: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) seconds of each black stretch."""
    frozen: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) seconds of each stretch of one unchanging picture."""


_BLACK = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)")
_FREEZE_START = re.compile(r"freeze_start:\s*([\d.]+)")
_FREEZE_END = re.compile(r"freeze_end:\s*([\d.]+)")


def read_clip(path: Path) -> ClipReading:
    """Decode every frame of the clip's first video stream once: frame count, first and last
    frames (as luma), and black and frozen stretches. Raises :class:`FfmpegError` when the
    clip does not decode."""
    from sparkle_motion_dagster.media.ffmpeg import probe

    info = probe(path)
    width, height = info["width"], info["height"]
    if not info["video_codec"] or not width or not height:
        raise FfmpegError(f"{path.name}: no decodable video stream (Invalid data found when processing input)")
    filters = (f"blackdetect=d=0:pix_th={BLACK_PIXEL_THRESHOLD},"
               f"freezedetect=n={FREEZE_NOISE_DB}dB:d=0,format=gray")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "info", "-i", str(path), "-map", "0:v:0",
           "-vf", filters, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    result = subprocess.run(cmd, capture_output=True)
    log = result.stderr.decode(errors="replace")
    if result.returncode != 0 or "Invalid data found" in log or "error while decoding" in log.lower():
        tail = "\n".join(log.strip().splitlines()[-4:])
        raise FfmpegError(f"decoding {path.name} failed ({result.returncode}): {tail}")
    size = width * height
    frames = len(result.stdout) // size
    pixels = np.frombuffer(result.stdout, np.uint8)
    first = pixels[:size].reshape(height, width).astype(np.float32) if frames else None
    last = pixels[(frames - 1) * size:frames * size].reshape(height, width).astype(np.float32) if frames else None
    duration = frames / info["fps"] if info["fps"] else 0.0
    black = [(float(a), float(b)) for a, b in _BLACK.findall(log)]
    starts = [float(s) for s in _FREEZE_START.findall(log)]
    ends = [float(e) for e in _FREEZE_END.findall(log)]
    frozen = [(start, ends[i] if i < len(ends) else duration) for i, start in enumerate(starts)]
    return ClipReading(frames=frames, width=width, height=height, fps=info["fps"], first=first, last=last,
                       black=black, frozen=frozen)


def image_luma(path: Path, width: int, height: int) -> np.ndarray:
    """An image as luma (BT.601, 0..255) resized to ``width`` x ``height``."""
    with Image.open(path) as image:
        gray = image.convert("L").resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(gray, dtype=np.float32)


def _box(values: np.ndarray, size: int) -> np.ndarray:
    """The mean over each ``size`` x ``size`` window (valid part only), by summed-area table."""
    table = np.pad(values, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]) / size ** 2


def ssim(a: np.ndarray, b: np.ndarray, *, window: int = 8) -> float:
    """Structural similarity (Wang et al. 2004, uniform windows) of two luma images of one size, in -1..1."""
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of one size, got {a.shape} and {b.shape}")
    window = max(2, min(window, *a.shape))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _box(a, window), _box(b, window)
    var_a = _box(a * a, window) - mu_a ** 2
    var_b = _box(b * b, window) - mu_b ** 2
    cov = _box(a * b, window) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(score.mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two luma images (99 for identical ones)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else round(10 * np.log10(255.0 ** 2 / mse), 3)


# ---------------------------------------------------------------------- audio


def frame_dbfs(samples: np.ndarray, sample_rate: int, *, window_s: float = 0.02) -> np.ndarray:
    """The RMS level (dBFS) of each ``window_s`` window of int16 samples."""
    step = max(1, int(round(sample_rate * window_s)))
    count = len(samples) // step
    if count == 0:
        return np.zeros(0)
    blocks = samples[:count * step].astype(np.float64).reshape(count, step) / 32768.0
    rms = np.sqrt(np.mean(blocks ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-9))


def decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """The first audio track as mono int16 samples at ``sample_rate``."""
    out = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", str(sample_rate), "-"])
    return np.frombuffer(out.stdout, np.int16)


def best_lag(reference: np.ndarray, candidate: np.ndarray, sample_rate: int, *,
             max_lag_s: float = 1.0) -> tuple[float, float]:
    """Where ``candidate`` best lines up with ``reference`` (seconds; positive: it comes late) and
    how alike they are there (normalised correlation, -1..1), by FFT cross-correlation."""
    a = reference.astype(np.float64)
    b = candidate.astype(np.float64)
    length = min(len(a), len(b))
    if length == 0:
        return 0.0, 0.0
    a, b = a[:length] - a[:length].mean(), b[:length] - b[:length].mean()
    size = 1 << int(np.ceil(np.log2(2 * length)))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    reach = min(length - 1, int(max_lag_s * sample_rate))
    lags = np.concatenate([np.arange(0, reach + 1), np.arange(-reach, 0)])
    values = np.concatenate([corr[:reach + 1], corr[size - reach:]]) if reach else corr[:1]
    best = int(np.argmax(values))
    norm = float(np.sqrt(np.sum(a * a) * np.sum(b * b))) or 1.0
    return lags[best] / sample_rate, float(values[best] / norm)


# ---------------------------------------------------------------------- loudness (EBU R128)


_INTEGRATED = re.compile(r"I:\s+(-?[\d.]+|-inf) LUFS")
_TRUE_PEAK = re.compile(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS")


def loudness(path: Path) -> dict[str, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of the first audio track, by ffmpeg's ``ebur128``."""
    result = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"])
    log = result.stderr.decode(errors="replace")
    summary = log[log.rfind("Summary:"):]
    integrated, peak = _INTEGRATED.search(summary), _TRUE_PEAK.search(summary)
    if not integrated or not peak:
        raise FfmpegError(f"ebur128 printed no summary for {path.name}")
    as_float = lambda text: float("-inf") if text == "-inf" else float(text)  # noqa: E731
    return {"integrated_lufs": as_float(integrated.group(1)), "true_peak_dbtp": as_float(peak.group(1))}


def loudnorm_two_pass(source: Path, out_path: Path, *, target_lufs: float, true_peak_db: float = -1.0,
                      lra: float = 11.0, sample_rate: int) -> dict:
    """Normalise a WAV to ``target_lufs`` integrated loudness with a true peak at most ``true_peak_db``,
    by ffmpeg's two-pass ``loudnorm`` (measure, then apply with the measurements, linear where the
    peak allows). Returns both passes' figures."""
    base = f"loudnorm=I={target_lufs}:TP={true_peak_db}:LRA={lra}"
    first = run_ffmpeg(["-i", str(source), "-af", f"{base}:print_format=json", "-f", "null", "-"])
    measured = _loudnorm_json(first.stderr.decode(errors="replace"))
    second_filter = (f"{base}:measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
                     f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
                     f":offset={measured['target_offset']}:linear=true:print_format=json")
    second = run_ffmpeg(["-i", str(source), "-af", second_filter, "-ar", str(sample_rate), "-c:a", "pcm_s16le",
                         "-f", "wav", str(out_path)])
    applied = _loudnorm_json(second.stderr.decode(errors="replace"))
    return {"target_lufs": target_lufs, "true_peak_limit_dbtp": true_peak_db, "lra": lra,
            "input_lufs": float(measured["input_i"]), "input_true_peak_dbtp": float(measured["input_tp"]),
            "output_lufs": float(applied["output_i"]), "output_true_peak_dbtp": float(applied["output_tp"]),
            "normalization_type": applied.get("normalization_type", "")}


def _loudnorm_json(log: str) -> dict:
    start = log.rfind("{")
    end = log.rfind("}")
    if start < 0 or end < start:
        raise FfmpegError("loudnorm printed no measurements")
    return json.loads(log[start:end + 1])
