"""Shot clips: motion from a shot's start keyframe to its end keyframe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from PIL import Image

from sparkle_motion_dagster.resources.clips.animatic import animatic_frames
from sparkle_motion_dagster.media.ffmpeg import FrameEncoder


@dataclass(frozen=True)
class ClipRequest:
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
    """Interface: render one shot as a video-only MP4 of exactly ``frames`` frames."""

    @property
    def backend(self) -> str:
        raise NotImplementedError

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The render_profile.video.model_id values this renderer honours."""
        raise NotImplementedError

    @property
    def max_seconds_per_generation(self) -> float | None:
        """The longest shot one generation holds (None: any length)."""
        return None

    @property
    def parallel_shots(self) -> int:
        """How many shots may render at once (a model on one GPU: one)."""
        return 1

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.model_dump()}

    def render(self, request: ClipRequest, out_path: Path) -> dict[str, Any]:
        raise NotImplementedError


class AnimaticClips(ClipRenderer):
    """Embedded clips: an animatic (hold, crossfade, slow pan) between the two keyframes.

    Serves model_id ``animatic``. It is not a video model.
    """

    @property
    def backend(self) -> str:
        return "animatic"

    @property
    def model_ids(self) -> tuple[str, ...]:
        return ("animatic",)

    @property
    def parallel_shots(self) -> int:
        # Two encoders at once keep both cores busy through each one's start and final flush
        # (~10% faster on two cores than one after the other).
        return 2

    def render(self, request, out_path):
        start = Image.open(request.start_image)
        end = Image.open(request.end_image)
        with FrameEncoder(out_path, width=request.width, height=request.height, fps=request.fps,
                          pix_fmt="yuv420p") as encoder:
            for frame in animatic_frames(
                start, end, frames=request.frames, width=request.width, height=request.height,
                seed=request.seed, motion_prompt=request.motion_prompt,
            ):
                encoder.write(frame)
        return {"frames": encoder.frames_written, "continuity_mode": "crossfade"}
