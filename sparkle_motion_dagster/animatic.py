"""The embedded shot renderer: an animatic between two keyframes.

Each frame dissolves from the start keyframe to the end keyframe (hold, then a
smooth crossfade, then hold) while a slow camera pan drifts across a slightly
enlarged copy of both. The start layer drifts away from centre and the end
layer arrives at centre, so a clip's last frame and the next clip's first frame
show the same keyframe from the same framing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
from PIL import Image

OVERSCAN = 1.08
HOLD_FRACTION = 0.2


def _pan_vector(seed: int, motion_prompt: str, max_dx: int, max_dy: int) -> tuple[int, int]:
    digest = hashlib.sha256(f"{seed}\x00{motion_prompt}".encode()).digest()
    angle = int.from_bytes(digest[:4], "little") / 2**32 * 2 * np.pi
    return int(round(np.cos(angle) * max_dx)), int(round(np.sin(angle) * max_dy))


def _weight(index: int, frames: int) -> int:
    """Crossfade weight in 0..256 for frame ``index``."""
    if frames <= 1:
        return 256
    t = index / (frames - 1)
    u = min(max((t - HOLD_FRACTION) / (1 - 2 * HOLD_FRACTION), 0.0), 1.0)
    return int(round(256 * u * u * (3 - 2 * u)))


def animatic_frames(
    start: Image.Image, end: Image.Image, *, frames: int, width: int, height: int, seed: int, motion_prompt: str
) -> Iterator[bytes]:
    """Yield ``frames`` raw RGB24 frames of ``width`` x ``height``."""
    big_w, big_h = int(round(width * OVERSCAN)) // 2 * 2, int(round(height * OVERSCAN)) // 2 * 2
    a = np.asarray(start.convert("RGB").resize((big_w, big_h), Image.Resampling.BICUBIC))
    b = np.asarray(end.convert("RGB").resize((big_w, big_h), Image.Resampling.BICUBIC))
    cx, cy = (big_w - width) // 2, (big_h - height) // 2
    dx, dy = _pan_vector(seed, motion_prompt, cx, cy)
    a16, b16 = a.astype(np.uint16), b.astype(np.uint16)
    for index in range(frames):
        t = index / max(frames - 1, 1)
        ax, ay = cx + int(round(dx * t)), cy + int(round(dy * t))
        bx, by = cx - int(round(dx * (1 - t))), cy - int(round(dy * (1 - t)))
        w = _weight(index, frames)
        if w == 0:
            yield a[ay:ay + height, ax:ax + width].tobytes()
        elif w == 256:
            yield b[by:by + height, bx:bx + width].tobytes()
        else:
            mixed = a16[ay:ay + height, ax:ax + width] * (256 - w)
            mixed += b16[by:by + height, bx:bx + width] * w
            mixed >>= 8
            yield mixed.astype(np.uint8).tobytes()
