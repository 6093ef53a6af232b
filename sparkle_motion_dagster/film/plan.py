"""The MoviePlan: schema, invariants, normalization and loading.

A plan is what the film is made from: characters with voices, shots with
durations, N+1 base images (shot *i* runs from base image *i* to *i+1*), one
dialogue timeline on a continuous clock, and a mandatory render profile.

Every problem found is reported as a :class:`PlanIssue` whose ``path`` names the
field (``shots[1].start_base_image_id``) and whose ``reason`` says what is wrong;
:class:`PlanValidationError` carries all of them at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# Times are compared with this tolerance so that 8.4 + 2.6 == 11.0 holds.
TIME_EPSILON = 1e-6
SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class VoiceProfile(_Open):
    """How a character sounds. Engines read the keys they understand.

    ``language`` (BCP 47, e.g. ``en-US``), ``style`` (free text such as
    ``calm``), and optional engine hints: ``variant``, ``pitch`` (0-100),
    ``rate`` (words per minute), ``gender``.
    """

    style: str | None = None
    language: str = "en-US"
    variant: str | None = None
    pitch: Annotated[int, Field(ge=0, le=100)] | None = None
    rate: Annotated[int, Field(ge=80, le=450)] | None = None
    gender: Literal["female", "male", "neutral"] | None = None


class Character(_Strict):
    id: str
    name: str
    description: str = ""
    voice_profile: VoiceProfile = Field(default_factory=VoiceProfile)


class BaseImage(_Strict):
    id: str
    prompt: Annotated[str, Field(min_length=1)]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        seed = self.metadata.get("seed")
        return int(seed) if isinstance(seed, (int, str)) and str(seed).lstrip("-").isdigit() else None


class Shot(_Strict):
    id: str
    duration_sec: Annotated[float, Field(gt=0, le=3600)]
    setting: str = ""
    visual_description: str = ""
    start_base_image_id: str
    end_base_image_id: str
    motion_prompt: str = ""
    is_talking_closeup: bool = False


class DialogueEntry(_Strict):
    type: Literal["dialogue"] = "dialogue"
    character_id: str
    text: Annotated[str, Field(min_length=1)]
    start_time_sec: Annotated[float, Field(ge=0)]
    duration_sec: Annotated[float, Field(gt=0)]

    @property
    def end_time_sec(self) -> float:
        return self.start_time_sec + self.duration_sec


class SilenceEntry(_Strict):
    type: Literal["silence"] = "silence"
    start_time_sec: Annotated[float, Field(ge=0)]
    duration_sec: Annotated[float, Field(gt=0)]

    @property
    def end_time_sec(self) -> float:
        return self.start_time_sec + self.duration_sec


TimelineEntry = Annotated[Union[DialogueEntry, SilenceEntry], Field(discriminator="type")]


class VideoProfile(_Open):
    """The video stage's declared model; extra keys (``notes``, ``runtime``) are kept."""

    model_id: Annotated[str, Field(min_length=1)]
    max_fps: Annotated[float, Field(gt=0, le=120)] = 24
    width: Annotated[int, Field(ge=64, le=7680, multiple_of=2)] | None = None
    height: Annotated[int, Field(ge=64, le=4320, multiple_of=2)] | None = None


class ImagesProfile(_Open):
    """Keyframe settings for image models (the seed's ``sdxl_config``); the storyboard ignores them."""

    steps: Annotated[int, Field(ge=1, le=500)] | None = None
    guidance: Annotated[float, Field(ge=0, le=50)] | None = None
    scheduler: str | None = None
    negative_prompt: str | None = None


class RenderProfile(_Open):
    video: VideoProfile
    images: ImagesProfile | None = None


