"""Pitch-preserving time stretch of speech, with ffmpeg's ``atempo`` filter.

``atempo`` (WSOLA: overlapping windows of the waveform re-spaced in time, each
aligned to its neighbour) speeds speech up without raising its pitch. It is in
every ffmpeg build, needs no extra library, and is deterministic: the same
samples and factor always give the same output, so a resumed or regenerated
film stitches to the same samples.

The filter's output is the input's length divided by the factor to within a few
milliseconds (its analysis window at the ends); :func:`stretch` pads or cuts
those last few milliseconds so the result has exactly the length asked for.
"""

from __future__ import annotations

import numpy as np

from sparkle_motion_dagster.media.ffmpeg import run_ffmpeg

MIN_TEMPO, MAX_TEMPO = 1.0, 2.0
EDGE_FADE_SEC = 0.005  # a cut of the filter's last few milliseconds ends on silence, not a click


def stretch(samples: np.ndarray, sample_rate: int, tempo: float, length: int) -> np.ndarray:
    """Mono int16 ``samples`` spoken ``tempo`` times faster, exactly ``length`` samples long."""
    if not MIN_TEMPO <= tempo <= MAX_TEMPO:
        raise ValueError(f"tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g}, got {tempo}")
    pcm = np.ascontiguousarray(samples, dtype=np.int16)
    if len(pcm) == 0 or length <= 0:
        return np.zeros(max(length, 0), dtype=np.int16)
    raw = ["-f", "s16le", "-ar", str(sample_rate), "-ac", "1"]
    result = run_ffmpeg(["-loglevel", "error", *raw, "-i", "pipe:0", "-af", f"atempo={tempo:.9f}",
                         "-fflags", "+bitexact", *raw, "pipe:1"], stdin=pcm.tobytes())
    out = np.frombuffer(result.stdout, dtype=np.int16).copy()
    if len(out) > length:
        out = out[:length]
        fade = min(length, int(EDGE_FADE_SEC * sample_rate))
        if fade:
            out[-fade:] = (out[-fade:] * np.linspace(1.0, 0.0, fade)).astype(np.int16)
        return out
    return out if len(out) == length else np.pad(out, (0, length - len(out)))
