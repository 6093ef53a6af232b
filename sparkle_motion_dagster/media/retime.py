"""Retiming a generated clip to the film's frame rate: exactly ``count`` frames, ends exact.

A model generates at its own rate (Wan: about 16 fps) over a shot's span; the
film plays at the plan's fps. Output frame ``i`` of ``count`` sits at
``i / (count - 1)`` of the span, which is position ``i * (n - 1) / (count - 1)``
among the ``n`` generated frames: the first and last output frames are the first
and last generated ones, and the clock rules of the film are untouched. What
differs is how a frame between two generated ones is made:

``motion`` (the default)
    Motion-compensated interpolation, ffmpeg's ``minterpolate`` with
    ``mi_mode=mci`` (block motion estimation, overlapped block motion
    compensation): a moving edge is drawn once, where it is at that moment.
    Needs no weights; runs in the ffmpeg the project already uses. Retime
    each clip on its own, never a cut: interpolation across a cut smears it.
``blend``
    The two nearest generated frames mixed by their distance: cheap, but a
    moving edge shows twice, faded (ghosting).

A learned interpolator (RIFE and the like) fits as another :class:`Retimer`:
one function from the generated frames and a count to the output frames.
Dagster- and torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sparkle_motion_dagster.media.ffmpeg import run_ffmpeg

Retimer = Callable[[np.ndarray, int], Iterator[np.ndarray]]
DEFAULT = "motion"


def blend_frames(video: np.ndarray, count: int) -> Iterator[np.ndarray]:
    """``count`` frames spread evenly over ``video`` (first and last exact), linearly blended in between."""
    last = len(video) - 1
    for index in range(count):
        position = index * last / (count - 1) if count > 1 else 0.0
        low = min(int(math.floor(position)), last)
        weight = position - low
        if weight < 1e-6 or low == last:
            yield video[low]
        else:
            mixed = video[low].astype(np.float32) * (1 - weight) + video[low + 1].astype(np.float32) * weight
            yield np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def motion_frames(video: np.ndarray, count: int, *, workers: int | None = None) -> Iterator[np.ndarray]:
    """``count`` frames spread evenly over ``video`` (first and last exact), motion-compensated in between.

    Time is given to ffmpeg in units of the span: ``n - 1`` generated frames per unit in,
    ``count - 1`` frames per unit out, so output frame ``i`` is asked for at exactly ``i / (count - 1)``.
    ``minterpolate`` runs on one core; with ``workers`` above 1 the clip is cut where an output frame
    falls on a generated one (both grids meet there) and the pieces run in parallel. One piece is the
    default until ``bench/retime.py`` shows the cut pays on an idle machine (on a busy 2-core one it
    did not)."""
    n = len(video)
    if count <= 2 or n < 2 or (n - 1) % (count - 1) == 0:
        yield from blend_frames(video, count)  # nothing lies between generated frames
        return
    period = (count - 1) // math.gcd(n - 1, count - 1)  # output frames between two that meet a generated one
    workers = workers or 1
    meeting_points = range(0, count, period)
    pieces = min(workers, len(meeting_points) - 1)
    cuts = [meeting_points[round(k * (len(meeting_points) - 1) / pieces)] for k in range(pieces + 1)]
    step = (n - 1) // math.gcd(n - 1, count - 1)  # generated frames between two meeting points

    def piece(bounds: tuple[int, int]) -> np.ndarray:
        first, last = bounds
        start = first // period * step
        return _minterpolate(video[start: last // period * step + 1], last - first + 1, n - 1, count - 1)

    with ThreadPoolExecutor(max_workers=pieces) as pool:
        made = list(pool.map(piece, zip(cuts, cuts[1:])))
    frames = np.concatenate([made[0]] + [part[1:] for part in made[1:]])  # a cut's frame once
    for index in range(count):
        position = index * (n - 1) / (count - 1)
        if abs(position - round(position)) < 1e-6:
            yield video[round(position)]  # a generated frame is kept as it was made
        else:
            yield frames[index]


def _minterpolate(video: np.ndarray, count: int, rate_in: int, rate_out: int) -> np.ndarray:
    """``count`` frames of ``video`` retimed by ffmpeg from ``rate_in`` to ``rate_out`` frames per unit."""
    height, width = video.shape[1:3]
    padded = np.concatenate([video, video[-1:]])  # the last frame lasts a whole interval, like the others
    result = run_ffmpeg([
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(rate_in), "-i", "pipe:0",
        "-vf", f"minterpolate=fps={rate_out}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1:scd=none",
        "-frames:v", str(count), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ], stdin=np.ascontiguousarray(padded, dtype=np.uint8).tobytes())
    frames = np.frombuffer(result.stdout, dtype=np.uint8)
    made = frames.size // (width * height * 3)
    if made < count:
        raise RuntimeError(f"motion retime: ffmpeg made {made} of {count} frames")
    return frames[: count * width * height * 3].reshape(count, height, width, 3)


RETIMERS: dict[str, Retimer] = {"motion": motion_frames, "blend": blend_frames}


def retime(video: np.ndarray, count: int, method: str = DEFAULT) -> Iterator[np.ndarray]:
    """``count`` frames over ``video`` by ``method`` (``motion`` or ``blend``)."""
    try:
        retimer = RETIMERS[method]
    except KeyError:
        raise ValueError(f"retime method {method!r}: expected one of {', '.join(RETIMERS)}") from None
    return retimer(video, count)
