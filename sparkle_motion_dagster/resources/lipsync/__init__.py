"""Lipsync: the silent master plus the stitched dialogue track gives the final video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from sparkle_motion_dagster.media.ffmpeg import mux_audio


class LipsyncEngine(dg.ConfigurableResource):
    """Interface: make ``out_path`` from the silent master and the dialogue audio.

    ``windows`` lists the dialogue intervals (seconds) on talking-closeup shots,
    the only places a lipsync model needs to touch.

    ``shots`` (optional) describes the master shot by shot, in order: dicts with
    ``shot_id``, ``start_frame`` and ``num_frames`` (frames of the master),
    ``is_talking_closeup`` and ``clip_path`` (the shot's own video-only clip,
    which the master concatenates); see :func:`lipsync_shots`. With it an engine
    re-encodes only the shots it changes and copies the others. ``work_dir``
    (optional) is where an engine writes one clip per changed shot
    (``<shot_id>.mp4``, artifact type ``shot_lipsync_video``).

    The result always has ``lipsync_applied``, ``changed_frames`` (indices of
    master frames whose picture was changed) and ``windows``; engines add more.
    """

    @property
    def backend(self) -> str:
        raise NotImplementedError

    def apply(self, video: Path, audio: Path, out_path: Path, *, windows: list[dict[str, Any]], fps: float,
              shots: list[dict[str, Any]] | None = None, work_dir: Path | None = None) -> dict[str, Any]:
        raise NotImplementedError


class PassthroughLipsync(LipsyncEngine):
    """Embedded lipsync: no mouth changes; it only muxes the dialogue as AAC."""

    @property
    def backend(self) -> str:
        return "passthrough"

    def apply(self, video, audio, out_path, *, windows, fps, shots=None, work_dir=None):
        mux_audio(video, audio, out_path)
        return {"lipsync_applied": False, "changed_frames": [], "windows": windows}


def lipsync_shots(plan, assembly_plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``shots`` argument of :meth:`LipsyncEngine.apply` from the plan and ``assembly_plan.json``.

    Frame ranges come from the clips the master was joined from (their real
    frame counts), the talking-closeup flags from the plan.
    """
    talking = {shot.id: bool(shot.is_talking_closeup) for shot in plan.shots}
    shots, start = [], 0
    for clip in assembly_plan["clips"]:
        shots.append({"shot_id": clip["shot_id"], "start_frame": start, "num_frames": int(clip["num_frames"]),
                      "is_talking_closeup": talking.get(clip["shot_id"], False), "clip_path": clip.get("path")})
        start += int(clip["num_frames"])
    return shots
