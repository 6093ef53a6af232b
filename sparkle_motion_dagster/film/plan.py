"""The MoviePlan: schema, invariants, normalization and loading.

A plan is what the film is made from: characters with voices, shots with
durations, N+1 base images (shot *i* runs from base image *i* to *i+1*), one
dialogue timeline on a continuous clock, and a mandatory render profile.

Every problem found is reported as a :class:`PlanIssue` whose ``path`` names the
field (``shots[1].start_base_image_id``) and whose ``reason`` says what is wrong;
:class:`PlanValidationError` carries all of them at once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from sparkle_motion_dagster.film.cast import fill_cast
from sparkle_motion_dagster.film.levers import attention_backend_problem, cache_setting
from sparkle_motion_dagster.film.timeline import shot_frame_counts

# Times are compared with this tolerance so that 8.4 + 2.6 == 11.0 holds.
TIME_EPSILON = 1e-6
# Checked with fullmatch: a trailing newline is not part of a safe id.
SAFE_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# The frame rates the encoder is given (ffmpeg takes far more; a film outside these is a mistake).
MIN_FPS, MAX_FPS = 1, 120
# Seeds reach numpy, torch and the storyboard's hash; every one of them takes 0 <= seed < 2**32.
SEED_LIMIT = 2**32
# ``metadata`` objects travel with every manifest: a few levels and a few KiB are plenty.
MAX_METADATA_DEPTH = 8
MAX_METADATA_BYTES = 16 * 1024
# Lists and objects nested deeper than this are refused when a plan file is read.
MAX_JSON_DEPTH = 64
# What one plan may hold. Every stage's cost grows with these, so a plan beyond them is refused
# before anything is paid for. A line is what one character says in one go: 2,000 characters
# are about 350 words, two minutes of speech, far past any real line (split a monologue into
# lines), and the speech engines, the dry run's measurement and a subtitle cue all stay cheap.
MAX_LINE_CHARS = 2_000
MAX_SHOTS = 5_000
MAX_CHARACTERS = 200
MAX_TIMELINE_ENTRIES = 10_000
# A plan file (or an envelope holding one): 5,000 shots with their keyframe prompts and every
# line at its longest would not fit, and nothing real comes close.
MAX_PLAN_BYTES = 4 * 1024 * 1024


def _frame_rate_in_range(value: float) -> float:
    """max_fps within what the encoder accepts."""
    if not MIN_FPS <= value <= MAX_FPS:
        raise ValueError(f"must be between {MIN_FPS} and {MAX_FPS} frames per second "
                         f"(what the encoder accepts), got {value:g}")
    return value


def _line_length(text: str) -> str:
    """A dialogue line no longer than ``MAX_LINE_CHARS``."""
    if len(text) > MAX_LINE_CHARS:
        raise ValueError(f"is {len(text)} characters; a line is at most {MAX_LINE_CHARS} "
                         "(about two minutes of speech): split it into several lines")
    return text


def _at_most(count: int, what: str):
    """A list field of at most ``count`` items, refused with the limit in words."""

    def check(items: list) -> list:
        if len(items) > count:
            raise ValueError(f"has {len(items)} {what}; a plan holds at most {count}")
        return items

    return AfterValidator(check)


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
    reference_image: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """A portrait that keyframes keep the character looking like: a file (a path relative to the
    plan file when submitted from one) or a path under the artifact root. Without it the
    keyframe model draws one from ``description`` (the ``character_refs`` stage)."""


class BaseImage(_Strict):
    id: str
    prompt: Annotated[str, Field(min_length=1)]
    metadata: dict[str, Any] = Field(default_factory=dict)
    characters: list[str] | None = None
    """The ids of the characters in this keyframe; when absent, those its prompt mentions (``film/cast.py``)."""

    @property
    def seed(self) -> int | None:
        """The declared seed (``metadata.seed``, an integer or a string of digits), or None."""
        seed = self.metadata.get("seed")
        return int(seed) if seed is not None and seed_problem(seed) is None else None


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
    text: Annotated[str, Field(min_length=1, json_schema_extra={"maxLength": MAX_LINE_CHARS}),
                    AfterValidator(_line_length)]
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


def _attention_backend(value: str) -> str:
    problem = attention_backend_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class LoraRef(_Strict):
    """One LoRA file (diffusers or a common community format) and the scale it is applied at."""

    path: Annotated[str, Field(min_length=1, max_length=4096)]
    scale: Annotated[float, Field(ge=-10, le=10)] = 1.0
    # Wan 2.2 A14B: "transformer" is the high-noise expert, "transformer_2" the low-noise one.
    transformer: Literal["transformer", "transformer_2"] | None = None


class _Levers(_Open):
    """The speed levers both image and video models take (see ``film/levers.py``)."""

    preset: Literal["quality", "fast"] | None = None
    steps: Annotated[int, Field(ge=1, le=500)] | None = None
    guidance: Annotated[float, Field(ge=0, le=50)] | None = None
    loras: Annotated[list[LoraRef], Field(max_length=8)] | None = None
    attention_backend: Annotated[str, AfterValidator(_attention_backend)] | None = None
    compile: Literal["off", "regional"] | None = None
    cache: Annotated[str, BeforeValidator(cache_setting)] | None = None


class VideoProfile(_Levers):
    """The video stage's declared model and its levers; extra keys (``notes``, ``runtime``) are kept."""

    model_id: Annotated[str, Field(min_length=1)]
    max_fps: Annotated[float, AfterValidator(_frame_rate_in_range),
                       Field(json_schema_extra={"minimum": MIN_FPS, "maximum": MAX_FPS})] = 24
    width: Annotated[int, Field(ge=64, le=7680, multiple_of=2)] | None = None
    height: Annotated[int, Field(ge=64, le=4320, multiple_of=2)] | None = None
    shift: Annotated[float, Field(gt=0, le=100)] | None = None
    retime: Literal["motion", "blend"] | None = None
    waypoints: bool | None = None


