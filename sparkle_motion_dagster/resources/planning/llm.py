"""A planner that asks a language model for the MoviePlan (the script agent).

``LlmPlanner`` speaks the OpenAI chat-completions protocol through the ``openai``
SDK, pointed (``base_url``) at any compatible server: vLLM, Ollama, the
llama.cpp server, LM Studio or a hosted API.

One ``plan()`` call:

1. sends a system prompt holding the MoviePlan JSON Schema and the rules the
   schema cannot say (N+1 base images, shot *i* from base image *i* to *i+1*,
   one dialogue clock within the runtime, a required
   ``render_profile.video.model_id`` defaulting to ``animatic``, ids safe as
   path components), and the request (title, prompt, seed);
2. asks for ``response_format={"type": "json_object"}`` (and passes ``seed``);
   when the server answers 400/422 it is asked again without the optional
   fields its error names (all of them when it names none), and the rest of
   the call goes without;
3. takes the JSON out of the reply (bare, inside a ```` ```json ```` fence, after
   prose or a ``<think>`` block) and checks it with :func:`validate_plan`, and,
   given the speech engine's timing, that no line's speech is predicted to be
   cut (longer than the time before the next line even at the fit's tempo limit);
4. sends every problem back (field path and reason, or the JSON error) and asks
   for the whole corrected plan, at most ``max_repairs`` times;
5. returns the seed's plan artifact envelope (``request``, ``validated_plan``
   normalized with explicit silences, ``generated_at``, ``metadata``,
   ``schema_uri``); ``metadata`` has ``tool="script_agent"``, the model, the
   attempts, the repair history and the HTTP attempts; ``validated_plan.metadata``
   has ``planner="llm"`` and the model.

HTTP is the SDK's: each request times out after ``timeout_s``; timeouts,
connection errors, 408, 409, 429 and 5xx are retried ``max_retries`` times with
the SDK's exponential backoff (a ``Retry-After`` of up to a minute is honoured).
Other 4xx fail at once: 401/403 name ``SCRIPT_AGENT_API_KEY``, 404 names the
base URL and the model. A transport wrapper only watches the SDK's attempts,
for the metadata and the errors. Proxies from the environment are not used for
a server on this machine. Without an API key no ``Authorization`` header is sent,
and ``OPENAI_API_KEY`` is never read: the key is ``SCRIPT_AGENT_API_KEY`` alone.

Errors: :class:`LlmPlannerError` (a ``RuntimeError``) for the server and the
protocol; :class:`LlmPlanInvalidError` (also a ``PlanValidationError``, with
``.issues``) when the model never produced a valid plan.

``LlmPlanner.from_env()`` reads (None when ``SCRIPT_AGENT_MODEL`` is unset; each
field names its variable, see ``resources/settings.py``):

=========================  ==========================================================
SCRIPT_AGENT_MODEL         the model name as the server knows it (``llama3.1:8b``)
SCRIPT_AGENT_BASE_URL      the API root, ending in ``/v1`` (default Ollama on
                           http://127.0.0.1:11434/v1; OpenAI is https://api.openai.com/v1)
SCRIPT_AGENT_API_KEY       sent as ``Authorization: Bearer``; optional for local servers
SCRIPT_AGENT_TIMEOUT_S     seconds per HTTP request (300)
SCRIPT_AGENT_MAX_RETRIES   retries of a transient HTTP failure (3)
SCRIPT_AGENT_MAX_REPAIRS   repair rounds after an invalid plan (2)
SCRIPT_AGENT_TEMPERATURE   sampling temperature (0.4)
SCRIPT_AGENT_MAX_TOKENS    max_tokens of a reply (0 = the server's default)
SCRIPT_AGENT_JSON_MODE     1/0: ask for response_format json_object (1)
=========================  ==========================================================

The API key is kept as a ``dg.EnvVar`` reference when it comes from the
environment, so the Dagster UI shows the variable's name, never the key.

The system prompt with the schema is about 2,000 tokens and a plan about as
much again: give local servers a context of at least 8,192 tokens (Ollama:
``OLLAMA_CONTEXT_LENGTH=8192``), or the start of the prompt is cut off.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field, field_validator

from sparkle_motion_dagster.film.dialogue import estimate_speech_seconds
from sparkle_motion_dagster.film.plan import (
    PlanIssue,
    PlanValidationError,
    VoiceProfile,
    plan_json_schema,
    validate_plan,
)
from sparkle_motion_dagster.film.speech_fit import SpeechTiming, line_fields, predicted_losses
from sparkle_motion_dagster.resources.planning import Planner, plan_envelope
from sparkle_motion_dagster.resources.settings import NOT_BLANK, EnvConfigured, env_field

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"
TOOL = "script_agent"
DEFAULT_VIDEO_MODEL = "animatic"
# Request fields a server may not know; dropped (once) when it answers 400/422.
OPTIONAL_FIELDS = ("response_format", "seed")
# The statuses the SDK retries (besides timeouts and connection errors).
RETRIED_STATUS = frozenset({408, 409, 429})
# Sent when there is no key: the SDK insists on one, and the Authorization header is left out instead.
_NO_KEY = "no-key"


class LlmPlannerError(RuntimeError):
    """The model server could not be used: unreachable, refused the request, or answered nonsense."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class LlmPlanInvalidError(PlanValidationError, LlmPlannerError):
    """The model never produced a valid MoviePlan; ``issues`` are the last attempt's problems."""

    def __init__(self, message: str, issues: list[PlanIssue], history: list[dict[str, Any]]):
        self.issues = issues
        self.history = history
        self.status = None
        ValueError.__init__(self, message)


