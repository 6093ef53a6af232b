"""Assembly: clips in shot order into one silent master."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from sparkle_motion_dagster.media.ffmpeg import concat_copy


class FfmpegAssembler(dg.ConfigurableResource):
    """Joins video-only clips with ffmpeg's concat demuxer, copying the stream (no re-encode)."""

    @property
    def backend(self) -> str:
        return "ffmpeg-concat-copy"

    def concat(self, clips: list[Path], out_path: Path, list_path: Path) -> None:
        concat_copy(clips, out_path, list_path)
