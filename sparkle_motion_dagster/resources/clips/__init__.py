"""Shot clips: motion from a shot's start keyframe to its end keyframe.

The interface is here; each renderer has its own module: ``animatic.py`` (the
embedded default, no weights) and ``wan.py`` (Wan 2.1 image-to-video).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg

from sparkle_motion_dagster.film.levers import register as register_levers


@dataclass(frozen=True)
class ClipRequest:
    """One shot to render: its two keyframes, exact frame count and size, seed and prompts."""

    shot_id: str
    start_image: Path
    end_image: Path
    frames: int
    fps: float
    width: int
    height: int
    seed: int
    motion_prompt: str
    prompt: str


class ClipRenderer(dg.ConfigurableResource):
    """Interface: render one shot as a video-only MP4 of exactly ``frames`` frames.

    ``backend`` names the renderer in manifests, ``model_ids`` are the
    ``render_profile.video.model_id`` values it honours, ``parallel_shots`` is how
    many shots may render at once (a model on one GPU: one), ``levers`` the
    speed levers of ``render_profile.video`` it takes (``film/levers.py``).
    """

    backend: ClassVar[str] = ""
    model_ids: ClassVar[tuple[str, ...]] = ()
    parallel_shots: ClassVar[int] = 1
    levers: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        register_levers(cls.backend, cls.levers)

    def with_settings(self, profile: dict[str, Any]) -> "ClipRenderer":
        """This renderer with a run's ``render_profile.video`` levers applied (intake has refused the
        ones it cannot take); renderers without levers return themselves."""
        return self

    def generations(self, frames: int, fps: float) -> dict[str, int]:
        """What one shot of ``frames`` output frames at ``fps`` costs the model: ``generations`` (calls) and
        ``model_frames`` (frames generated); a renderer without a model draws each output frame once."""
        return {"generations": 1, "model_frames": frames}

    def levers_record(self) -> dict[str, Any]:
        """The levers a clip was made with, for the stage's metadata (empty: none)."""
        return {}

    @property
    def max_seconds_per_generation(self) -> float | None:
        """The longest shot one generation holds (None: any length)."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the clip for the same request."""
        return {"backend": self.backend, **self.model_dump()}

    def render(self, request: ClipRequest, out_path: Path) -> dict[str, Any]:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What made a file, for its provenance record: backend and settings; for a real model also
        its id, local path, weights digest, dtype and device (resolved without loading weights)."""
        from sparkle_motion_dagster.insight.provenance import model_provenance

        return model_provenance(self)

    def release(self) -> None:
        """Free what the renderer holds in this process (a loaded model); rendering again reloads it."""
