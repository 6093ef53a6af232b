"""The embedded keyframe renderer (``StoryboardKeyframes``): a legible storyboard frame, no model weights.

Composition and palette come from the prompt and the seed, so the same inputs
always give the same pixels; the prompt itself is lettered on the frame so a
viewer can tell which keyframe is which.
"""

from __future__ import annotations

import colorsys
import hashlib
import textwrap
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from sparkle_motion_dagster.resources.keyframes import KeyframeRenderer


def _rng(prompt: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _palette(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    base = rng.random()
    colors = []
    for offset, sat, val in ((0.0, 0.65, 0.22), (0.08, 0.55, 0.55), (0.5, 0.75, 0.95), (0.58, 0.35, 0.85)):
        r, g, b = colorsys.hsv_to_rgb((base + offset + rng.normal(0, 0.03)) % 1.0, sat, val)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render_storyboard(prompt: str, *, seed: int, width: int, height: int, label: str = "") -> Image.Image:
    """One storyboard frame of ``width`` x ``height`` for ``prompt`` and ``seed``, ``label`` in its corner."""
    rng = _rng(prompt, seed)
    dark, mid, accent, light = _palette(rng)

    # Sky-to-ground gradient.
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array(mid, np.float32), np.array(dark, np.float32)
    pixels = np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    draw = ImageDraw.Draw(image, "RGBA")

    # A glow, a horizon and a skyline of blocks: enough shape to read motion against.
    gx, gy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.1, 0.45) * height
    for radius, alpha in ((0.32, 40), (0.2, 70), (0.1, 140)):
        r = radius * height
        draw.ellipse((gx - r, gy - r, gx + r, gy + r), fill=(*accent, alpha))
    horizon = int(rng.uniform(0.55, 0.75) * height)
    x = 0
    while x < width:
        block_w = int(rng.uniform(0.04, 0.12) * width)
        block_h = int(rng.uniform(0.08, 0.4) * height)
        draw.rectangle((x, horizon - block_h, x + block_w, height), fill=(*dark, 235))
        for _ in range(int(rng.integers(0, 6))):
            wx = x + rng.uniform(0.1, 0.8) * block_w
            wy = horizon - rng.uniform(0.1, 0.9) * block_h
            draw.rectangle((wx, wy, wx + width * 0.008, wy + height * 0.012), fill=(*light, 200))
        x += block_w + int(rng.uniform(0, 0.02) * width)
    figures = int(rng.integers(1, 3))
    for index in range(figures):
        fx = width * (0.3 + 0.4 * (index + 0.5) / figures) + rng.normal(0, width * 0.03)
        fh = height * rng.uniform(0.22, 0.32)
        head = fh * 0.16
        body_top = horizon + height * 0.08 - fh
        draw.ellipse((fx - head, body_top - 2 * head, fx + head, body_top), fill=(*light, 230))
        draw.rounded_rectangle((fx - head * 1.4, body_top, fx + head * 1.4, body_top + fh), radius=int(head), fill=(*accent, 210))
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1, width // 640)))

    # Caption panel with the prompt, and a small slate label.
    draw = ImageDraw.Draw(image, "RGBA")
    size = max(12, height // 24)
    font = _font(size)
    wrapped = textwrap.wrap(prompt, width=max(20, int(width / (size * 0.55))))[:3]
    panel_h = int(size * 1.4 * len(wrapped) + size)
    draw.rectangle((0, height - panel_h, width, height), fill=(0, 0, 0, 150))
    for line_no, line in enumerate(wrapped):
        draw.text((size, height - panel_h + size * 0.5 + line_no * size * 1.4), line, font=font, fill=(255, 255, 255, 255))
    if label:
        small = _font(max(10, size * 2 // 3))
        draw.rectangle((0, 0, width, int(size * 1.3)), fill=(0, 0, 0, 110))
        draw.text((size * 0.6, size * 0.2), label, font=small, fill=(255, 255, 255, 230))
    return image


class StoryboardKeyframes(KeyframeRenderer):
    """Embedded keyframes: a storyboard frame drawn from the prompt (not an image model)."""

    backend: ClassVar[str] = "storyboard"
    parallel_images: ClassVar[int] = 2  # Pillow draws, blurs and encodes without holding the GIL

    def render(self, prompt, *, seed, width, height, label=""):
        return render_storyboard(prompt, seed=seed, width=width, height=height, label=label)