class ImagesProfile(_Levers):
    """Keyframe settings for image models (the seed's ``sdxl_config``); the storyboard ignores them."""

    scheduler: str | None = None
    negative_prompt: str | None = None


class RenderProfile(_Open):
    video: VideoProfile
    images: ImagesProfile | None = None


class MoviePlan(_Strict):
    title: Annotated[str, Field(min_length=1)]
    characters: Annotated[list[Character], _at_most(MAX_CHARACTERS, "characters")] = Field(default_factory=list)
    base_images: Annotated[list[BaseImage], _at_most(MAX_SHOTS + 1, "base images")]
    shots: Annotated[list[Shot], _at_most(MAX_SHOTS, "shots")]
    dialogue_timeline: Annotated[list[TimelineEntry], _at_most(MAX_TIMELINE_ENTRIES, "timeline entries")] = \
        Field(default_factory=list)
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


def _schema_issues(exc: ValidationError) -> list[PlanIssue]:
    """pydantic's errors as issues; a validator's own message is kept without pydantic's prefix."""
    issues = []
    for err in exc.errors():
        own = err.get("ctx", {}).get("error") if err["type"] == "value_error" else None
        issues.append(PlanIssue(_format_loc(err["loc"]), str(own) if own is not None else err["msg"]))
    return issues


def id_problem(value: str) -> str | None:
    """Why ``value`` is not safe as a path component, or None when it is."""
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value):
        return "must be 1-128 characters of letters, digits, '_', '-' or '.'"
    if ".." in value or value in (".",):
        return "must not contain '..' or be '.'"
    return None


def _shown_integer(value: int) -> str:
    """An integer as a message shows it: its digits when short, its size when huge."""
    return str(value) if abs(value) < 10**20 else f"an integer of {value.bit_length()} bits"


def seed_problem(value: Any) -> str | None:
    """Why ``value`` cannot seed the renderers, or None: an integer (or a string of
    digits) with ``0 <= seed < 2**32``."""
    expected = f"must be an integer with 0 <= seed < 2**32 ({SEED_LIMIT})"
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            return f"{expected}, got the string {value!r:.48}"
        if len(value) > len(str(SEED_LIMIT)):
            return f"{expected}, got a string of {len(value)} digits"
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        return f"{expected}, got {type(value).__name__} {value!r:.48}"
    if not 0 <= value < SEED_LIMIT:
        return f"{expected}, got {_shown_integer(value)}"
    return None


def checked_seed(value: Any, *, field: str = "seed") -> int:
    """``value`` as a seed, or ValueError naming ``field`` and the rule (:func:`seed_problem`):
    the one check for every seed a person gives, on a plan, a command line or the service."""
    problem = seed_problem(value)
    if problem:
        raise ValueError(f"{field}: {problem}")
    return int(value)


