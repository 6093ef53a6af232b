"""Speech that fits its slot: how much a line must speed up, and what is lost beyond the limit.

A line's *window* is the room it has on the timeline: from its start to the next
line's start, or to the end of the film. Speech longer than its window is sped up
(a pitch-preserving time stretch) by the smallest factor that fits, up to
``FitPolicy.max_tempo``; beyond that the policy decides: ``trim`` speeds it up by
the limit and cuts the rest (with a short fade), ``fail`` refuses the plan.

The same arithmetic serves the stitcher (in samples, on the rendered audio) and
the dry run and planners (in seconds, on measured or estimated speech).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sparkle_motion_dagster.film.plan import DialogueEntry, MoviePlan, PlanIssue, PlanValidationError, VoiceProfile

DEFAULT_MAX_TEMPO = 1.25
MAX_TEMPO_LIMIT = 2.0  # beyond this a time stretch no longer sounds like speech
OVERRUN_POLICIES = ("trim", "fail")
MAX_TEMPO_VARIABLE = "SPARKLE_SPEECH_MAX_TEMPO"
OVERRUN_VARIABLE = "SPARKLE_SPEECH_OVERRUN"
WIDE_CHAR_WEIGHT = 2
_PAUSE_MARKS = re.compile(r"[.!?;:,\u3002\uff01\uff1f\u3001]+")


@dataclass(frozen=True)
class FitPolicy:
    """How far speech may be sped up, and what happens beyond that."""

    max_tempo: float = DEFAULT_MAX_TEMPO
    overrun: Literal["trim", "fail"] = "trim"

    def as_dict(self) -> dict[str, Any]:
        return {"max_tempo": self.max_tempo, "overrun": self.overrun}


@dataclass(frozen=True)
class Fit:
    """What the stitcher does with one line: ``tempo`` (1.0: as spoken), ``kept`` (how much of
    the sped-up speech stays) and ``lost`` (how much of it is cut), in the unit it was given."""

    tempo: float
    fitted: float  # the speech's length after the stretch
    kept: float
    lost: float
    outcome: Literal["fits", "tempo", "trim", "fail"]


def fit_speech(speech: float, window: float, policy: FitPolicy) -> Fit:
    """The smallest speed-up that fits ``speech`` into ``window`` (both in seconds, or both in
    samples), capped at the policy's limit; beyond it, what is cut (``trim``) or ``fail``."""
    window = max(window, 0)
    if speech <= window:
        return Fit(1.0, speech, speech, 0, "fits")
    needed = speech / window if window > 0 else float("inf")
    if needed <= policy.max_tempo:
        return Fit(needed, window, window, 0, "tempo")
    fitted = speech / policy.max_tempo
    return Fit(policy.max_tempo, fitted, window, fitted - window, "fail" if policy.overrun == "fail" else "trim")


def needed_tempo(speech: float, window: float) -> float:
    """The speed-up that would fit ``speech`` into ``window`` with no limit (inf for no room)."""
    return speech / window if window > 0 else float("inf")


@dataclass(frozen=True)
class SpeechPace:
    """An engine's speaking pace, to estimate a line's length without speaking it: seconds per
    character, a pause per punctuation mark that ends a clause or sentence, and a fixed lead."""

    seconds_per_char: float
    pause_s: float = 0.0
    lead_s: float = 0.0

    def seconds(self, text: str) -> float:
        spoken = " ".join(text.split())
        pauses = len(_PAUSE_MARKS.findall(spoken.rstrip(".!?\u3002\uff01\uff1f ")))
        # A wide character (kana, kanji, hangul) is a syllable or more: it counts as two letters.
        letters = sum(WIDE_CHAR_WEIGHT if unicodedata.east_asian_width(c) in "WF" else 1 for c in spoken)
        return round(self.lead_s + letters * self.seconds_per_char + pauses * self.pause_s, 3)

    def as_dict(self) -> dict[str, float]:
        return {"seconds_per_char": round(self.seconds_per_char, 6), "pause_s": self.pause_s, "lead_s": self.lead_s}


@dataclass(frozen=True)
class SpeechTiming:
    """What a planner knows of the configured speech engine: its pace per voice, and the fit policy."""

    engine: str
    pace_for: Callable[[VoiceProfile], SpeechPace]
    policy: FitPolicy = FitPolicy()

    def seconds(self, text: str, voice_profile: VoiceProfile | dict | None = None) -> float:
        profile = voice_profile if isinstance(voice_profile, VoiceProfile) \
            else VoiceProfile.model_validate(voice_profile or {})
        return self.pace_for(profile).seconds(text)

    def fingerprint(self) -> dict[str, Any]:
        """What changes the durations a planner writes (the pace of the default voice and the policy)."""
        return {"engine": self.engine, "pace": self.pace_for(VoiceProfile()).as_dict(), **self.policy.as_dict()}


# --------------------------------------------------------------------------- a plan's lines


@dataclass(frozen=True)
class LineWindow:
    line_id: str
    field: str  # where the line is in the plan as submitted, e.g. "dialogue_timeline[3]"
    entry: DialogueEntry
    window_s: float
    to_end: bool = False  # the window runs to the film's end (no line after it)


