"""LlmPlanner against a real chat-completions server on loopback that replays scripted replies."""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from sparkle_motion_dagster.film.plan import PlanValidationError, parse_plan_document, validate_plan
from sparkle_motion_dagster.resources.planning import Planner
from sparkle_motion_dagster.resources.planning.llm import (
    EXAMPLE_PLAN,
    LlmPlanInvalidError,
    LlmPlanner,
    LlmPlannerError,
    ReplyFormatError,
    extract_json,
    system_prompt,
)
from sparkle_motion_dagster.resources.settings import SettingsError

MODEL = "tiny-test-model"
TITLE = "Rooftop Revelations"
PROMPT = "Two friends on a neon rooftop reconcile before sunrise."

GOOD_PLAN = {
    "title": TITLE,
    "characters": [
        {"id": "ava", "name": "Ava", "description": "Photographer", "voice_profile": {"style": "calm"}},
        {"id": "miko", "name": "Miko", "description": "DJ", "voice_profile": {"language": "en-US"}},
    ],
    "base_images": [
        {"id": "frame_000", "prompt": "Night skyline, pink neon"},
        {"id": "frame_001", "prompt": "Ava faces Miko by the railing"},
        {"id": "frame_002", "prompt": "Clasped hands lit by cyan signage"},
    ],
    "shots": [
        {"id": "shot_001", "duration_sec": 6.0, "start_base_image_id": "frame_000",
         "end_base_image_id": "frame_001", "motion_prompt": "Slow crane down"},
        {"id": "shot_002", "duration_sec": 7.0, "start_base_image_id": "frame_001",
         "end_base_image_id": "frame_002", "is_talking_closeup": True},
    ],
    "dialogue_timeline": [
        {"type": "dialogue", "character_id": "ava", "text": "I was scared of losing us.",
         "start_time_sec": 6.4, "duration_sec": 2.6},
        {"type": "dialogue", "character_id": "miko", "text": "You never had to be.",
         "start_time_sec": 9.2, "duration_sec": 2.2},
    ],
    "render_profile": {"video": {"model_id": "animatic", "max_fps": 24}},
}
GOOD = json.dumps(GOOD_PLAN)


def broken_plan() -> dict:
    """Schema-valid, but breaking two invariants."""
    plan = copy.deepcopy(GOOD_PLAN)
    plan["shots"][1]["start_base_image_id"] = "frame_000"
    plan["dialogue_timeline"][1]["duration_sec"] = 9.0  # runs past the 13 s runtime
    return plan


# --------------------------------------------------------------------------- the fake server


def reply(content: str | None, finish_reason: str = "stop") -> dict:
    return {"kind": "reply", "content": content, "finish_reason": finish_reason}


def status(code: int, message: str, headers: dict | None = None) -> dict:
    return {"kind": "status", "code": code, "message": message, "headers": headers or {}}


def hang(seconds: float = 5.0) -> dict:
    """Say nothing until the client has given up (released at teardown at the latest)."""
    return {"kind": "hang", "seconds": seconds}


def refuse_json_mode(content: str) -> dict:
    """400 when the request carries response_format (as LM Studio does for json_object), else reply."""
    return {"kind": "refuse_json_mode", "content": content}


class ChatServer:
    def __init__(self):
        self.script: list[dict] = []
        self.requests: list[dict] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    # the message object itself: header names are case-insensitive, as in HTTP
                    server.requests.append({"path": self.path, "headers": self.headers, "body": body})
                    action = server.script.pop(0) if server.script else status(418, "the test script ran out")
                kind = action["kind"]
                if kind == "hang":
                    server.release.wait(action["seconds"])
                    return self._send(200, completion(GOOD, "stop"))  # too late: the client has gone
                if kind == "refuse_json_mode" and "response_format" in body:
                    return self._send(400, {"error": {"message": "'response_format.type' must be 'json_schema' "
                                                                 "or 'text'", "type": "invalid_request_error"}})
                if kind in ("reply", "refuse_json_mode"):
                    return self._send(200, completion(action["content"], action.get("finish_reason", "stop")))
                return self._send(action["code"], {"error": {"message": action["message"]}}, action["headers"])

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def bodies(self) -> list[dict]:
        return [request["body"] for request in self.requests]