def _seed_in_range(value: int) -> int:
    problem = seed_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Seed = Annotated[int, AfterValidator(_seed_in_range)]
"""A pydantic field holding a seed: refused, naming the field, unless ``0 <= seed < 2**32``."""


def nesting_depth(value: Any, *, limit: int) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0, ``{}`` is 1).

    Measured level by level, without recursion, so any depth is safe; counting
    stops one level past ``limit``.
    """
    depth, level = 0, [value]
    while depth <= limit:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            break
        depth += 1
        level = [child for c in containers for child in (c.values() if isinstance(c, dict) else c)]
    return depth


def metadata_problem(value: Any) -> str | None:
    """Why a ``metadata`` object is too deep or too big to travel with every manifest, or None."""
    if nesting_depth(value, limit=MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        return f"nests lists and objects more than {MAX_METADATA_DEPTH} levels deep"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr, allow_nan=False)
    except ValueError as error:  # infinity or NaN, or an integer too long to write out
        if "float" in str(error):
            return "holds infinity or NaN, which JSON cannot carry"
        return "holds a number too long to write as JSON"
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_METADATA_BYTES:
        return f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES} ({MAX_METADATA_BYTES // 1024} KiB) are allowed"
    return None


def speakable(text: str) -> bool:
    """Whether ``text`` gives a speech engine something to say: a letter or a digit, in any script."""
    return any(character.isalnum() for character in text)


Fields = dict[str, Any]
ENTRY_MODELS: dict[str, type[BaseModel]] = {"dialogue": DialogueEntry, "silence": SilenceEntry}


def _fields_of(item: BaseModel) -> Fields:
    """Every field of a parsed model, by name."""
    return {name: getattr(item, name) for name in type(item).model_fields}


def _valid_fields(model: type[BaseModel], raw: Any) -> Fields | None:
    """The fields of ``raw`` that are valid on their own, parsed as ``model`` parses them
    (defaults for the optional ones left out); None when ``raw`` is not an object."""
    if not isinstance(raw, dict):
        return None
    fields: Fields = {}
    for name, info in model.model_fields.items():
        if name not in raw:
            if not info.is_required():
                fields[name] = info.get_default(call_default_factory=True)
            continue
        try:
            checked = model.__pydantic_validator__.validate_assignment(model.model_construct(), name, raw[name])
        except ValidationError:
            continue
        fields[name] = getattr(checked, name)
    return fields


def _entry_fields(raw: Any) -> Fields | None:
    """A timeline entry's valid fields, parsed as the entry its ``type`` names."""
    kind = raw.get("type", "dialogue") if isinstance(raw, dict) else None
    model = ENTRY_MODELS.get(kind) if isinstance(kind, str) else None
    return _valid_fields(model, raw) if model else None


@dataclass(frozen=True)
class PlanParts:
    """What the cross-field checks look at, as far as it parsed.

    Each list holds its items' valid fields (None for an item that is not an
    object); a list is None when it is not a list, ``fps`` and ``metadata`` are
    None when they did not parse. A whole plan gives every part.
    """

    characters: list[Fields | None] | None
    base_images: list[Fields | None] | None
    shots: list[Fields | None] | None
    dialogue_timeline: list[Fields | None] | None
    fps: float | None
    metadata: Any

    @classmethod
    def of_plan(cls, plan: MoviePlan) -> PlanParts:
        """Every part of a plan that parsed whole."""
        return cls(
            characters=[_fields_of(item) for item in plan.characters],
            base_images=[_fields_of(item) for item in plan.base_images],
            shots=[_fields_of(item) for item in plan.shots],
            dialogue_timeline=[_fields_of(item) for item in plan.dialogue_timeline],
            fps=plan.fps,
            metadata=plan.metadata,
        )

    @classmethod
    def of_raw(cls, data: dict[str, Any]) -> PlanParts:
        """The parts of a plan object that failed the schema, each parsed on its own."""

        def items(name: str, parse, default: Any = None) -> list[Fields | None] | None:
            raw = data.get(name, default)
            return [parse(item) for item in raw] if isinstance(raw, list) else None

        profile = data.get("render_profile")
        video = _valid_fields(VideoProfile, profile.get("video")) if isinstance(profile, dict) else None
        metadata = data.get("metadata", {})
        return cls(
            characters=items("characters", lambda raw: _valid_fields(Character, raw), []),
            base_images=items("base_images", lambda raw: _valid_fields(BaseImage, raw)),
            shots=items("shots", lambda raw: _valid_fields(Shot, raw)),
            dialogue_timeline=items("dialogue_timeline", _entry_fields, []),
            fps=(video or {}).get("max_fps"),
            metadata=metadata if isinstance(metadata, dict) else None,
        )


