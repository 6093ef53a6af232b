"""The embedded keyframe renderer (``StoryboardKeyframes``): a legible storyboard frame, no model weights.

Composition and palette come from the prompt and the seed, so the same inputs
always give the same pixels; the prompt itself is lettered on the frame so a
viewer can tell which keyframe is which.

Characters: a portrait is a figure on a plain ground whose hair, skin and
clothes colours come from the character's description (and seed); a keyframe
draws each of its characters from the portrait it is given (the colours read
back from the portrait's head and body, and the name lettered under the
figure), so a character looks the same in every frame it is in, and a changed
portrait changes exactly those frames. A frame without characters draws
anonymous silhouettes.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
import textwrap
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from sparkle_motion_dagster.resources.keyframes import CharacterReference, KeyframeRenderer


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


def draw_figure(draw: ImageDraw.ImageDraw, x: float, body_top: float, head: float, height: float, *,
                hair: tuple[int, int, int], skin: tuple[int, int, int], clothes: tuple[int, int, int]) -> None:
    """A character's figure: hair over a face, a body in its clothes' colour."""
    draw.rounded_rectangle((x - head * 1.4, body_top, x + head * 1.4, body_top + height), radius=int(head),
                           fill=(*clothes, 255))
    draw.ellipse((x - head, body_top - 2 * head, x + head, body_top), fill=(*skin, 255))
    draw.chord((x - head * 1.1, body_top - 2.2 * head, x + head * 1.1, body_top - 0.6 * head), 180, 360,
               fill=(*hair, 255))


# Where a portrait's hair, face and clothes are, as fractions of its side (see ``render_portrait``).
HAIR_AT, FACE_AT, CLOTHES_AT = (0.5, 0.2), (0.5, 0.36), (0.5, 0.78)


# Colours a description may give its character ("a red coat", "silver hair", "blonde").
COLOURS = {"red": (190, 40, 40), "crimson": (150, 20, 40), "orange": (230, 120, 30), "yellow": (230, 200, 50),
           "gold": (212, 175, 55), "golden": (212, 175, 55), "green": (40, 140, 60), "teal": (30, 130, 130),
           "blue": (40, 80, 190), "navy": (25, 35, 90), "purple": (120, 50, 160), "violet": (140, 80, 200),
           "pink": (230, 120, 170), "brown": (110, 70, 40), "black": (25, 25, 28), "white": (235, 235, 230),
           "grey": (128, 128, 128), "gray": (128, 128, 128), "silver": (190, 190, 200), "blonde": (225, 200, 120),
           "blond": (225, 200, 120), "auburn": (145, 60, 35), "ginger": (200, 100, 40)}
CLOTHES = ("coat", "jacket", "dress", "shirt", "scarf", "hoodie", "sweater", "cloak", "suit", "robe", "uniform",
           "cape", "vest", "raincoat", "overalls", "skirt", "jumper", "tunic", "fur")


def described_colours(description: str) -> dict[str, tuple[int, int, int]]:
    """The hair and clothes colours a description names: "<colour> hair", "blonde", "<colour> coat"."""
    words = re.findall(r"[a-z]+", description.lower())
    found: dict[str, tuple[int, int, int]] = {}
    for word, following in zip(words, words[1:] + [""]):
        if word not in COLOURS:
            continue
        if following in ("hair", "haired") or word in ("blonde", "blond", "auburn", "ginger"):
            found.setdefault("hair", COLOURS[word])
        elif following in CLOTHES or following.rstrip("s") in CLOTHES:
            found.setdefault("clothes", COLOURS[word])
    return found


def render_portrait(*, name: str, description: str, style: str, seed: int, size: int) -> Image.Image:
    """A character's reference portrait: one figure whose colours come from its description (the hair
    and clothes colours it names) and, for the rest, from its seed."""
    rng = _rng(f"{name}\x00{description}\x00{style}", seed)
    hues = rng.random(3)
    as_rgb = lambda color: tuple(int(c * 255) for c in color)  # noqa: E731
    named = described_colours(description)
    hair = named.get("hair") or as_rgb(colorsys.hsv_to_rgb(hues[0], rng.uniform(0.3, 0.8), rng.uniform(0.15, 0.7)))
    skin = as_rgb(colorsys.hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95)))
    clothes = named.get("clothes") or as_rgb(colorsys.hsv_to_rgb(hues[2], rng.uniform(0.5, 0.9),
                                                                 rng.uniform(0.4, 0.9)))
    ground = as_rgb(colorsys.hsv_to_rgb((hues[2] + 0.5) % 1, 0.12, 0.92))
    image = Image.new("RGB", (size, size), ground)
    draw = ImageDraw.Draw(image)
    head = size * 0.16
    draw_figure(draw, size / 2, size * 0.52, head, size * 0.6, hair=hair, skin=skin, clothes=clothes)
    return image


def traits_of(portrait: Image.Image) -> tuple[tuple[int, int, int], ...]:
    """(hair, skin, clothes) colours read back from a portrait: the median of a small patch at each
    place ``render_portrait`` puts them (any picture works; a photo gives its own colours there)."""
    picture = np.asarray(portrait.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int32)
    colours = []
    for fx, fy in (HAIR_AT, FACE_AT, CLOTHES_AT):
        x, y = int(fx * 63), int(fy * 63)
        patch = picture[max(0, y - 2):y + 3, max(0, x - 2):x + 3].reshape(-1, 3)
        colours.append(tuple(int(v) for v in np.median(patch, axis=0)))
    return tuple(colours)


def render_storyboard(prompt: str, *, seed: int, width: int, height: int, label: str = "",
                      references: tuple[CharacterReference, ...] = ()) -> Image.Image:
    """One storyboard frame of ``width`` x ``height`` for ``prompt`` and ``seed``, ``label`` in its corner,
    with a figure for each character in ``references`` drawn from its portrait."""
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
    cast = [traits_of(reference.image) + (reference.name,) for reference in references]
    figures = len(cast) or int(rng.integers(1, 3))
    names = []
    for index in range(figures):
        fx = width * (0.3 + 0.4 * (index + 0.5) / figures) + rng.normal(0, width * 0.03)
        fh = height * rng.uniform(0.22, 0.32) * (1.25 if cast else 1.0)
        head = fh * 0.16
        body_top = horizon + height * 0.08 - fh
        if cast:
            hair, skin, clothes, name = cast[index]
            draw_figure(draw, fx, body_top, head, fh, hair=hair, skin=skin, clothes=clothes)
            names.append((fx, body_top + fh, name))
        else:
            draw.ellipse((fx - head, body_top - 2 * head, fx + head, body_top), fill=(*light, 230))
            draw.rounded_rectangle((fx - head * 1.4, body_top, fx + head * 1.4, body_top + fh), radius=int(head),
                                   fill=(*accent, 210))
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1, width // 640)))
    if names:
        draw = ImageDraw.Draw(image, "RGBA")
        tag = _font(max(10, height // 30))
        for fx, foot, name in names:
            draw.text((fx, foot + 2), name, font=tag, fill=(255, 255, 255, 235), anchor="mt")

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

    def render(self, prompt, *, seed, width, height, label="", references=()):
        return render_storyboard(prompt, seed=seed, width=width, height=height, label=label, references=references)

    def render_portrait(self, *, name, description, style, seed, size):
        return render_portrait(name=name, description=description, style=style, seed=seed, size=size)