# --------------------------------------------------------------------------- prompt

# The shape of a plan, shown to the model (tests check that it validates).
EXAMPLE_PLAN: dict[str, Any] = {
    "title": "Example",
    "characters": [
        {"id": "ava", "name": "Ava", "description": "A street photographer",
         "voice_profile": {"style": "calm", "language": "en-US", "gender": "female"}},
    ],
    "base_images": [
        {"id": "frame_000", "prompt": "Wide shot of a neon rooftop at night, rain", "metadata": {"seed": 101},
         "characters": []},
        {"id": "frame_001", "prompt": "Ava at the railing, city lights behind her", "metadata": {"seed": 102},
         "characters": ["ava"]},
        {"id": "frame_002", "prompt": "Closeup of Ava smiling at sunrise", "metadata": {"seed": 103},
         "characters": ["ava"]},
    ],
    "shots": [
        {"id": "shot_001", "duration_sec": 5.0, "setting": "Neon rooftop", "visual_description": "Establishing view",
         "start_base_image_id": "frame_000", "end_base_image_id": "frame_001",
         "motion_prompt": "Slow push-in", "is_talking_closeup": False},
        {"id": "shot_002", "duration_sec": 6.0, "setting": "Neon rooftop", "visual_description": "Ava speaks",
         "start_base_image_id": "frame_001", "end_base_image_id": "frame_002",
         "motion_prompt": "Gentle dolly in", "is_talking_closeup": True},
    ],
    "dialogue_timeline": [
        {"type": "silence", "start_time_sec": 0.0, "duration_sec": 5.5},
        {"type": "dialogue", "character_id": "ava", "text": "The night is finally over.",
         "start_time_sec": 5.5, "duration_sec": 2.22},
        {"type": "silence", "start_time_sec": 7.72, "duration_sec": 3.28},
    ],
    "render_profile": {"video": {"model_id": "animatic", "max_fps": 24}},
    "metadata": {},
}

_SCHEMA_MAPPINGS = ("properties", "$defs", "patternProperties", "definitions")


