"""SRT and WebVTT captions from the stitched dialogue timeline.

A cue's text is one line of plain words: a line break, a control character or a
``-->`` inside a line's text would otherwise start a cue of its own (a forged
timing line), so :func:`cue_text` folds them before anything is written. WebVTT
reads ``<`` and ``&`` as markup, so they are escaped there.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sparkle_motion_dagster.film.timeline import format_timestamp

# Any run of whitespace, control or format characters (line/paragraph separators included).
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class Cue:
    start_sec: float
    end_sec: float
    speaker: str
    text: str


def cue_text(text: str) -> str:
    """``text`` as one caption line: line breaks, tabs and control characters folded into
    single spaces, and ``-->`` (the timing arrow) written ``->``."""
    visible = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    folded = _BREAKS.sub(" ", visible).strip()
    while "-->" in folded:
        folded = folded.replace("-->", "->")
    return folded


def _vtt_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_srt(cues: list[Cue]) -> str:
    blocks = [
        f"{index}\n{format_timestamp(c.start_sec, separator=',')} --> {format_timestamp(c.end_sec, separator=',')}\n"
        f"{cue_text(c.speaker)}: {cue_text(c.text)}\n"
        for index, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: list[Cue]) -> str:
    blocks = [
        f"{format_timestamp(c.start_sec, separator='.')} --> {format_timestamp(c.end_sec, separator='.')}\n"
        f"<v {_vtt_escaped(cue_text(c.speaker))}>{_vtt_escaped(cue_text(c.text))}\n"
        for c in cues
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)
