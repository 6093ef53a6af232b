"""SRT and WebVTT captions from the stitched dialogue timeline."""

from __future__ import annotations

from dataclasses import dataclass

from sparkle_motion_dagster.film.timeline import format_timestamp


@dataclass(frozen=True)
class Cue:
    start_sec: float
    end_sec: float
    speaker: str
    text: str


def to_srt(cues: list[Cue]) -> str:
    blocks = [
        f"{index}\n{format_timestamp(c.start_sec, separator=',')} --> {format_timestamp(c.end_sec, separator=',')}\n"
        f"{c.speaker}: {c.text}\n"
        for index, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: list[Cue]) -> str:
    blocks = [
        f"{format_timestamp(c.start_sec, separator='.')} --> {format_timestamp(c.end_sec, separator='.')}\n"
        f"<v {c.speaker}>{c.text}\n"
        for c in cues
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)