def _compact_schema(node: Any, *, names: bool = False) -> Any:
    """The schema without pydantic's per-node "title" annotations (tokens the model does not need)."""
    if isinstance(node, list):
        return [_compact_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if names:  # a mapping of names to schemas: keep every key
        return {key: _compact_schema(value) for key, value in node.items()}
    return {key: _compact_schema(value, names=key in _SCHEMA_MAPPINGS)
            for key, value in node.items() if not (key == "title" and isinstance(value, str))}


def line_length_rule(speech: SpeechTiming | None) -> str:
    """How long a line lasts, for the model: the speech engine's pace when known."""
    if speech is None:
        six_words = estimate_speech_seconds("one two three four five six")
        return f"A line lasts about words / 2.6 + 0.3 seconds (at least 0.8; a six-word line lasts {six_words} s)."
    pace = speech.pace_for(VoiceProfile())
    sample = "I was afraid the night would change everything."
    return (f"The speech engine speaks about {1 / pace.seconds_per_char:.0f} characters a second, plus "
            f"{pace.pause_s:g} s at each comma or sentence break and {pace.lead_s:g} s to start: a line of "
            f"{len(sample)} characters like {sample!r} lasts about {speech.seconds(sample):.2f} s. Give each line "
            "at least that duration_sec and start the next entry after it; speech longer than the time before the "
            f"next line is sped up by at most {speech.policy.max_tempo:g}x, beyond that its last words are cut.")


def system_prompt(default_video_model: str = DEFAULT_VIDEO_MODEL, speech: SpeechTiming | None = None) -> str:
    schema = json.dumps(_compact_schema(plan_json_schema()), separators=(",", ":"))
    example = json.dumps(EXAMPLE_PLAN, separators=(",", ":"))
    return f"""You are the script agent of Sparkle Motion. You turn a story prompt into a MoviePlan for a short film.
Reply with one JSON object that matches the MoviePlan JSON Schema below. Output JSON only: no prose, no markdown.

Rules the schema cannot express (a plan that breaks one is rejected):
1. title: exactly the requested title.
2. shots: N shots (usually 3 to 6), each duration_sec between 3 and 10 seconds. The film's runtime is the sum of all shots' duration_sec.
3. base_images: exactly N+1 keyframes, one more than the shots. Shot i (counting from 0) runs from base image i to base image i+1: shots[i].start_base_image_id == base_images[i].id and shots[i].end_base_image_id == base_images[i+1].id, so consecutive shots share a keyframe. Each base image prompt describes that single frame for an image model (subject, framing, lighting); metadata.seed is an optional integer; characters lists the ids of the characters visible in the frame ([] for none), so each is drawn from its reference portrait.
4. characters: every speaker and everyone seen, each with a description of how they look (it draws their reference portrait) and a voice_profile (style such as "calm", language as a BCP 47 tag such as "en-US", gender "female", "male" or "neutral").
5. dialogue_timeline: one clock for the whole film, in seconds from the start of the first shot. Each entry is {{"type":"dialogue","character_id","text","start_time_sec","duration_sec"}} with the id of a declared character, or {{"type":"silence","start_time_sec","duration_sec"}}. Entries must not overlap, and every entry must end (start_time_sec + duration_sec) by the runtime. {line_length_rule(speech)} Gaps may be left out: they become silence.
6. render_profile.video.model_id is required. Use "{default_video_model}" unless the request asks for a particular video model (for example "wan-2.1"). max_fps is 24 unless asked otherwise.
7. Every id (characters, base_images, shots) becomes a file name: 1 to 128 letters, digits, "_", "-" or "." with no "..". Use ids like "ava", "frame_000", "shot_001". Ids are unique within their list.
8. No fields beyond the schema's, except inside metadata, voice_profile and render_profile.

MoviePlan JSON Schema:
{schema}

Example of the shape (a different story; write your own):
{example}"""


def user_prompt(*, title: str, prompt: str, seed: int) -> str:
    return (f"Title: {title}\nStory prompt: {prompt}\nSeed: {seed}\n\n"
            "Write the MoviePlan for this film as one JSON object.")


def repair_prompt(problem: str, issues: list[PlanIssue], *, truncated: bool) -> str:
    if problem == "invalid_plan":
        lines = "\n".join(f"- {issue.path or '(plan)'}: {issue.reason}" for issue in issues)
        return ("Your MoviePlan does not validate. Fix every problem below (field path: reason) and reply with "
                "the complete corrected MoviePlan as one JSON object, nothing else:\n" + lines)
    reason = issues[0].reason if issues else "no JSON object found"
    text = f"Your reply could not be used: {reason}."
    if truncated:
        text += " It was cut off by the length limit: write a shorter plan (fewer shots, shorter descriptions)."
    return text + " Reply with the complete MoviePlan as one JSON object and nothing else."


# --------------------------------------------------------------------------- JSON extraction

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|jsonc)?[ \t]*\r?\n?(.*?)```", re.DOTALL)


class ReplyFormatError(ValueError):
    """A reply holding no JSON object."""


def strip_reasoning(text: str) -> str:
    """The reply without ``<think>...</think>`` blocks (and an unclosed one's opening)."""
    text = _THINK.sub("", text)
    if "</think>" in text:  # servers that drop the opening tag
        text = text.split("</think>", 1)[1]
    return text.strip()


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in a model's reply: bare, in a ``` fence, or after prose; raise ReplyFormatError."""
    text = strip_reasoning(text or "")
    if not text:
        raise ReplyFormatError("the reply is empty")
    candidates = [match.group(1).strip() for match in _FENCE.finditer(text)]
    candidates.append(text)
    unterminated = re.match(r"```[ \t]*(?:json|JSON|jsonc)?[ \t]*\r?\n(.*)\Z", text, re.DOTALL)
    if unterminated:  # an opening fence that never closes (a cut-off reply)
        candidates.append(unterminated.group(1))
    decoder = json.JSONDecoder()
    first_error: str | None = None
    for candidate in candidates:
        start = candidate.find("{")
        if start < 0:
            continue
        try:
            value, _ = decoder.raw_decode(candidate, start)
        except json.JSONDecodeError as exc:
            first_error = first_error or f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            continue
        if isinstance(value, dict):
            return _unwrap(value)
    raise ReplyFormatError(first_error or "the reply holds no JSON object")


def _unwrap(value: dict[str, Any]) -> dict[str, Any]:
    """A plan the model wrapped in an envelope or a single key (``{"plan": {...}}``)."""
    if isinstance(value.get("validated_plan"), dict):
        return value["validated_plan"]
    if len(value) == 1:
        (inner,) = value.values()
        if isinstance(inner, dict) and "shots" in inner:
            return inner
    return value


# --------------------------------------------------------------------------- HTTP


def _error_text(body: Any, fallback: str = "") -> str:
    """The server's own words from an error body (OpenAI, vLLM, Ollama, llama.cpp, FastAPI shapes)."""
    if isinstance(body, (bytes, bytearray)):
        text = body.decode("utf-8", "replace").strip()
        try:
            body = json.loads(text)
        except ValueError:
            return text[:500] or fallback or "(empty body)"
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
        for value in (inner, body.get("message"), body.get("detail")):
            if value:
                return (value if isinstance(value, str) else json.dumps(value))[:500]
        return json.dumps(body)[:500]
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback[:500] or "(empty body)"


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        netloc += f":{parts.port}" if parts.port else ""
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