def _known(items: list[Fields | None] | None) -> list[tuple[int, Fields]]:
    """(index, fields) of the items that are objects."""
    return [(index, item) for index, item in enumerate(items or []) if item is not None]


def _id_issues(parts: PlanParts) -> list[PlanIssue]:
    """Ids that are unsafe as path components, or repeated within their list."""
    issues: list[PlanIssue] = []
    for field in ("characters", "base_images", "shots"):
        seen: set[str] = set()
        for index, item in _known(getattr(parts, field)):
            if "id" not in item:
                continue
            problem = id_problem(item["id"])
            if problem:
                issues.append(PlanIssue(f"{field}[{index}].id", f"{item['id']!r} {problem}"))
            if item["id"] in seen:
                issues.append(PlanIssue(f"{field}[{index}].id", f"duplicate id {item['id']!r}"))
            seen.add(item["id"])
    return issues


def _keyframe_issues(parts: PlanParts) -> list[PlanIssue]:
    """N shots need N+1 base images, and shot i runs from base image i to i+1."""
    issues: list[PlanIssue] = []
    if parts.shots is not None and not parts.shots:
        issues.append(PlanIssue("shots", "a plan needs at least one shot"))
    if parts.shots is None or parts.base_images is None:
        return issues
    if len(parts.base_images) != len(parts.shots) + 1:
        expected = len(parts.shots) + 1
        issues.append(PlanIssue("base_images",
                                f"expected len(shots) + 1 = {expected} base images, got {len(parts.base_images)}"))
    for index, shot in _known(parts.shots):
        for field, image_index in (("start_base_image_id", index), ("end_base_image_id", index + 1)):
            image = parts.base_images[image_index] if image_index < len(parts.base_images) else None
            if field not in shot or image is None or "id" not in image:
                continue
            if shot[field] != image["id"]:
                issues.append(PlanIssue(f"shots[{index}].{field}",
                                        f"must be base_images[{image_index}].id {image['id']!r}, got {shot[field]!r}"))
    return issues


def _runtime(parts: PlanParts) -> float | None:
    """The total shot runtime, when every shot's duration parsed."""
    if parts.shots is None or any(shot is None or "duration_sec" not in shot for shot in parts.shots):
        return None
    return round(sum(shot["duration_sec"] for shot in parts.shots), 6)


def _character_ids(parts: PlanParts) -> set[str] | None:
    """Every character id, when every character's id parsed."""
    if parts.characters is None or any(c is None or "id" not in c for c in parts.characters):
        return None
    return {c["id"] for c in parts.characters}


def _cast_issues(parts: PlanParts) -> list[PlanIssue]:
    """A keyframe's characters are characters of the plan, each listed once."""
    issues: list[PlanIssue] = []
    character_ids = _character_ids(parts)
    for index, image in _known(parts.base_images):
        seen: set[str] = set()
        for position, character_id in enumerate(image.get("characters") or []):
            field = f"base_images[{index}].characters[{position}]"
            if character_ids is not None and character_id not in character_ids:
                issues.append(PlanIssue(field, f"{character_id!r} is not a character of this plan; "
                                               f"characters: {', '.join(sorted(character_ids)) or 'none'}"))
            elif character_id in seen:
                issues.append(PlanIssue(field, f"{character_id!r} is listed twice"))
            seen.add(character_id)
    return issues


