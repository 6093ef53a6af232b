"""Measurements of finished media for the quality checks: what a clip's frames, a track's
samples and a mix's loudness really are, read back from the files with the project's ffmpeg.

One ffmpeg decode per clip gives its frame count, its first and last frames and its black
and frozen stretches (ffmpeg's ``blackdetect`` and ``freezedetect``); audio is read as
samples and compared in numpy; loudness is EBU R128 as ffmpeg's ``ebur128`` and ``loudnorm``
measure it.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sparkle_motion_dagster.media.ffmpeg import FfmpegError, ffmpeg_exe, run_ffmpeg

# blackdetect: a pixel is black below 10 % luma; a picture is black when 98 % of its pixels are.
BLACK_PIXEL_THRESHOLD = 0.10
# freezedetect: frames whose mean difference stays under -50 dB count as one frozen picture.
FREEZE_NOISE_DB = -50
# Clips are judged at most this wide (area-averaged): enough for black, freeze and keyframe likeness,
# and a fraction of the cost of filtering full-size frames.
ANALYSIS_WIDTH = 256


@dataclass
class ClipReading:
    """What one decode of a clip found."""
    frames: int
    width: int
    height: int
    fps: float | None
    first: np.ndarray | None
    """The first frame, as luma (float32, 0..255) at the analysis size (``width`` x ``height``)."""
    last: np.ndarray | None
    source_width: int = 0
    source_height: int = 0
    """The clip's own size (``width`` x ``height`` is the analysis size)."""
    black: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) seconds of each black stretch."""
    frozen: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) seconds of each stretch of one unchanging picture."""
    decode_errors: list[str] = field(default_factory=list)
    """What the decoder reported at error level (concealed damage included); empty for a clean decode."""


_BLACK = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)")
_FREEZE_START = re.compile(r"freeze_start:\s*([\d.]+)")
_FREEZE_END = re.compile(r"freeze_end:\s*([\d.]+)")


def read_clip(path: Path) -> ClipReading:
    """Decode every frame of the clip's first video stream once: frame count, first and last
    frames (as luma), and black and frozen stretches. Raises :class:`FfmpegError` when the
    clip does not decode."""
    from sparkle_motion_dagster.media.ffmpeg import probe

    info = probe(path)
    if not info["video_codec"] or not info["width"] or not info["height"]:
        raise FfmpegError(f"{path.name}: no decodable video stream (Invalid data found when processing input)")
    width, height = analysis_size(info["width"], info["height"])
    filters = (f"scale={width}:{height}:flags=bilinear,format=gray,blackdetect=d=0:pix_th={BLACK_PIXEL_THRESHOLD},"
               f"freezedetect=n={FREEZE_NOISE_DB}dB:d=0")
    # The deblocking filter is skipped: a quarter of the decode, and invisible at the analysis size.
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "level+info", "-threads", "1", "-skip_loop_filter", "all",
           "-flags2", "fast", "-i", str(path), "-map", "0:v:0",
           "-vf", filters, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    size = width * height
    first = last = None
    frames = 0
    with tempfile.TemporaryFile() as log_file:  # ffmpeg's log, read once it has finished
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file)
        try:
            while chunk := process.stdout.read(size):  # frame by frame: only the first and the last are kept
                if len(chunk) < size:
                    break
                if first is None:
                    first = chunk
                last = chunk
                frames += 1
        finally:
            process.stdout.close()
            process.wait()
        log_file.seek(0)
        log = log_file.read().decode(errors="replace")
    if process.returncode != 0 or "Invalid data found" in log or "error while decoding" in log.lower():
        tail = "\n".join(log.strip().splitlines()[-4:])
        raise FfmpegError(f"decoding {path.name} failed ({process.returncode}): {tail}")
    first = np.frombuffer(first, np.uint8).reshape(height, width).astype(np.float32) if first else None
    last = np.frombuffer(last, np.uint8).reshape(height, width).astype(np.float32) if last else None
    duration = frames / info["fps"] if info["fps"] else 0.0
    black = [(float(a), float(b)) for a, b in _BLACK.findall(log)]
    starts = [float(s) for s in _FREEZE_START.findall(log)]
    ends = [float(e) for e in _FREEZE_END.findall(log)]
    frozen = [(start, ends[i] if i < len(ends) else duration) for i, start in enumerate(starts)]
    errors = [line for line in log.splitlines() if "[error]" in line or "[fatal]" in line]
    return ClipReading(frames=frames, width=width, height=height, fps=info["fps"], first=first, last=last,
                       source_width=info["width"], source_height=info["height"], black=black, frozen=frozen,
                       decode_errors=errors)


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """The size a clip is judged at: its own, or scaled to :data:`ANALYSIS_WIDTH` wide (even sides)."""
    if width <= ANALYSIS_WIDTH:
        return width, height
    return ANALYSIS_WIDTH, max(2, int(round(height * ANALYSIS_WIDTH / width / 2)) * 2)