@dataclass
class _CallState:
    """What one plan() call learns as it goes; kept off the resource, which is plain configuration."""

    dropped: dict[str, str] = field(default_factory=dict)  # optional field -> the server's refusal
    requests: int = 0
    http_retries: int = 0
    retry_log: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    served_model: str | None = None
    attempts: list[str | None] = field(default_factory=list)  # this completion's attempts: None, or why it failed


@functools.cache
def _watching_transport_class():
    """A transport that passes every request to the real one and notes how each attempt ended.

    The SDK decides what to retry and when; this only records it (defined on first use, so
    importing this module imports no HTTP library)."""
    import httpx2

    class WatchingTransport(httpx2.BaseTransport):
        def __init__(self, state: _CallState, *, timeout_s: float, max_retries: int):
            self.inner = httpx2.HTTPTransport()
            self.state, self.timeout_s, self.max_retries = state, timeout_s, max_retries

        def handle_request(self, request):
            state = self.state
            if state.attempts:
                log.warning("script agent request failed (%s); retry %d/%d", state.attempts[-1],
                            len(state.attempts), self.max_retries)
            state.requests += 1
            state.attempts.append(None)
            try:
                response = self.inner.handle_request(request)
            except httpx2.TimeoutException:
                state.attempts[-1] = f"no answer within {self.timeout_s:g} s"
                raise
            except httpx2.TransportError as error:
                state.attempts[-1] = f"cannot reach the server: {error}"
                raise
            if response.status_code >= 400:
                response.read()
                state.attempts[-1] = f"HTTP {response.status_code}: {_error_text(response.content)}"
            return response

        def close(self) -> None:
            self.inner.close()

    return WatchingTransport


# --------------------------------------------------------------------------- the resource