def _timeline_issues(parts: PlanParts) -> list[PlanIssue]:
    """Dialogue by known characters, with something to say, on one clock without overlaps, within the runtime."""
    issues: list[PlanIssue] = []
    character_ids, runtime = _character_ids(parts), _runtime(parts)
    entries = _known(parts.dialogue_timeline)
    for index, entry in entries:
        if entry.get("type") != "dialogue":
            continue
        if character_ids is not None and "character_id" in entry and entry["character_id"] not in character_ids:
            issues.append(PlanIssue(f"dialogue_timeline[{index}].character_id",
                                    f"unknown character {entry['character_id']!r}; known: {sorted(character_ids)}"))
        if "text" in entry and not speakable(entry["text"]):
            issues.append(PlanIssue(f"dialogue_timeline[{index}].text",
                                    f"has nothing to speak: {entry['text']!r:.48} holds no letter or digit"))
    timed = [(index, entry["start_time_sec"], entry["start_time_sec"] + entry["duration_sec"])
             for index, entry in entries if "start_time_sec" in entry and "duration_sec" in entry]
    previous: tuple[int, float] | None = None
    for index, start, end in sorted(timed, key=lambda item: item[1]):
        if previous is not None and start < previous[1] - TIME_EPSILON:
            issues.append(PlanIssue(f"dialogue_timeline[{index}].start_time_sec",
                                    f"starts at {start}s, overlapping dialogue_timeline[{previous[0]}] "
                                    f"which ends at {round(previous[1], 6)}s"))
        if runtime is not None and end > runtime + TIME_EPSILON:
            issues.append(PlanIssue(f"dialogue_timeline[{index}].duration_sec",
                                    f"ends at {round(end, 6)}s, after the total shot runtime {runtime}s"))
        if previous is None or end > previous[1]:
            previous = (index, end)
    return issues


def _frame_issues(parts: PlanParts) -> list[PlanIssue]:
    """Every shot needs at least one frame at the plan's frame rate."""
    if parts.fps is None or parts.shots is None:
        return []
    fps = parts.fps
    durations = [shot.get("duration_sec") if shot else None for shot in parts.shots]
    if all(duration is not None for duration in durations):
        frames = shot_frame_counts(durations, fps)  # exactly what the clip stage renders
    else:
        frames = [None if duration is None else int(duration * fps + 1e-9) for duration in durations]
    return [
        PlanIssue(f"shots[{index}].duration_sec",
                  f"{duration:g} s would have no frames at {fps:g} fps: a shot needs at least one frame "
                  f"({1 / fps:.6g} s)")
        for index, (duration, count) in enumerate(zip(durations, frames))
        if duration is not None and count < 1
    ]


def _seed_and_metadata_issues(parts: PlanParts) -> list[PlanIssue]:
    """Seeds the renderers accept, and metadata of a sane depth and size."""
    issues: list[PlanIssue] = []
    places = [("metadata", parts.metadata)]
    places += [(f"base_images[{index}].metadata", image.get("metadata")) for index, image in _known(parts.base_images)]
    for path, metadata in places:
        if not isinstance(metadata, dict):
            continue
        problem = metadata_problem(metadata)
        if problem:
            issues.append(PlanIssue(path, problem))
        elif path != "metadata" and metadata.get("seed") is not None:
            problem = seed_problem(metadata["seed"])
            if problem:
                issues.append(PlanIssue(f"{path}.seed", problem))
    return issues


def check_parts(parts: PlanParts) -> list[PlanIssue]:
    """Every cross-field rule, on whatever parsed."""
    return (_id_issues(parts) + _keyframe_issues(parts) + _cast_issues(parts) + _timeline_issues(parts)
            + _frame_issues(parts) + _seed_and_metadata_issues(parts))


def check_invariants(plan: MoviePlan) -> list[PlanIssue]:
    """Cross-field rules the schema alone cannot express."""
    return check_parts(PlanParts.of_plan(plan))


def normalize(plan: MoviePlan) -> MoviePlan:
    """Sort the timeline and fill every gap with an explicit silence entry; write out every
    keyframe's cast (read from its prompt where the plan gave none: ``film/cast.py``).

    The timeline covers exactly ``[0, runtime]``, as every downstream stage assumes.
    """
    plan = fill_cast(plan)
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
    """Parse, check and normalize a MoviePlan, or raise PlanValidationError with every issue.

    When fields fail the schema, the cross-field rules still run on what parsed,
    so one bad field does not hide the others' problems.
    """
    if not isinstance(data, dict):
        raise PlanValidationError([PlanIssue("", f"a plan must be a JSON object, got {type(data).__name__}")])
    try:
        plan = MoviePlan.model_validate(data)
    except ValidationError as exc:
        issues = _schema_issues(exc)
        issues += [issue for issue in check_parts(PlanParts.of_raw(data)) if issue not in issues]
        raise PlanValidationError(issues) from None
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