_FRAME_COUNT = re.compile(r"frame=\s*(\d+)")


def count_packets(path: Path) -> int:
    """The video frames a file holds, counted from its packets without decoding (a stream copy to nowhere)."""
    result = run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"])
    counts = _FRAME_COUNT.findall(result.stderr.decode(errors="replace"))
    if not counts:
        raise FfmpegError(f"{path.name}: ffmpeg reported no frame count")
    return int(counts[-1])


def keyframes_decode(path: Path) -> int:
    """Decode only the keyframes of the first video stream (every shot starts on one); returns how many
    decoded. Raises :class:`FfmpegError` when the stream is damaged."""
    result = run_ffmpeg(["-skip_frame", "nokey", "-threads", "1", "-i", str(path), "-map", "0:v:0",
                         "-fps_mode", "passthrough", "-f", "null", "-"])
    log = result.stderr.decode(errors="replace")
    if "error while decoding" in log.lower() or "Invalid data found" in log:
        raise FfmpegError(f"decoding {path.name} failed: {log.strip().splitlines()[-1]}")
    counts = _FRAME_COUNT.findall(log)
    return int(counts[-1]) if counts else 0


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


def _fast_length(n: int) -> int:
    """The smallest length of at least ``n`` whose only prime factors are 2, 3 and 5 (fast to transform)."""
    best = 1 << max(0, (n - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            two = three
            while two < n:
                two *= 2
            best = min(best, two)
            three *= 3
        five *= 5
    return best


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
    reach = min(length - 1, int(max_lag_s * sample_rate))
    # Only lags up to ``reach`` are read, so padding by ``reach`` keeps them free of wrap-around: half
    # the transform of padding to twice the length.
    size = _fast_length(length + reach)
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.concatenate([np.arange(0, reach + 1), np.arange(-reach, 0)])
    values = np.concatenate([corr[:reach + 1], corr[size - reach:]]) if reach else corr[:1]
    best = int(np.argmax(values))
    norm = float(np.sqrt(np.sum(a * a) * np.sum(b * b))) or 1.0
    return lags[best] / sample_rate, float(values[best] / norm)


# ---------------------------------------------------------------------- loudness (EBU R128)


_SUMMARY = {
    "integrated_lufs": re.compile(r"I:\s+(-?[\d.]+|-inf) LUFS"),
    "threshold_lufs": re.compile(r"Threshold:\s+(-?[\d.]+|-inf) LUFS"),
    "lra_lu": re.compile(r"LRA:\s+(-?[\d.]+|-inf) LU"),
    "true_peak_dbtp": re.compile(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS"),
}


def loudness(path: Path, *, true_peak: bool = True) -> dict[str, float]:
    """EBU R128 figures of the first audio track by ffmpeg's ``ebur128``: integrated loudness (LUFS), its
    gating threshold (LUFS), loudness range (LU) and, with ``true_peak``, the true peak (dBTP: the
    costly part, as it oversamples four times)."""
    measure = "ebur128=peak=true" if true_peak else "ebur128"
    result = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-af", measure, "-f", "null", "-"])
    return _ebur128_summary(result, path.name, true_peak=true_peak)


def _ebur128_summary(result, name: str, *, true_peak: bool) -> dict[str, float]:
    """The figures of the summary ``ebur128`` printed at the end of an ffmpeg run."""
    log = result.stderr.decode(errors="replace")
    summary = log[log.rfind("Summary:"):]
    figures = {}
    for figure, pattern in _SUMMARY.items():
        if figure == "true_peak_dbtp" and not true_peak:
            continue
        match = pattern.search(summary)
        if not match:
            raise FfmpegError(f"ebur128 printed no {figure} for {name}")
        figures[figure] = float("-inf") if match.group(1) == "-inf" else float(match.group(1))
    return figures


def normalise_loudness(source: Path, out_path: Path, *, target_lufs: float, true_peak_db: float = -1.0,
                       sample_rate: int, rounds: int = 3, tolerance_lu: float = 0.2) -> dict:
    """A WAV at ``target_lufs`` integrated loudness (EBU R128) with its peaks held under ``true_peak_db``:
    measure (``ebur128``), apply the gain that reaches the target through a look-ahead peak limiter
    (``alimiter``) while measuring what comes out (one ffmpeg run writes and measures), and correct the
    gain by the shortfall the limiter caused, up to ``rounds`` times, until the result is within
    ``tolerance_lu``. A linear gain wherever the peaks allow (the limiter then does nothing). Returns
    what was measured before and after.

    (ffmpeg's two-pass ``loudnorm`` in its dynamic mode, which speech with long silences needs, landed
    0.6 to 1.0 LU off the target on the samples, and resamples to 192 kHz in each pass.)"""
    measured = loudness(source, true_peak=False)
    if not np.isfinite(measured["integrated_lufs"]):  # silence: nothing to normalise
        run_ffmpeg(["-i", str(source), "-ar", str(sample_rate), "-c:a", "pcm_s16le", "-f", "wav", str(out_path)])
        return {"target_lufs": target_lufs, "true_peak_limit_dbtp": true_peak_db, "input_lufs": None,
                "output_lufs": None, "gain_db": 0.0, "rounds": 0}
    limit = 10 ** (true_peak_db / 20)
    gain = target_lufs - measured["integrated_lufs"]
    result = measured
    tried: list[tuple[float, float]] = []  # (gain, loudness out)
    for round_number in range(1, rounds + 1):
        # ebur128 measures the samples as written: at the output rate, quantised to 16 bits.
        chain = (f"volume={gain:.3f}dB,alimiter=limit={limit:.4f}:attack=2:release=40:level=0:latency=1,"
                 f"aresample={sample_rate},aformat=sample_fmts=s16,ebur128")
        written = run_ffmpeg(["-i", str(source), "-map", "0:a:0", "-af", chain, "-c:a", "pcm_s16le", "-f", "wav",
                              str(out_path)])
        result = _ebur128_summary(written, out_path.name, true_peak=False)
        shortfall = target_lufs - result["integrated_lufs"]
        if abs(shortfall) <= tolerance_lu:
            break
        tried.append((gain, result["integrated_lufs"]))
        gain += _gain_step(tried, shortfall)
    return {"target_lufs": target_lufs, "true_peak_limit_dbtp": true_peak_db,
            "input_lufs": measured["integrated_lufs"], "output_lufs": result["integrated_lufs"],
            "peak_limit_dbfs": true_peak_db,
            "gain_db": round(gain, 3), "rounds": round_number, "method": "ebur128 gain + alimiter"}


def _gain_step(tried: list[tuple[float, float]], shortfall: float) -> float:
    """How much more gain to try: the shortfall itself the first time; after that the shortfall over
    how much the loudness rose per decibel of gain between the last two tries (the limiter gives
    back less than a decibel per decibel, so adding the bare shortfall would undershoot again)."""
    if len(tried) < 2:
        return shortfall
    (gain_a, out_a), (gain_b, out_b) = tried[-2:]
    slope = (out_b - out_a) / (gain_b - gain_a) if gain_b != gain_a else 1.0
    return shortfall / min(1.0, max(0.25, slope))