class LlmPlanner(EnvConfigured, Planner):
    """The script agent: a MoviePlan from a chat-completions language model, validated and repaired.

    Plain configuration (a client lives only for one ``plan()`` call); see the
    module docstring for the protocol, retries, errors and environment variables.
    """

    backend: ClassVar[str] = "llm"

    model: str = env_field("SCRIPT_AGENT_MODEL", pattern=NOT_BLANK,
                           expected="must name the model, e.g. llama3.1:8b or gpt-4o-mini")
    base_url: str = env_field("SCRIPT_AGENT_BASE_URL", DEFAULT_BASE_URL)
    api_key: str = env_field("SCRIPT_AGENT_API_KEY", "", secret=True)
    timeout_s: float = env_field("SCRIPT_AGENT_TIMEOUT_S", 300.0, gt=0)
    max_retries: int = env_field("SCRIPT_AGENT_MAX_RETRIES", 3, ge=0)
    max_repairs: int = env_field("SCRIPT_AGENT_MAX_REPAIRS", 2, ge=0)
    temperature: float = env_field("SCRIPT_AGENT_TEMPERATURE", 0.4, ge=0, le=2)
    max_tokens: int = env_field("SCRIPT_AGENT_MAX_TOKENS", 0, ge=0)
    json_mode: bool = env_field("SCRIPT_AGENT_JSON_MODE", True)
    default_video_model: str = Field(DEFAULT_VIDEO_MODEL, pattern=NOT_BLANK)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL such as {DEFAULT_BASE_URL} (Ollama) or https://api.openai.com/v1")
        return url

    def required_packages(self) -> tuple[str, ...]:
        return ("openai",)

    def describe(self, *, probe: bool = True) -> dict[str, Any]:
        """The doctor's entry: settings checked, no request sent (a server may be started later)."""
        entry = {"backend": self.backend, "ok": True, "device": "-", "model": self.model,
                 "why": f"{self.variable('model')}={self.model} at {_redact(self.base_url.strip())} (the planner is "
                        "only called by `plan`, `run --prompt` and inbox requests)"}
        try:
            self.validate_settings()
        except ValueError as error:
            entry.update(ok=False, problem=str(error))
        return entry

    # ------------------------------------------------------------------ plan

    def plan(self, *, prompt: str, title: str, seed: int = 0, speech: SpeechTiming | None = None) -> dict[str, Any]:
        if not str(prompt).strip():
            raise ValueError("prompt: must not be empty")
        if not str(title).strip():
            raise ValueError("title: must not be empty")
        self.validate_settings()
        title, prompt = title.strip(), prompt.strip()
        started = time.monotonic()
        state = _CallState()
        base_messages = [
            {"role": "system", "content": system_prompt(self.default_video_model, speech)},
            {"role": "user", "content": user_prompt(title=title, prompt=prompt, seed=seed)},
        ]
        messages = list(base_messages)
        history: list[dict[str, Any]] = []
        attempts = self.max_repairs + 1
        with self._client(state) as client:
            for attempt in range(1, attempts + 1):
                content, finish_reason = self._complete(client, messages, seed=seed, state=state)
                reply = strip_reasoning(content or "")
                try:
                    candidate = extract_json(content or "")
                    candidate["title"] = title  # the request's title, whatever the model wrote
                    plan = validate_plan(candidate)
                    if speech is not None:  # a line that would lose words is a problem to fix like any other
                        losses = predicted_losses(plan, speech, line_fields(candidate))
                        if losses:
                            raise PlanValidationError(losses)
                except ReplyFormatError as exc:
                    problem, issues = "invalid_json", [PlanIssue("", str(exc))]
                except PlanValidationError as exc:
                    problem, issues = "invalid_plan", list(exc.issues)
                else:
                    return self._envelope(plan.model_dump(mode="json"), title=title, prompt=prompt, seed=seed,
                                          attempts=attempt, history=history, state=state,
                                          elapsed=time.monotonic() - started, speech=speech)
                entry: dict[str, Any] = {"attempt": attempt, "problem": problem, "finish_reason": finish_reason,
                                         "issues": [{"path": i.path, "reason": i.reason} for i in issues]}
                if problem == "invalid_json":
                    entry["reply_excerpt"] = reply[:300]
                history.append(entry)
                log.info("script agent attempt %d/%d: %s (%d problem(s))", attempt, attempts, problem, len(issues))
                if attempt == attempts:
                    raise self._gave_up(issues, history, truncated=finish_reason == "length")
                # Only the latest reply goes back: it is the whole plan to fix, and keeps the context short.
                messages = base_messages + [
                    {"role": "assistant", "content": reply or "(empty reply)"},
                    {"role": "user", "content": repair_prompt(problem, issues, truncated=finish_reason == "length")},
                ]
        raise AssertionError("unreachable")

    def _gave_up(self, issues: list[PlanIssue], history: list[dict[str, Any]], *, truncated: bool) -> LlmPlanInvalidError:
        attempts = len(history)
        lines = "\n".join(f"  - {issue}" for issue in issues)
        message = (f"{self.variable('model')} {self.model!r} did not produce a valid MoviePlan in {attempts} attempt"
                   f"{'s' * (attempts != 1)} (the first and {self.variable('max_repairs')}={self.max_repairs} "
                   f"repairs); the last reply's problems:\n{lines}")
        if truncated:
            message += (f"\n  The last reply was cut off by the length limit: raise {self.variable('max_tokens')} "
                        "or the server's context size.")
        return LlmPlanInvalidError(message, issues, history)

    def _envelope(self, plan: dict[str, Any], *, title: str, prompt: str, seed: int, attempts: int,
                  history: list[dict[str, Any]], state: _CallState, elapsed: float,
                  speech: SpeechTiming | None = None) -> dict[str, Any]:
        metadata = plan.get("metadata") if isinstance(plan.get("metadata"), dict) else {}
        plan["metadata"] = {**metadata, "source": f"{TOOL}.generate_plan", "planner": "llm",
                            "model": self.model, "seed": seed}
        envelope = plan_envelope(plan, title=title, prompt=prompt, seed=seed, tool=TOOL)
        json_mode = self.json_mode and "response_format" not in state.dropped
        envelope["metadata"].update({
            "planner": "llm",
            "model": self.model,
            "served_model": state.served_model or self.model,
            "base_url": _redact(self.base_url.strip()),
            "attempts": attempts,
            "max_repairs": self.max_repairs,
            "repairs": attempts - 1,
            "repair_history": history,
            "json_mode": json_mode,
            "dropped_request_fields": dict(state.dropped),
            "http_requests": state.requests,
            "http_retries": state.http_retries,
            "http_retry_log": state.retry_log,
            "usage": dict(state.usage),
            "temperature": self.temperature,
            "elapsed_s": round(elapsed, 3),
            "prompt_sha256": hashlib.sha256(system_prompt(self.default_video_model, speech).encode()).hexdigest()[:16],
            **({"speech_timing": speech.fingerprint()} if speech else {}),
        })
        return envelope

    # ------------------------------------------------------------------ chat completions

    def _endpoint(self) -> str:
        return self._base_url() + "/chat/completions"

    def _base_url(self) -> str:
        base = self.base_url.strip().rstrip("/")
        return base.removesuffix("/chat/completions")

    def _api_key(self) -> str:
        key = self.api_key
        if isinstance(key, dg.EnvVar):  # used outside a Dagster run: resolve the reference now
            key = key.get_value() or ""
        return str(key).strip()

    def _client(self, state: _CallState):
        """An SDK client for one ``plan()`` call, its HTTP attempts watched into ``state``."""
        import openai

        transport = _watching_transport_class()(state, timeout_s=self.timeout_s, max_retries=self.max_retries)
        http_client = openai.DefaultHttpx2Client(transport=transport, timeout=self.timeout_s,
                                                 trust_env=not _is_loopback(self._base_url()))
        return openai.OpenAI(api_key=self._api_key() or _NO_KEY, base_url=self._base_url(), timeout=self.timeout_s,
                             max_retries=self.max_retries, http_client=http_client,
                             default_headers={"User-Agent": "sparkle-motion-script-agent"})

    def _complete(self, client, messages: list[dict[str, str]], *, seed: int,
                  state: _CallState) -> tuple[str | None, str | None]:
        """One chat completion: (content, finish_reason). Drops optional fields a server refuses."""
        import openai

        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                "stream": False}
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        optional: dict[str, Any] = {"seed": int(seed)}
        if self.json_mode:
            optional["response_format"] = {"type": "json_object"}
        headers = None if self._api_key() else {"Authorization": openai.omit}
        while True:
            extras = {k: v for k, v in optional.items() if k not in state.dropped}
            state.attempts = []
            try:
                completion = client.chat.completions.create(**body, **extras, extra_headers=headers)
            except openai.APIStatusError as exc:
                message = _error_text(exc.body, exc.message)
                if exc.status_code in (400, 422) and extras:
                    named = [k for k in extras if k in message.lower()]
                    for key in named or list(extras):
                        state.dropped[key] = f"HTTP {exc.status_code}: {message}"
                    log.warning("the model server refused %s (HTTP %d: %s); asking without",
                                ", ".join(named or extras), exc.status_code, message)
                    continue
                raise self._status_error(exc.status_code, message, state) from None
            except openai.APIConnectionError as exc:  # timeouts too, after the SDK's retries
                raise self._unreachable(exc, state) from None
            except ValueError as exc:  # a 200 whose body is not JSON
                raise LlmPlannerError(f"{_redact(self._endpoint())} answered with a body that is not JSON ({exc}); "
                                      f"check {self.variable('base_url')}") from None
            break
        state.http_retries += len(state.attempts) - 1
        state.retry_log.extend(problem[:200] for problem in state.attempts[:-1] if problem)
        return self._parse_completion(completion, state)

    def _parse_completion(self, completion: Any, state: _CallState) -> tuple[str | None, str | None]:
        choices = getattr(completion, "choices", None)
        if not choices:
            shown = completion if isinstance(completion, str) else getattr(completion, "model_extra", None) or {}
            raise LlmPlannerError(
                f"{_redact(self._endpoint())} did not answer with a chat completion (no choices[0].message); "
                f"check {self.variable('base_url')}: {str(shown)[:300]}")
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if isinstance(content, list):  # content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if isinstance(getattr(completion, "model", None), str):
            state.served_model = completion.model
        usage = getattr(completion, "usage", None)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = getattr(usage, key, None)
            if isinstance(value, int):
                state.usage[key] = state.usage.get(key, 0) + value
        return content if isinstance(content, str) else None, getattr(choice, "finish_reason", None)

    def _attempts_text(self, state: _CallState) -> str:
        count = len(state.attempts)
        return (f"{_redact(self._endpoint())} failed {count} time{'s' * (count != 1)} "
                f"({self.variable('max_retries')}={self.max_retries} retries)")

    def _unreachable(self, error: Exception, state: _CallState) -> LlmPlannerError:
        last = next((p for p in reversed(state.attempts) if p), f"cannot reach the server: {error}")
        if last.startswith("no answer"):
            hint = f" A slow model or a cold start needs a larger {self.variable('timeout_s')}."
        else:
            hint = f" Is the server running at {self.variable('base_url')}={_redact(self.base_url.strip())!r}?"
        return LlmPlannerError(f"{self._attempts_text(state)}; last: {last}.{hint}")

    def _status_error(self, status: int, message: str, state: _CallState) -> LlmPlannerError:
        url, key, model = _redact(self._endpoint()), self.variable("api_key"), self.variable("model")
        if status == 401:
            hint = (f"{key} is set but the server rejected it" if self._api_key()
                    else f"the server wants an API key: set {key}")
            text = f"{url} answered 401 Unauthorized ({message}): {hint}"
        elif status == 403:
            text = f"{url} answered 403 Forbidden ({message}): check that {key} may use {model}={self.model!r}"
        elif status == 404:
            text = (f"{url} answered 404 Not Found ({message}): check {self.variable('base_url')} (the API root, "
                    f"usually ending in /v1) and that {model}={self.model!r} is served there")
        elif status in RETRIED_STATUS or status >= 500:
            text = f"{self._attempts_text(state)}; last: HTTP {status}: {message}."
        else:
            text = f"{url} refused the request with HTTP {status}: {message}"
        if state.dropped:
            text += f" (already asked again without {', '.join(state.dropped)})"
        return LlmPlannerError(text, status=status)