class MoviePlan(_Strict):
    title: Annotated[str, Field(min_length=1)]
    characters: list[Character] = Field(default_factory=list)
    base_images: list[BaseImage]
    shots: list[Shot]
    dialogue_timeline: list[TimelineEntry] = Field(default_factory=list)
    render_profile: RenderProfile
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def runtime_sec(self) -> float:
        return round(sum(shot.duration_sec for shot in self.shots), 6)

    @property
    def fps(self) -> float:
        return float(self.render_profile.video.max_fps)

    def dialogue_lines(self) -> list[tuple[str, DialogueEntry]]:
        """Dialogue entries in timeline order with their stable line ids."""
        entries = sorted(
            (e for e in self.dialogue_timeline if isinstance(e, DialogueEntry)),
            key=lambda e: e.start_time_sec,
        )
        return [(f"line_{index:03d}", entry) for index, entry in enumerate(entries)]

    def base_image(self, image_id: str) -> BaseImage:
        return next(image for image in self.base_images if image.id == image_id)

    def character(self, character_id: str) -> Character:
        return next(c for c in self.characters if c.id == character_id)

    def plan_id(self) -> str:
        """A content id: the same normalized plan always has the same plan_id."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "plan_" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PlanIssue:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class PlanInputError(ValueError):
    """A plan file that cannot be read at all (missing, not JSON, not an object)."""


class PlanValidationError(ValueError):
    """A plan that was read but breaks the schema or an invariant."""

    def __init__(self, issues: list[PlanIssue]):
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"invalid MoviePlan ({len(issues)} problem{'s' * (len(issues) != 1)}):\n{lines}")


def _format_loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("dialogue", "silence") and path.endswith("]"):
            continue  # pydantic names the union member; users think in fields
        else:
            path += f".{part}" if path else str(part)
    return path


def id_problem(value: str) -> str | None:
    """Why ``value`` is not safe as a path component, or None when it is."""
    if not SAFE_ID.match(value):
        return "must be 1-128 characters of letters, digits, '_', '-' or '.'"
    if ".." in value or value in (".",):
        return "must not contain '..' or be '.'"
    return None


def check_invariants(plan: MoviePlan) -> list[PlanIssue]:
    """Cross-field rules the schema alone cannot express."""
    issues: list[PlanIssue] = []
    for field in ("characters", "base_images", "shots"):
        seen: set[str] = set()
        for index, item in enumerate(getattr(plan, field)):
            problem = id_problem(item.id)
            if problem:
                issues.append(PlanIssue(f"{field}[{index}].id", f"{item.id!r} {problem}"))
            if item.id in seen:
                issues.append(PlanIssue(f"{field}[{index}].id", f"duplicate id {item.id!r}"))
            seen.add(item.id)

    if not plan.shots:
        issues.append(PlanIssue("shots", "a plan needs at least one shot"))
    if len(plan.base_images) != len(plan.shots) + 1:
        issues.append(
            PlanIssue(
                "base_images",
                f"expected len(shots) + 1 = {len(plan.shots) + 1} base images, got {len(plan.base_images)}",
            )
        )
    for index, shot in enumerate(plan.shots):
        for field, image_index in (("start_base_image_id", index), ("end_base_image_id", index + 1)):
            actual = getattr(shot, field)
            if image_index < len(plan.base_images):
                expected = plan.base_images[image_index].id
                if actual != expected:
                    issues.append(
                        PlanIssue(
                            f"shots[{index}].{field}",
                            f"must be base_images[{image_index}].id {expected!r}, got {actual!r}",
                        )
                    )

    character_ids = {c.id for c in plan.characters}
    runtime = plan.runtime_sec
    ordered = sorted(enumerate(plan.dialogue_timeline), key=lambda item: item[1].start_time_sec)
    previous: tuple[int, float] | None = None
    for index, entry in ordered:
        if isinstance(entry, DialogueEntry) and entry.character_id not in character_ids:
            issues.append(
                PlanIssue(
                    f"dialogue_timeline[{index}].character_id",
                    f"unknown character {entry.character_id!r}; known: {sorted(character_ids)}",
                )
            )
        if previous is not None and entry.start_time_sec < previous[1] - TIME_EPSILON:
            issues.append(
                PlanIssue(
                    f"dialogue_timeline[{index}].start_time_sec",
                    f"starts at {entry.start_time_sec}s, overlapping dialogue_timeline[{previous[0]}] "
                    f"which ends at {round(previous[1], 6)}s",
                )
            )
        if entry.end_time_sec > runtime + TIME_EPSILON:
            issues.append(
                PlanIssue(
                    f"dialogue_timeline[{index}].duration_sec",
                    f"ends at {round(entry.end_time_sec, 6)}s, after the total shot runtime {runtime}s",
                )
            )
        if previous is None or entry.end_time_sec > previous[1]:
            previous = (index, entry.end_time_sec)
    return issues


def normalize(plan: MoviePlan) -> MoviePlan:
    """Sort the timeline and fill every gap with an explicit silence entry.

    The result covers exactly ``[0, runtime]``, as every downstream stage assumes.
    """
    filled: list[DialogueEntry | SilenceEntry] = []
    clock = 0.0
    for entry in sorted(plan.dialogue_timeline, key=lambda e: e.start_time_sec):
        if entry.start_time_sec > clock + TIME_EPSILON:
            filled.append(SilenceEntry(start_time_sec=round(clock, 6), duration_sec=round(entry.start_time_sec - clock, 6)))
        filled.append(entry)
        clock = max(clock, entry.end_time_sec)
    runtime = plan.runtime_sec
    if runtime > clock + TIME_EPSILON:
        filled.append(SilenceEntry(start_time_sec=round(clock, 6), duration_sec=round(runtime - clock, 6)))
    return plan.model_copy(update={"dialogue_timeline": filled})


def validate_plan(data: Any) -> MoviePlan:
    """Parse, check and normalize a MoviePlan, or raise PlanValidationError with every issue."""
    if not isinstance(data, dict):
        raise PlanValidationError([PlanIssue("", f"a plan must be a JSON object, got {type(data).__name__}")])
    try:
        plan = MoviePlan.model_validate(data)
    except ValidationError as exc:
        raise PlanValidationError(
            [PlanIssue(_format_loc(err["loc"]), err["msg"]) for err in exc.errors()]
        ) from None
    issues = check_invariants(plan)
    if issues:
        raise PlanValidationError(issues)
    return normalize(plan)


@dataclass(frozen=True)
class PlanDocument:
    """A plan as read from disk: the plan, plus the envelope's request when there was one."""

    plan: MoviePlan
    request: dict[str, Any] | None
    envelope_metadata: dict[str, Any]


