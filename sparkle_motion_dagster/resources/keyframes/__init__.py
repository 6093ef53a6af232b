"""Keyframes: one image per base image of the plan.

The interface is here; each renderer has its own module: ``storyboard.py``
(the embedded default, no weights) and ``sdxl.py`` (Stable Diffusion XL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import dagster as dg
from PIL import Image


@dataclass(frozen=True)
class CharacterReference:
    """A character's reference portrait, as a keyframe that shows the character is conditioned on."""

    character_id: str
    name: str
    image: Image.Image
    sha256: str


class KeyframeRenderer(dg.ConfigurableResource):
    """Interface: render one keyframe from its prompt and seed.

    ``backend`` names the renderer in manifests; ``parallel_images`` is how many
    keyframes may render at once (a model on one GPU: one).
    """

    backend: ClassVar[str] = ""
    parallel_images: ClassVar[int] = 1
    levers: ClassVar[tuple[str, ...]] = ()  # the levers of render_profile.images it takes (film/levers.py)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the picture for the same prompt, seed and size."""
        return {"backend": self.backend, **self.model_dump()}

    def with_settings(self, settings: dict[str, Any]) -> "KeyframeRenderer":
        """This renderer with per-run image settings (steps, guidance, scheduler, negative_prompt)
        applied; renderers without such settings return themselves."""
        return self

    def render(self, prompt: str, *, seed: int, width: int, height: int, label: str,
               references: tuple[CharacterReference, ...] = ()) -> Image.Image:
        """One keyframe; ``references`` are the portraits of the characters in it (none: none are)."""
        raise NotImplementedError

    def reference_settings(self) -> dict[str, Any]:
        """What conditions a keyframe on its characters' portraits (an adapter's weights and scale),
        for the fingerprint and provenance of keyframes that have characters."""
        return {}

    def render_portrait(self, *, name: str, description: str, style: str, seed: int, size: int) -> Image.Image:
        """A reference portrait of a character from its description and the film's style."""
        prompt = f"Portrait of {name}, {description or 'a character'}, facing the camera, neutral background. {style}"
        return self.render(prompt.strip(), seed=seed, width=size, height=size, label="")

    def provenance(self) -> dict[str, Any]:
        """What made a file, for its provenance record: backend and settings; for a real model also
        its id, local path, weights digest, dtype and device (resolved without loading weights)."""
        from sparkle_motion_dagster.insight.provenance import model_provenance

        return model_provenance(self)

    def release(self) -> None:
        """Free what the renderer holds in this process (a loaded model); rendering again reloads it."""
