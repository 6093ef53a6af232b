"""The embedded keyframe renderer (``StoryboardKeyframes``): a legible storyboard frame, no model weights.

The backdrop shows the setting, time of day and weather the prompt names (a
coast at dawn, a rainy city at night, a foggy wood: see ``scenery.py``);
composition details come from the prompt and the seed, so the same inputs
always give the same pixels. The prompt itself is lettered on the frame, inside
the title-safe area, so a viewer can tell which keyframe is which.

Characters: a portrait is a figure on a plain ground whose hair, skin and
clothes colours come from the character's description (and seed); a keyframe
draws each of its characters from the portrait it is given (the colours read
back from the portrait's head and body, and the name lettered under the
figure), so a character looks the same in every frame it is in, and a changed
portrait changes exactly those frames. A frame without characters draws
anonymous passers-by.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
import textwrap
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from sparkle_motion_dagster.film.scene import read_scene
from sparkle_motion_dagster.resources.keyframes import CharacterReference, KeyframeRenderer
from sparkle_motion_dagster.resources.keyframes.scenery import (draw_atmosphere, draw_backdrop, draw_precipitation,
                                                                 footing_row)


def _rng(prompt: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_figure(draw: ImageDraw.ImageDraw, x: float, body_top: float, head: float, height: float, *,
                hair: tuple[int, int, int], skin: tuple[int, int, int], clothes: tuple[int, int, int]) -> None:
    """A character's figure standing at ``x``: a head (face under a cap of hair) on a neck, a torso with
    shoulders in its clothes' colour, arms with hands, and legs in a darker shade of the clothes.
    ``body_top`` is where the shoulders are; the feet are at ``body_top + height``."""
    shoulders, waist = head * 1.5, head * 1.05
    torso_bottom = body_top + height * 0.5
    feet = body_top + height
    trousers = tuple(int(c * 0.55) for c in clothes)
    shoes = tuple(int(c * 0.35) for c in clothes)
    limb = max(1.0, head * 0.42)
    for side in (-1, 1):  # legs, then arms hanging beside the torso
        draw.rounded_rectangle((x + side * waist * 0.5 - limb * 0.55, torso_bottom - head * 0.2,
                                x + side * waist * 0.5 + limb * 0.55, feet - head * 0.2), radius=int(limb * 0.4),
                               fill=(*trousers, 255))
        draw.ellipse((x + side * waist * 0.5 - limb * 0.8, feet - head * 0.4, x + side * waist * 0.5 + limb * 0.9,
                      feet), fill=(*shoes, 255))
        draw.line((x + side * shoulders * 0.9, body_top + head * 0.3, x + side * shoulders * 1.05,
                   body_top + height * 0.46), fill=(*clothes, 255), width=int(limb))
        hand = (x + side * shoulders * 1.05, body_top + height * 0.48)
        draw.ellipse((hand[0] - limb * 0.6, hand[1] - limb * 0.6, hand[0] + limb * 0.6, hand[1] + limb * 0.6),
                     fill=(*skin, 255))
    draw.polygon([(x - shoulders, body_top + head * 0.25), (x - shoulders * 0.8, body_top),
                  (x + shoulders * 0.8, body_top), (x + shoulders, body_top + head * 0.25),
                  (x + waist, torso_bottom), (x - waist, torso_bottom)], fill=(*clothes, 255))
    draw.rectangle((x - head * 0.3, body_top - head * 0.3, x + head * 0.3, body_top + head * 0.05), fill=(*skin, 255))
    draw.ellipse((x - head * 0.85, body_top - 2 * head, x + head * 0.85, body_top - head * 0.1), fill=(*skin, 255))
    draw.chord((x - head * 0.95, body_top - 2.2 * head, x + head * 0.95, body_top - 0.6 * head), 180, 360,
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


# Text stays inside the title-safe area (this fraction of the frame in from each edge), so a clip that
# shows its keyframe slightly enlarged (the animatic's pan) still shows every caption letter.
TITLE_SAFE = 0.06


def _anonymous(rng: np.random.Generator) -> tuple[tuple[int, int, int], ...]:
    """(hair, skin, clothes) of a passer-by in a frame without named characters."""
    as_rgb = lambda color: tuple(int(c * 255) for c in color)  # noqa: E731
    return (as_rgb(colorsys.hsv_to_rgb(rng.uniform(0.02, 0.12), 0.5, rng.uniform(0.15, 0.5))),
            as_rgb(colorsys.hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.9))),
            as_rgb(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7))))


def render_storyboard(prompt: str, *, seed: int, width: int, height: int, label: str = "",
                      references: tuple[CharacterReference, ...] = ()) -> Image.Image:
    """One storyboard frame of ``width`` x ``height`` for ``prompt`` and ``seed``: the setting, time of
    day and weather the prompt names (see ``film/scene.py``), a figure for each character in
    ``references`` drawn from its portrait, the prompt as a caption and ``label`` in its corner."""
    rng = _rng(prompt, seed)
    scene = read_scene(prompt)
    image, horizon = draw_backdrop(scene, rng, width, height)
    image = draw_atmosphere(image, scene, horizon)
    draw = ImageDraw.Draw(image, "RGBA")

    # The caption's place, worked out first so that figures and their name tags stand above it.
    size = max(12, height // 24)
    inset_x, inset_y = int(width * TITLE_SAFE) + 2, int(height * TITLE_SAFE) + 2
    wrapped = textwrap.wrap(prompt, width=max(20, int((width - 2 * inset_x) / (size * 0.55))))[:3]
    panel_h = int(size * 1.4 * len(wrapped) + size * 0.6)
    panel_top = height - inset_y - panel_h
    tag_size = max(10, height // 30)

    cast = [traits_of(reference.image) + (reference.name,) for reference in references]
    figures = len(cast) or int(rng.integers(1, 3))
    names = []
    for index in range(figures):
        fx = width * (0.3 + 0.4 * (index + 0.5) / figures) + rng.normal(0, width * 0.03)
        fh = height * rng.uniform(0.24, 0.32) * (1.25 if cast else 1.0)
        head = fh * 0.13
        feet = max(height * 0.5, min(footing_row(scene, horizon, height), panel_top - (tag_size + 6 if cast else 2)))
        body_top = feet - fh
        hair, skin, clothes, name = cast[index] if cast else (*_anonymous(rng), None)
        draw_figure(draw, fx, body_top, head, fh, hair=hair, skin=skin, clothes=clothes)
        if name:
            names.append((fx, feet, name))
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1, width // 640)))
    draw_precipitation(image, scene, rng)
    if names:
        draw = ImageDraw.Draw(image, "RGBA")
        tag = _font(tag_size)
        for fx, foot, name in names:
            draw.text((fx, foot + 2), name, font=tag, fill=(255, 255, 255, 235), anchor="mt",
                      stroke_width=1, stroke_fill=(0, 0, 0, 200))

    # Caption panel with the prompt, and a small slate label, their text inside the title-safe area.
    draw = ImageDraw.Draw(image, "RGBA")
    font = _font(size)
    draw.rectangle((0, panel_top, width, height), fill=(0, 0, 0, 150))
    for line_no, line in enumerate(wrapped):
        draw.text((inset_x, panel_top + size * 0.4 + line_no * size * 1.4), line, font=font, fill=(255, 255, 255, 255))
    if label:
        small = _font(max(10, size * 2 // 3))
        draw.rectangle((0, 0, width, inset_y + int(size * 1.1)), fill=(0, 0, 0, 110))
        draw.text((inset_x, inset_y), label, font=small, fill=(255, 255, 255, 230))
    return image


class StoryboardKeyframes(KeyframeRenderer):
    """Embedded keyframes: a storyboard frame drawn from the prompt (not an image model)."""

    backend: ClassVar[str] = "storyboard"
    parallel_images: ClassVar[int] = 2  # Pillow draws, blurs and encodes without holding the GIL
    drawing: ClassVar[int] = 2  # how frames are drawn: a new drawing makes earlier keyframes out of date

    def fingerprint(self):
        return {**super().fingerprint(), "drawing": self.drawing}

    def render(self, prompt, *, seed, width, height, label="", references=()):
        return render_storyboard(prompt, seed=seed, width=width, height=height, label=label, references=references)

    def render_portrait(self, *, name, description, style, seed, size):
        return render_portrait(name=name, description=description, style=style, seed=seed, size=size)