def parse_plan_document(data: Any) -> PlanDocument:
    """Accept a bare MoviePlan or the script agent's plan artifact envelope."""
    if isinstance(data, dict) and "validated_plan" in data:
        try:
            plan = validate_plan(data["validated_plan"])
        except PlanValidationError as exc:
            raise PlanValidationError(
                [PlanIssue(f"validated_plan.{i.path}" if i.path else "validated_plan", i.reason) for i in exc.issues]
            ) from None
        request = data.get("request") if isinstance(data.get("request"), dict) else None
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        return PlanDocument(plan, request, metadata)
    return PlanDocument(validate_plan(data), None, {})


def read_json_file(path: str | Path) -> Any:
    """Read JSON with errors that say which file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise PlanInputError(f"plan file not found: {path}")
    if not path.is_file():
        raise PlanInputError(f"not a file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PlanInputError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise PlanInputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def load_plan_document(path: str | Path) -> PlanDocument:
    return parse_plan_document(read_json_file(path))


def with_video_size(document: dict, width: int, height: int) -> dict:
    """The same plan document with render_profile.video width and height set (the envelope's or the bare plan's)."""
    document = json.loads(json.dumps(document))
    plan = document["validated_plan"] if isinstance(document.get("validated_plan"), dict) else document
    video = plan.setdefault("render_profile", {}).setdefault("video", {})
    if isinstance(video, dict):
        video.update(width=width, height=height)
    return document


def plan_json_schema() -> dict[str, Any]:
    return TypeAdapter(MoviePlan).json_schema()


def summarize(plan: MoviePlan) -> dict[str, Any]:
    """The counts a user checks before paying for a render."""
    lines = plan.dialogue_lines()
    return {
        "title": plan.title,
        "plan_id": plan.plan_id(),
        "shots": len(plan.shots),
        "base_images": len(plan.base_images),
        "characters": len(plan.characters),
        "dialogue_lines": len(lines),
        "timeline_entries": len(plan.dialogue_timeline),
        "runtime_sec": plan.runtime_sec,
        "fps": plan.fps,
        "video_model_id": plan.render_profile.video.model_id,
    }