def line_fields(document: Any) -> dict[str, str]:
    """Each line id's field path in the plan as submitted (a bare plan or the plan of an envelope),
    e.g. ``dialogue_timeline[3]``: the index counts the entries as the user wrote them, before
    the timeline was sorted and its gaps filled. Lines are numbered in start order, as
    :meth:`MoviePlan.dialogue_lines` numbers them."""
    plan = document.get("validated_plan", document) if isinstance(document, dict) else None
    timeline = plan.get("dialogue_timeline") if isinstance(plan, dict) else None
    if not isinstance(timeline, list):
        return {}
    dialogue = [(index, entry) for index, entry in enumerate(timeline)
                if isinstance(entry, dict) and entry.get("type", "dialogue") == "dialogue"]
    try:
        dialogue.sort(key=lambda item: float(item[1].get("start_time_sec", 0)))
    except (TypeError, ValueError):
        return {}
    return {f"line_{number:03d}": f"dialogue_timeline[{index}]" for number, (index, _) in enumerate(dialogue)}


def line_windows(plan: MoviePlan, fields: dict[str, str] | None = None) -> list[LineWindow]:
    """Every dialogue line with its window: up to the next line's start, or the film's end."""
    lines = plan.dialogue_lines()
    fields = fields or {}
    positions = {id(entry): index for index, entry in enumerate(plan.dialogue_timeline)}
    windows = []
    for number, (line_id, entry) in enumerate(lines):
        end = lines[number + 1][1].start_time_sec if number + 1 < len(lines) else plan.runtime_sec
        field = fields.get(line_id) or f"dialogue_timeline[{positions.get(id(entry), number)}]"
        windows.append(LineWindow(line_id, field, entry, round(min(end, plan.runtime_sec) - entry.start_time_sec, 6),
                                  to_end=number + 1 == len(lines)))
    return windows


@dataclass(frozen=True)
class LineSpeech:
    """A line's speech length before rendering, and how it was known (``measured`` or ``estimated``)."""

    window: LineWindow
    speech_s: float
    basis: str

    def fit(self, policy: FitPolicy) -> Fit:
        return fit_speech(self.speech_s, self.window.window_s, policy)


def overrun_warning(line: LineSpeech, policy: FitPolicy) -> dict[str, Any] | None:
    """The dry run's warning for a line whose speech is longer than its window (None when it fits)."""
    fit = line.fit(policy)
    if fit.outcome == "fits":
        return None
    window = line.window
    what = (f"{line.speech_s:.2f} s of speech ({line.basis}) in a {window.window_s:.2f} s window "
            f"(up to {'the end of the film' if window.to_end else 'the next line'})")
    if fit.outcome == "tempo":
        happens = f"fits at tempo {fit.tempo:.2f}"
    else:
        needed = needed_tempo(line.speech_s, window.window_s)
        over = f"needs tempo {needed:.2f}, over {MAX_TEMPO_VARIABLE}={policy.max_tempo:g}"
        happens = (f"will fail ({over}, {OVERRUN_VARIABLE}=fail)" if fit.outcome == "fail"
                   else f"will lose {fit.lost:.2f} s at tempo {fit.tempo:.2f} ({over})")
    return {"field": window.field, "kind": "overrun",
            "message": f"{window.field} ({window.line_id}, {window.entry.character_id}): {what}: {happens}",
            "speech_s": round(line.speech_s, 3), "window_s": round(window.window_s, 3),
            "tempo": round(fit.tempo, 3), "lost_s": round(fit.lost, 3)}


class SpeechOverrunError(PlanValidationError):
    """Lines whose speech cannot fit their windows, under the ``fail`` policy."""

    def __init__(self, issues: list[PlanIssue]):
        super().__init__(issues)
        lines = "\n".join(f"  - {issue}" for issue in issues)
        ValueError.__init__(self, f"{len(issues)} line{'s' * (len(issues) != 1)} would lose speech and "
                                  f"{OVERRUN_VARIABLE}=fail:\n{lines}")


def overrun_failure(problems: Iterable[tuple[str, str]]) -> SpeechOverrunError:
    """The refusal for (field, what happens) pairs, with what to do about it."""
    return SpeechOverrunError([
        PlanIssue(field, f"{what}; shorten the line, give it more room (start the next line later), or raise "
                         f"{MAX_TEMPO_VARIABLE} (at most {MAX_TEMPO_LIMIT:g}) or set {OVERRUN_VARIABLE}=trim")
        for field, what in problems])


def predicted_losses(plan: MoviePlan, timing: SpeechTiming, fields: dict[str, str] | None = None) -> list[PlanIssue]:
    """Lines the engine's pace says will lose speech (or fail): as plan problems, for a planner to fix."""
    issues = []
    for window in line_windows(plan, fields):
        profile = plan.character(window.entry.character_id).voice_profile
        speech = timing.seconds(window.entry.text, profile)
        fit = fit_speech(speech, window.window_s, timing.policy)
        if fit.outcome in ("trim", "fail"):
            room = round(window.window_s * timing.policy.max_tempo - 0.05, 2)
            issues.append(PlanIssue(window.field, (
                f"its text takes about {speech:.2f} s to speak but the line has {window.window_s:.2f} s before the "
                f"next line (or the film's end), even sped up {timing.policy.max_tempo:g}x about "
                f"{fit.lost:.2f} s would be cut: shorten the text (to about {max(room, 0):.1f} s of speech) or give "
                f"the line more time (set duration_sec to at least {speech:.2f} and move later entries and "
                "shots to make room)")))
    return issues