def completion(content: str | None, finish_reason: str) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }


@pytest.fixture
def server():
    chat = ChatServer()
    chat.thread.start()
    yield chat
    chat.release.set()
    chat.httpd.shutdown()
    chat.httpd.server_close()


def planner(server: ChatServer, **overrides) -> LlmPlanner:
    # timeout_s is generous except where a test is about timeouts, so a slow machine cannot
    # turn a scripted reply into a retry.
    settings = {"model": MODEL, "base_url": server.base_url, "timeout_s": 5.0, "max_retries": 2, "max_repairs": 2}
    return LlmPlanner(**{**settings, **overrides})


def make_plan(server: ChatServer, script: list[dict], **overrides) -> dict:
    server.script.extend(script)
    return planner(server, **overrides).plan(prompt=PROMPT, title=TITLE, seed=7)


def assert_envelope(envelope: dict, *, attempts: int) -> None:
    assert set(envelope) == {"request", "validated_plan", "generated_at", "metadata", "schema_uri"}
    assert envelope["request"] == {"title": TITLE, "prompt": PROMPT, "seed": 7}
    meta = envelope["metadata"]
    assert meta["tool"] == "script_agent"
    assert meta["model"] == MODEL
    assert meta["attempts"] == attempts
    assert meta["repairs"] == attempts - 1
    assert len(meta["repair_history"]) == attempts - 1
    assert meta["shot_count"] == len(envelope["validated_plan"]["shots"])
    assert isinstance(meta["request_id"], str) and meta["request_id"]
    plan = validate_plan(envelope["validated_plan"])  # the returned plan is valid as it stands
    assert plan.title == TITLE
    assert envelope["validated_plan"]["metadata"]["planner"] == "llm"
    assert envelope["validated_plan"]["metadata"]["model"] == MODEL
    assert parse_plan_document(envelope).plan == plan
    # normalized: the timeline covers the whole runtime, silences included
    timeline = envelope["validated_plan"]["dialogue_timeline"]
    assert timeline[0]["start_time_sec"] == 0
    assert timeline[-1]["start_time_sec"] + timeline[-1]["duration_sec"] == pytest.approx(plan.runtime_sec)
    json.dumps(envelope)  # a JSON document


