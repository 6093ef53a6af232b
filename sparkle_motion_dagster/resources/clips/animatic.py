"""The embedded shot renderer (``AnimaticClips``): an animatic between two keyframes.

Each frame dissolves from the start keyframe to the end keyframe (hold, then a
smooth crossfade, then hold) while a slow camera pan drifts across a slightly
enlarged copy of both. The start layer drifts away from centre and the end
layer arrives at centre, so a clip's last frame and the next clip's first frame
show the same keyframe from the same framing. That framing is the keyframe
enlarged by ``OVERSCAN`` and centred, so a clip's first frame loses a sliver at
each edge: storyboard keyframes keep their captions inside a title-safe area
wider than that sliver, so the whole caption shows.

Frames come out as planar YUV 4:2:0, the encoder's own format: the keyframes are
converted once, and every frame after that is a crop and a blend of the planes,
with no per-frame colour conversion in Python or in ffmpeg.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
from PIL import Image

from sparkle_motion_dagster.media.ffmpeg import FrameEncoder
from sparkle_motion_dagster.media.images import open_image
from sparkle_motion_dagster.resources.clips import ClipRenderer

OVERSCAN = 1.08
HOLD_FRACTION = 0.2

# RGB -> limited-range BT.601 Y'CbCr, the conversion ffmpeg applies by default to rgb24
# input, so an animatic clip decodes to the same colours as a clip piped in as RGB.
_BT601 = np.array([
    [65.481, 128.553, 24.966],
    [-37.797, -74.203, 112.0],
    [112.0, -93.786, -18.214],
], dtype=np.float32) / 255.0
_BT601_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planar Y, U, V (uint8) of an even-sized RGB image; chroma is taken from the 2x2 block mean."""
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"YUV 4:2:0 needs even dimensions, got {width}x{height}")
    pixels = rgb.astype(np.float32)
    luma = pixels @ _BT601[0] + _BT601_OFFSET[0]
    # The conversion is linear, so the mean of the block's chroma is the chroma of its mean colour.
    blocks = pixels[0::2, 0::2] + pixels[1::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 1::2]
    chroma = blocks @ (_BT601[1:].T / 4) + _BT601_OFFSET[1:]
    planes = (luma, chroma[..., 0], chroma[..., 1])
    return tuple(np.ascontiguousarray(np.clip(np.rint(p), 0, 255).astype(np.uint8)) for p in planes)


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


def _even(value: float) -> int:
    """Offsets land on even pixels so the half-size chroma planes move with the luma."""
    return int(round(value / 2)) * 2


def _crop(plane: np.ndarray, at: tuple[int, int], shape: tuple[int, int], chroma: bool) -> np.ndarray:
    """The ``shape`` window of ``plane`` whose top-left is ``at`` in luma pixels."""
    x, y = (at[0] // 2, at[1] // 2) if chroma else at
    return plane[y:y + shape[0], x:x + shape[1]]


def animatic_frames(
    start: Image.Image, end: Image.Image, *, frames: int, width: int, height: int, seed: int, motion_prompt: str
) -> Iterator[bytes]:
    """Yield ``frames`` raw yuv420p frames of ``width`` x ``height`` (both even)."""
    if width % 2 or height % 2:
        raise ValueError(f"the animatic renders even sizes only, got {width}x{height}")
    big_w, big_h = int(round(width * OVERSCAN)) // 2 * 2, int(round(height * OVERSCAN)) // 2 * 2
    a = rgb_to_yuv420(np.asarray(start.convert("RGB").resize((big_w, big_h), Image.Resampling.BICUBIC)))
    b = rgb_to_yuv420(np.asarray(end.convert("RGB").resize((big_w, big_h), Image.Resampling.BICUBIC)))
    # The centred crop, rounded down to even pixels: rounding up could pan past the overscan's edge.
    cx, cy = (big_w - width) // 4 * 2, (big_h - height) // 4 * 2
    dx, dy = _pan_vector(seed, motion_prompt, cx, cy)
    frame = np.empty(width * height * 3 // 2, dtype=np.uint8)
    luma_size = width * height
    outputs = (frame[:luma_size].reshape(height, width),
               frame[luma_size:luma_size * 5 // 4].reshape(height // 2, width // 2),
               frame[luma_size * 5 // 4:].reshape(height // 2, width // 2))
    mixes = [np.empty(out.shape, dtype=np.uint16) for out in outputs]
    addends = [np.empty(out.shape, dtype=np.uint16) for out in outputs]
    for index in range(frames):
        t = index / max(frames - 1, 1)
        a_at = (cx + _even(dx * t), cy + _even(dy * t))
        b_at = (cx - _even(dx * (1 - t)), cy - _even(dy * (1 - t)))
        w = _weight(index, frames)
        for plane, out in enumerate(outputs):
            a_crop = _crop(a[plane], a_at, out.shape, plane > 0)
            b_crop = _crop(b[plane], b_at, out.shape, plane > 0)
            if w == 0:
                out[...] = a_crop
            elif w == 256:
                out[...] = b_crop
            else:  # (a * (256 - w) + b * w) >> 8 in 16 bits, without temporaries
                mix, addend = mixes[plane], addends[plane]
                np.multiply(a_crop, np.uint16(256 - w), out=mix)
                np.multiply(b_crop, np.uint16(w), out=addend)
                mix += addend
                mix >>= 8
                out[...] = mix
        yield frame.tobytes()


class AnimaticClips(ClipRenderer):
    """Embedded clips: an animatic (hold, crossfade, slow pan) between the two keyframes.

    Serves model_id ``animatic``. It is not a video model.
    """

    backend: ClassVar[str] = "animatic"
    model_ids: ClassVar[tuple[str, ...]] = ("animatic",)
    # Two encoders at once keep both cores busy through each one's start and final flush
    # (~10% faster on two cores than one after the other).
    parallel_shots: ClassVar[int] = 2

    def render(self, request, out_path):
        start = open_image(request.start_image, what="start keyframe")
        end = open_image(request.end_image, what="end keyframe")
        with FrameEncoder(out_path, width=request.width, height=request.height, fps=request.fps,
                          pix_fmt="yuv420p") as encoder:
            for frame in animatic_frames(
                start, end, frames=request.frames, width=request.width, height=request.height,
                seed=request.seed, motion_prompt=request.motion_prompt,
            ):
                encoder.write(frame)
        return {"frames": encoder.frames_written, "continuity_mode": "crossfade"}
