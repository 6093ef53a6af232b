"""Lipsync: the silent master plus the stitched dialogue track gives the final video.

The interface is here; each engine has its own module: ``passthrough.py`` (the
embedded default: mux only) and ``wav2lip.py`` (Wav2Lip, with ``wav2lip_model.py``,
``face_detect.py`` and ``mel.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import dagster as dg


class LipsyncEngine(dg.ConfigurableResource):
    """Interface: make ``out_path`` from the silent master and the dialogue audio.

    ``windows`` lists the dialogue intervals (seconds) on talking-closeup shots,
    the only places a lipsync model needs to touch.

    ``shots`` (optional) describes the master shot by shot, in order: dicts with
    ``shot_id``, ``start_frame`` and ``num_frames`` (frames of the master),
    ``is_talking_closeup`` and ``clip_path`` (the shot's own video-only clip,
    which the master concatenates); see :func:`sparkle_motion_dagster.film.final_cut.lipsync_shots`. With it an engine
    re-encodes only the shots it changes and copies the others. ``work_dir``
    (optional) is where an engine writes one clip per changed shot
    (``<shot_id>.mp4``, artifact type ``shot_lipsync_video``).

    The result always has ``lipsync_applied``, ``changed_frames`` (indices of
    master frames whose picture was changed) and ``windows``; engines add more.
    ``backend`` names the engine in manifests.
    """

    backend: ClassVar[str] = ""

    def apply(self, video: Path, audio: Path, out_path: Path, *, windows: list[dict[str, Any]], fps: float,
              shots: list[dict[str, Any]] | None = None, work_dir: Path | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What made a file, for its provenance record: backend and settings; for a real model also
        its id, local path, weights digest, dtype and device (resolved without loading weights)."""
        from sparkle_motion_dagster.insight.provenance import model_provenance

        return model_provenance(self)

    def release(self) -> None:
        """Free what the engine holds in this process (a loaded model); applying again reloads it."""
