"""Lipsync: the silent master plus the stitched dialogue track gives the final video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from ..ffmpeg import mux_audio


class LipsyncEngine(dg.ConfigurableResource):
    """Interface: make ``out_path`` from the silent master and the dialogue audio.

    ``windows`` lists the dialogue intervals (seconds) on talking-closeup shots,
    the only places a lipsync model needs to touch.
    """

    @property
    def backend(self) -> str:
        raise NotImplementedError

    def apply(self, video: Path, audio: Path, out_path: Path, *, windows: list[dict[str, Any]], fps: float) -> dict[str, Any]:
        raise NotImplementedError


class PassthroughLipsync(LipsyncEngine):
    """Embedded lipsync: no mouth changes; it only muxes the dialogue as AAC."""

    @property
    def backend(self) -> str:
        return "passthrough"

    def apply(self, video, audio, out_path, *, windows, fps):
        mux_audio(video, audio, out_path)
        return {"lipsync_applied": False, "changed_frames": [], "windows": windows}
