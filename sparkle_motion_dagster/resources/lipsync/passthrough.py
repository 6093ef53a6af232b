"""The embedded lipsync engine: mouths unchanged, the dialogue muxed onto the master as AAC."""

from __future__ import annotations

from typing import ClassVar

from sparkle_motion_dagster.media.ffmpeg import mux_audio
from sparkle_motion_dagster.resources.lipsync import LipsyncEngine


class PassthroughLipsync(LipsyncEngine):
    """Embedded lipsync: no mouth changes; it only muxes the dialogue as AAC (``lipsync_applied: false``)."""

    backend: ClassVar[str] = "passthrough"

    def apply(self, video, audio, out_path, *, windows, fps, shots=None, work_dir=None):
        mux_audio(video, audio, out_path)
        return {"lipsync_applied": False, "changed_frames": [], "windows": windows}