def plan_too_big(source: str, size: int) -> str:
    """Why a plan of ``size`` bytes is refused."""
    return (f"{source} is {size} bytes; a plan is at most {MAX_PLAN_BYTES} bytes "
            f"({MAX_PLAN_BYTES // (1024 * 1024)} MiB)")


def decode_json(data: bytes, *, source: str) -> Any:
    """A JSON file's bytes as a value, or PlanInputError naming ``source`` and what is wrong."""
    too_deep = f"{source} is not usable JSON: lists and objects nest deeper than {MAX_JSON_DEPTH} levels"
    if len(data) > MAX_PLAN_BYTES:
        raise PlanInputError(plan_too_big(source, len(data)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanInputError(f"{source} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanInputError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # json raises it for an integer longer than Python converts
        raise PlanInputError(f"{source} is not usable JSON: a number has more than "
                             f"{sys.get_int_max_str_digits()} digits") from None
    except RecursionError:
        raise PlanInputError(too_deep) from None
    if nesting_depth(value, limit=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise PlanInputError(too_deep)
    return value


def decode_plan_text(text: str, *, source: str) -> Any:
    """Pasted plan text, JSON or YAML, as a value; or PlanInputError naming ``source``.

    JSON goes through :func:`decode_json`. YAML is read event by event first (PyYAML's
    parser does not recurse; building the value does), so nesting deeper than
    ``MAX_JSON_DEPTH`` is refused before anything is built, and so are anchors and
    aliases: a plan never needs them, and an alias bomb expands to billions of items."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_PLAN_BYTES:
        raise PlanInputError(plan_too_big(source, len(data)))
    try:
        return decode_json(data, source=source)
    except PlanInputError as exc:
        if "is not valid JSON" not in str(exc):
            raise
    import yaml

    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise PlanInputError(f"{source} is not usable YAML: it uses anchors or aliases "
                                     f"(line {event.start_mark.line + 1}); write each value out")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    raise PlanInputError(f"{source} is not usable YAML: lists and objects nest deeper "
                                         f"than {MAX_JSON_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.safe_load(text)
    except PlanInputError:
        raise
    except yaml.YAMLError as exc:
        raise PlanInputError(f"{source} is neither JSON nor YAML: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise PlanInputError(f"{source} is not usable YAML: {exc}") from None


def read_json_file(path: str | Path) -> Any:
    """Read JSON with errors that say which file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise PlanInputError(f"plan file not found: {path}")
    if not path.is_file():
        raise PlanInputError(f"not a file: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlanInputError(f"{path} cannot be read: {exc.strerror or exc}") from None
    return decode_json(data, source=str(path))


def read_plan_file(path: str | Path) -> Any:
    """A plan file's document, with each ``characters[].reference_image`` that names a file beside it
    (a path relative to the plan file) made absolute, so the run finds it wherever it is filmed from."""
    return anchor_reference_images(read_json_file(path), Path(path).resolve().parent)


def anchor_reference_images(document: Any, folder: Path) -> Any:
    """The document with relative ``reference_image`` paths that exist under ``folder`` made absolute;
    other values are left for validation and the ``character_refs`` stage to judge."""
    plan = document.get("validated_plan") if isinstance(document, dict) and "validated_plan" in document else document
    characters = plan.get("characters") if isinstance(plan, dict) else None
    if not isinstance(characters, list):
        return document
    document = copy.deepcopy(document)
    plan = document["validated_plan"] if "validated_plan" in document else document
    for character in plan["characters"]:
        value = character.get("reference_image") if isinstance(character, dict) else None
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            candidate = folder / value
            if candidate.is_file():
                character["reference_image"] = str(candidate.resolve())
    return document


def load_plan_document(path: str | Path) -> PlanDocument:
    return parse_plan_document(read_plan_file(path))


def with_video_size(document: Any, width: int, height: int) -> Any:
    """The same plan document with render_profile.video width and height set (the envelope's or the bare plan's).

    A document with no object to hold them (the document, its plan, render_profile
    or video is missing or not an object) is returned unchanged, for validation to
    name the field.
    """
    if not isinstance(document, dict):
        return document
    document = copy.deepcopy(document)
    plan = document["validated_plan"] if "validated_plan" in document else document
    profile = plan.get("render_profile") if isinstance(plan, dict) else None
    video = profile.get("video") if isinstance(profile, dict) else None
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
