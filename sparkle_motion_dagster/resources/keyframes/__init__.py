"""Keyframes: one image per base image of the plan."""

from __future__ import annotations

from typing import Any

import dagster as dg
from PIL import Image

from sparkle_motion_dagster.resources.keyframes.storyboard import render_storyboard


class KeyframeRenderer(dg.ConfigurableResource):
    """Interface: render one keyframe from its prompt and seed."""

    @property
    def backend(self) -> str:
        raise NotImplementedError

    @property
    def parallel_images(self) -> int:
        """How many keyframes may render at once (a model on one GPU: one)."""
        return 1

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.model_dump()}

    def with_settings(self, settings: dict[str, Any]) -> "KeyframeRenderer":
        """This renderer with per-run image settings (steps, guidance, scheduler, negative_prompt)
        applied; renderers without such settings return themselves."""
        return self

    def render(self, prompt: str, *, seed: int, width: int, height: int, label: str) -> Image.Image:
        raise NotImplementedError


class StoryboardKeyframes(KeyframeRenderer):
    """Embedded keyframes: a storyboard frame drawn from the prompt (not an image model)."""

    @property
    def backend(self) -> str:
        return "storyboard"

    @property
    def parallel_images(self) -> int:
        return 2  # Pillow draws, blurs and encodes without holding the GIL

    def render(self, prompt, *, seed, width, height, label):
        return render_storyboard(prompt, seed=seed, width=width, height=height, label=label)