def last_user_message(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


# --------------------------------------------------------------------------- scripted conversations


def test_valid_reply_first_time(server):
    envelope = make_plan(server, [reply(GOOD)], api_key="sk-test")
    assert_envelope(envelope, attempts=1)
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == MODEL and body["stream"] is False and body["seed"] == 7
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert '"start_base_image_id"' in system["content"]  # the schema
    assert "N+1" in system["content"] and '"animatic"' in system["content"]
    assert TITLE in user["content"] and PROMPT in user["content"]
    meta = envelope["metadata"]
    assert meta["json_mode"] is True and meta["http_retries"] == 0 and meta["usage"]["total_tokens"] == 150
    assert [e["type"] for e in envelope["validated_plan"]["dialogue_timeline"]] == \
        ["silence", "dialogue", "silence", "dialogue", "silence"]


def test_no_key_sends_no_authorization(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-ours")  # never read: the key is SCRIPT_AGENT_API_KEY alone
    assert_envelope(make_plan(server, [reply(GOOD)]), attempts=1)
    assert "Authorization" not in server.requests[0]["headers"]


def test_invalid_json_then_valid(server):
    bad = '{"title": "Rooftop", "shots": [ {"id": "shot_001",, }'
    envelope = make_plan(server, [reply(bad), reply(GOOD)])
    assert_envelope(envelope, attempts=2)
    history = envelope["metadata"]["repair_history"]
    assert history[0]["problem"] == "invalid_json"
    assert "invalid JSON" in history[0]["issues"][0]["reason"]
    repair = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2]["content"] == bad
    assert "JSON" in repair[3]["content"] and "(line 1, column" in repair[3]["content"]


def test_schema_violation_fixed_on_repair(server):
    plan = copy.deepcopy(GOOD_PLAN)
    del plan["render_profile"]
    plan["shots"][0]["duration_sec"] = -6
    envelope = make_plan(server, [reply(json.dumps(plan)), reply(GOOD)])
    assert_envelope(envelope, attempts=2)
    feedback = last_user_message(server.requests[1]["body"])
    # every issue goes back with its path and reason
    assert "- render_profile: Field required" in feedback
    assert "- shots[0].duration_sec: Input should be greater than 0" in feedback
    history = envelope["metadata"]["repair_history"]
    assert history[0]["problem"] == "invalid_plan"
    assert {i["path"] for i in history[0]["issues"]} == {"render_profile", "shots[0].duration_sec"}


def test_invariant_issues_fixed_on_repair(server):
    envelope = make_plan(server, [reply(json.dumps(broken_plan())), reply(GOOD)])
    assert_envelope(envelope, attempts=2)
    feedback = last_user_message(server.requests[1]["body"])
    assert "- shots[1].start_base_image_id: must be base_images[1].id 'frame_001', got 'frame_000'" in feedback
    assert "- dialogue_timeline[1].duration_sec: ends at 18.2s, after the total shot runtime 13.0s" in feedback


def test_a_line_that_would_lose_words_is_a_problem_to_repair(server):
    from sparkle_motion_dagster.film.speech_fit import FitPolicy
    from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech

    timing = EspeakSpeech().timing(FitPolicy())
    plan = copy.deepcopy(GOOD_PLAN)  # 2.8 s before Miko's line: room for 3.5 s of speech at tempo 1.25
    plan["dialogue_timeline"][0]["text"] = ("I was scared of losing us, of losing every single thing we built up "
                                            "here on this rooftop, night after night.")
    assert_envelope(make_plan(server, [reply(json.dumps(plan))]), attempts=1)  # untimed, it passes
    server.requests.clear()
    server.script.extend([reply(json.dumps(plan)), reply(GOOD)])
    envelope = planner(server).plan(prompt=PROMPT, title=TITLE, seed=7, speech=timing)
    assert_envelope(envelope, attempts=2)
    feedback = last_user_message(server.requests[1]["body"])
    assert "- dialogue_timeline[0]: its text takes about" in feedback and "would be cut" in feedback
    assert envelope["metadata"]["repair_history"][0]["issues"][0]["path"] == "dialogue_timeline[0]"
    assert "characters a second" in server.requests[0]["body"]["messages"][0]["content"]
    assert envelope["metadata"]["speech_timing"] == timing.fingerprint()


def test_reply_in_json_fence(server):
    fenced = f"Here is your plan:\n```json\n{json.dumps(GOOD_PLAN, indent=2)}\n```\nEnjoy the film!"
    envelope = make_plan(server, [reply(fenced)])
    assert_envelope(envelope, attempts=1)


def test_timeout_then_good_reply_on_retry(server):
    envelope = make_plan(server, [hang(), reply(GOOD)], timeout_s=0.3)
    assert_envelope(envelope, attempts=1)
    assert len(server.requests) == 2
    assert envelope["metadata"]["http_retries"] == 1
    assert "no answer within 0.3 s" in envelope["metadata"]["http_retry_log"][0]


def test_server_error_then_success(server):
    envelope = make_plan(server, [status(500, "CUDA out of memory"), reply(GOOD)])
    assert_envelope(envelope, attempts=1)
    assert envelope["metadata"]["http_retries"] == 1
    assert server.bodies()[0] == server.bodies()[1]


def test_rate_limit_honours_retry_after(server):
    started = time.monotonic()
    envelope = make_plan(server, [status(429, "slow down", {"Retry-After": "0.05"}),
                                  status(503, "loading", {"Retry-After": "0.05"}), reply(GOOD)])
    # the server's 0.05 s, not the SDK's own backoff (0.375 s and more before the first retry)
    assert time.monotonic() - started < 1.0
    assert_envelope(envelope, attempts=1)
    assert envelope["metadata"]["http_retries"] == 2
    assert envelope["metadata"]["http_retry_log"] == ["HTTP 429: slow down", "HTTP 503: loading"]


def test_transient_errors_exhaust_retries(server):
    with pytest.raises(LlmPlannerError) as caught:
        make_plan(server, [status(502, "bad gateway")] * 3, max_retries=2)
    assert len(server.requests) == 3
    assert "failed 3 times" in str(caught.value) and "HTTP 502: bad gateway" in str(caught.value)


def test_unauthorized_is_not_retried(server):
    with pytest.raises(LlmPlannerError) as caught:
        make_plan(server, [status(401, "Incorrect API key provided"), reply(GOOD)])
    assert len(server.requests) == 1
    message = str(caught.value)
    assert "401" in message and "SCRIPT_AGENT_API_KEY" in message and "Incorrect API key provided" in message
    assert caught.value.status == 401
    assert not isinstance(caught.value, PlanValidationError)


def test_bad_request_fails_after_dropping_optional_fields(server):
    with pytest.raises(LlmPlannerError) as caught:
        make_plan(server, [status(400, "context length exceeded")] * 2 + [reply(GOOD)], json_mode=False)
    # a 400 naming no field: asked once more without the optional seed, then the error
    assert "context length exceeded" in str(caught.value) and caught.value.status == 400
    assert "already asked again without seed" in str(caught.value)
    assert len(server.requests) == 2
    assert "seed" not in server.bodies()[1]


def test_model_not_found_names_base_url_and_model(server):
    with pytest.raises(LlmPlannerError) as caught:
        make_plan(server, [status(404, "model 'tiny-test-model' not found")])
    assert "SCRIPT_AGENT_BASE_URL" in str(caught.value) and "SCRIPT_AGENT_MODEL" in str(caught.value)
    assert len(server.requests) == 1


def test_never_valid_gives_up_after_max_repairs(server):
    with pytest.raises(LlmPlanInvalidError) as caught:
        make_plan(server, [reply(json.dumps(broken_plan()))] * 5, max_repairs=2)
    assert len(server.requests) == 3  # the first attempt and two repairs
    error = caught.value
    assert isinstance(error, PlanValidationError) and isinstance(error, LlmPlannerError)
    assert "3 attempts" in str(error) and "SCRIPT_AGENT_MAX_REPAIRS=2" in str(error)
    for issue in error.issues:
        assert f"{issue.path}: {issue.reason}" in str(error)
    assert {issue.path for issue in error.issues} == {"shots[1].start_base_image_id",
                                                      "dialogue_timeline[1].duration_sec"}
    assert [entry["attempt"] for entry in error.history] == [1, 2, 3]


def test_never_json_reports_truncation(server):
    cut = GOOD[: len(GOOD) // 2]
    with pytest.raises(LlmPlanInvalidError) as caught:
        make_plan(server, [reply(cut, "length")] * 2, max_repairs=1)
    assert "invalid JSON" in str(caught.value) and "SCRIPT_AGENT_MAX_TOKENS" in str(caught.value)
    assert "cut off" in last_user_message(server.requests[1]["body"])


def test_response_format_rejected_then_retried_without(server):
    envelope = make_plan(server, [refuse_json_mode(json.dumps(broken_plan())),
                                  refuse_json_mode(json.dumps(broken_plan())), refuse_json_mode(GOOD)])
    assert_envelope(envelope, attempts=2)
    bodies = server.bodies()
    assert len(bodies) == 3
    assert bodies[0]["response_format"] == {"type": "json_object"}
    assert "response_format" not in bodies[1] and "response_format" not in bodies[2]  # not asked again
    assert bodies[1]["seed"] == 7  # only the field the server named is dropped
    meta = envelope["metadata"]
    assert meta["json_mode"] is False
    assert "json_schema" in meta["dropped_request_fields"]["response_format"]


def test_empty_content_is_repaired(server):
    envelope = make_plan(server, [reply(None), reply("<think>plan the shots first</think>\n" + GOOD)])
    assert_envelope(envelope, attempts=2)
    assert "empty" in envelope["metadata"]["repair_history"][0]["issues"][0]["reason"]


def test_title_is_the_requested_one(server):
    plan = dict(GOOD_PLAN, title="Something Else")
    envelope = make_plan(server, [reply(json.dumps(plan))])
    assert envelope["validated_plan"]["title"] == TITLE


def test_connection_refused_is_retried_then_explained():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = LlmPlanner(model=MODEL, base_url=f"http://127.0.0.1:{port}/v1", timeout_s=0.3, max_retries=1)
    with pytest.raises(LlmPlannerError) as caught:
        llm.plan(prompt=PROMPT, title=TITLE)
    message = str(caught.value)
    assert "failed 2 times" in message and "SCRIPT_AGENT_BASE_URL" in message and "cannot reach" in message
    assert "SCRIPT_AGENT_MAX_RETRIES=1" in message


def test_runs_as_a_dagster_resource(server):
    server.script.append(reply(GOOD))

    @dg.asset
    def plan_artifact(planner: Planner) -> dict:
        return planner.plan(prompt=PROMPT, title=TITLE, seed=7)

    result = dg.materialize([plan_artifact], resources={"planner": planner(server)})
    assert result.success
    assert_envelope(result.output_for_node("plan_artifact"), attempts=1)


# --------------------------------------------------------------------------- configuration


def test_from_env_unset_is_none():
    assert LlmPlanner.from_env({}) is None
    assert LlmPlanner.from_env({"SCRIPT_AGENT_MODEL": "  "}) is None


def test_from_env_reads_settings():
    llm = LlmPlanner.from_env({
        "SCRIPT_AGENT_MODEL": "qwen2.5:7b", "SCRIPT_AGENT_BASE_URL": "https://api.example.com/v1",
        "SCRIPT_AGENT_API_KEY": "sk-abc", "SCRIPT_AGENT_TIMEOUT_S": "12.5", "SCRIPT_AGENT_MAX_REPAIRS": "4",
        "SCRIPT_AGENT_MAX_RETRIES": "0", "SCRIPT_AGENT_TEMPERATURE": "0", "SCRIPT_AGENT_JSON_MODE": "0",
    })
    assert isinstance(llm, Planner) and isinstance(llm, dg.ConfigurableResource)
    assert (llm.model, llm.base_url, llm.api_key, llm.timeout_s, llm.max_repairs, llm.max_retries,
            llm.temperature, llm.json_mode) == ("qwen2.5:7b", "https://api.example.com/v1", "sk-abc", 12.5, 4, 0,
                                                0.0, False)
    default = LlmPlanner.from_env({"SCRIPT_AGENT_MODEL": "llama3.1"})
    assert default.base_url == "http://127.0.0.1:11434/v1" and default.max_repairs == 2 and default.api_key == ""


def test_from_env_keeps_the_key_as_a_reference(server, monkeypatch):
    monkeypatch.setenv("SCRIPT_AGENT_MODEL", MODEL)
    monkeypatch.setenv("SCRIPT_AGENT_BASE_URL", server.base_url)
    monkeypatch.setenv("SCRIPT_AGENT_API_KEY", "sk-secret")
    monkeypatch.setenv("SCRIPT_AGENT_TIMEOUT_S", "5")
    llm = LlmPlanner.from_env()
    assert isinstance(llm.api_key, dg.EnvVar)  # the UI shows the variable's name, not the key
    server.script.append(reply(GOOD))
    llm.plan(prompt=PROMPT, title=TITLE)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-secret"


@pytest.mark.parametrize("name, value, expected", [
    ("SCRIPT_AGENT_TIMEOUT_S", "soon", "SCRIPT_AGENT_TIMEOUT_S (LlmPlanner.timeout_s) = 'soon': expected a number"),
    ("SCRIPT_AGENT_TIMEOUT_S", "0", "SCRIPT_AGENT_TIMEOUT_S (LlmPlanner.timeout_s) = '0': must be more than 0"),
    ("SCRIPT_AGENT_MAX_REPAIRS", "two", "SCRIPT_AGENT_MAX_REPAIRS (LlmPlanner.max_repairs) = 'two': expected an integer"),
    ("SCRIPT_AGENT_MAX_REPAIRS", "-1", "SCRIPT_AGENT_MAX_REPAIRS (LlmPlanner.max_repairs) = '-1': must be at least 0"),
    ("SCRIPT_AGENT_MAX_RETRIES", "-2", "SCRIPT_AGENT_MAX_RETRIES (LlmPlanner.max_retries) = '-2': must be at least 0"),
    ("SCRIPT_AGENT_BASE_URL", "127.0.0.1:11434/v1", "SCRIPT_AGENT_BASE_URL (LlmPlanner.base_url) = '127.0.0.1:11434/v1': "
                                                    "expected an http(s) URL"),
    ("SCRIPT_AGENT_BASE_URL", "ftp://models.example/v1", "SCRIPT_AGENT_BASE_URL (LlmPlanner.base_url)"),
    ("SCRIPT_AGENT_TEMPERATURE", "5", "SCRIPT_AGENT_TEMPERATURE (LlmPlanner.temperature) = '5': must be at most 2"),
    ("SCRIPT_AGENT_JSON_MODE", "maybe", "SCRIPT_AGENT_JSON_MODE (LlmPlanner.json_mode) = 'maybe': expected 1/0"),
])
def test_from_env_bad_values_name_the_variable(name, value, expected):
    with pytest.raises(ValueError) as caught:
        LlmPlanner.from_env({"SCRIPT_AGENT_MODEL": "m", name: value})
    assert expected in str(caught.value)


def test_from_env_reports_every_bad_value_at_once():
    with pytest.raises(SettingsError) as caught:
        LlmPlanner.from_env({"SCRIPT_AGENT_MODEL": "m", "SCRIPT_AGENT_TIMEOUT_S": "soon",
                             "SCRIPT_AGENT_TEMPERATURE": "5", "SCRIPT_AGENT_JSON_MODE": "maybe"})
    assert [p.variable for p in caught.value.problems] == ["SCRIPT_AGENT_TIMEOUT_S", "SCRIPT_AGENT_TEMPERATURE",
                                                          "SCRIPT_AGENT_JSON_MODE"]


def test_plan_checks_its_inputs_before_calling(server):
    with pytest.raises(ValueError, match="prompt"):
        planner(server).plan(prompt=" ", title=TITLE)
    with pytest.raises(ValueError, match="SCRIPT_AGENT_MODEL"):
        LlmPlanner(model=" ", base_url=server.base_url).plan(prompt=PROMPT, title=TITLE)
    assert server.requests == []


# --------------------------------------------------------------------------- extraction and prompt


@pytest.mark.parametrize("text", [
    GOOD,
    f"```\n{GOOD}\n```",
    f"```JSON\n{GOOD}```",
    f"Sure! Here it is: {GOOD} Let me know if you want changes.",
    f"<think>Three shots need four frames {{not json}}</think>\n```json\n{GOOD}\n```",
    json.dumps({"validated_plan": GOOD_PLAN}),
    json.dumps({"movie_plan": GOOD_PLAN}),
])
def test_extract_json(text):
    assert extract_json(text) == GOOD_PLAN


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("I cannot help with that.", "no JSON object"),
    ("[1, 2, 3]", "no JSON object"),
    ('{"title": "x",', "invalid JSON"),
])
def test_extract_json_failures(text, reason):
    with pytest.raises(ReplyFormatError, match=reason):
        extract_json(text)


def test_prompt_example_and_rules():
    validate_plan(EXAMPLE_PLAN)
    prompt = system_prompt("wan-2.1")
    assert 'Use "wan-2.1" unless' in prompt
    assert "shots[i].start_base_image_id == base_images[i].id" in prompt
    assert '"title":{"minLength":1' in prompt  # the schema keeps the plan's own title field


def test_retries_are_logged(server, caplog):
    with caplog.at_level(logging.WARNING, logger="sparkle_motion_dagster.resources.planning.llm"):
        make_plan(server, [status(500, "boom"), reply(GOOD)])
    assert any("retry 1/2" in record.getMessage() for record in caplog.records)
