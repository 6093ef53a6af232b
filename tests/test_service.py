"""The artifact service as a real uvicorn process on loopback, over a real film run."""

import hashlib
import http.client
import json
import os
import shlex
import subprocess
import sys
import threading
from urllib.parse import parse_qs
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from helpers import free_port, small_sample, wait_for

from sparkle_motion_dagster.cli import inspection as cli_inspect
from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import film_run, submit_run
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.store.locations import artifacts_root, ensure_dagster_home
from sparkle_motion_dagster.store.storage import ArtifactStore
from sparkle_motion_dagster.service import app as service
from sparkle_motion_dagster.stages import STAGE_KEYS, folder

SAMPLE = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "rooftop_revelations.json"
TOKEN = "test-token-0123456789abcdef"
SECTION_KEYS = {"stage", "count", "artifact_types", "media_types", "preview", "media_summary", "review_summary",
                "artifacts"}
ROW_KEYS = {"run_id", "stage", "artifact_type", "artifact_uri", "local_path", "media_type", "mime_type",
            "size_bytes", "sha256", "duration_s", "metadata", "download_url"}


@dataclass
class Server:
    port: int
    store: ArtifactStore
    run_id: str
    outside: Path
    log_lines: list[str]

    def request(self, path: str, token: str | None = TOKEN, headers: dict | None = None):
        """A raw request (the path is sent exactly as given): (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            conn.request("GET", path, headers=sent)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def post(self, path: str, body: dict, token: str | None = TOKEN):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Content-Type": "application/json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            conn.request("POST", path, body=json.dumps(body), headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def send(self, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN):
        """A request sent as given, body bytes included: (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def json(self, path: str, **kwargs):
        status, headers, body = self.request(path, **kwargs)
        return status, json.loads(body)


def _collect_lines(stream, lines: list[str]) -> None:
    """Keep every line the server prints, as it prints it."""
    while line := stream.readline():
        lines.append(line)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A filmed run, then `serve-artifacts` in its own process with a token."""
    base = tmp_path_factory.mktemp("service")
    state = base / "state"
    env = {"SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for key in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_INDEX", "ARTIFACTS_FS_TOKEN", "QA_AUTOMATION_REMOVED"):
            mp.delenv(key, raising=False)
        ensure_dagster_home()
        with dg.DagsterInstance.get() as instance:
            store = ArtifactStore(artifacts_root())
            clips = defs.resources["clips"]
            run_id = submit_run(store, instance, small_sample(), source="test", preview=True,
                                clip_model_ids=clips.model_ids, clip_backend=clips.backend)
            assert film_run(defs, instance, run_id, store=store).success
        outside = base / "outside-secret.txt"
        outside.write_text("secret outside the artifact root")
        port = free_port()
        child_env = {**os.environ, **env, "ARTIFACTS_FS_TOKEN": TOKEN}
        proc = subprocess.Popen([sys.executable, "-m", "sparkle_motion_dagster.cli.inspection", "serve-artifacts",
                                 "--host", "127.0.0.1", "--port", str(port)], env=child_env, cwd=base,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        srv = Server(port, store, run_id, outside, [])
        # Drain the server's output as it comes: a full pipe would block the server.
        drain = threading.Thread(target=_collect_lines, args=(proc.stdout, srv.log_lines), daemon=True)
        drain.start()
        try:
            def up():
                if proc.poll() is not None:
                    drain.join(timeout=5)
                    pytest.fail(f"the service exited: {''.join(srv.log_lines)}")
                try:
                    return srv.request("/healthz", token=None)[0] == 200
                except OSError:
                    return False

            wait_for(up, "the artifact service")
            yield srv
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_healthz_needs_no_token(server):
    status, body = server.json("/healthz", token=None)
    assert status == 200 and body["status"] == "ok" and body["auth"] == "token" and body["backend"] == "filesystem"


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/status?run_id={run}", "/artifacts?run_id={run}",
                                  "/files/runs/{run}/finalize/video_final.mp4"])
@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_every_other_route_needs_the_token(server, path, token):
    status, headers, body = server.request(path.format(run=server.run_id), token=token)
    assert status == 401
    assert headers.get("www-authenticate") == "Bearer"
    assert b"video_final" not in body and b"Rooftop" not in body
    status, headers, _ = server.request(path.format(run=server.run_id),
                                        headers={"Authorization": f"Basic {TOKEN}"}, token=None)
    assert status == 401


@pytest.mark.slow
def test_status_route(server):
    status, body = server.json(f"/status?run_id={server.run_id}")
    assert status == 200
    assert {"run_id", "current_stage", "status", "progress", "stages", "log", "dagster_runs", "review"} <= set(body)
    assert body["status"] == "succeeded" and body["progress"] == 1.0 and len(body["stages"]) == len(STAGE_KEYS)
    assert all(s["duration_s"] is not None and s["started_at"] and s["completed_at"] for s in body["stages"])
    assert {(c["asset"], c["name"]) for c in body["checks"]} >= {("video_clips", "clips_sound")}


@pytest.mark.slow
def test_artifacts_route_has_the_seed_shape(server):
    status, body = server.json(f"/artifacts?run_id={server.run_id}")
    assert status == 200
    assert {"run_id", "stages", "artifacts", "review_summary", "manual_review_required", "qa_mode"} <= set(body)
    assert body["review_summary"]["status"] == "pending" and body["manual_review_required"] is True
    assert body["qa_mode"] == "automated"  # the film's quality checks ran, with their results listed
    assert {c["name"] for c in body["checks"]} >= {"clips_sound", "final_sound"}
    assert all(c["passed"] for c in body["checks"])
    stages = {s["stage"]: s for s in body["stages"]}
    assert list(stages)[:len(STAGE_KEYS)] == [folder(key) for key in STAGE_KEYS]
    for section in body["stages"]:
        assert SECTION_KEYS <= set(section) and section["count"] == len(section["artifacts"])
        for row in section["artifacts"]:
            assert ROW_KEYS <= set(row) and Path(row["local_path"]).is_file()
    assert sum(s["count"] for s in body["stages"]) == len(body["artifacts"])

    # Counts and durations of the sample: 3 keyframes, 2 clips (8 s + 9.5 s), 2 lines and a 17.5 s timeline.
    assert stages["base_images"]["media_summary"]["image"]["count"] == 3
    clips = stages["video_clips"]["media_summary"]["video"]
    assert clips["count"] == 2 and clips["total_duration_s"] == pytest.approx(17.5, abs=0.05)
    audio = stages["dialogue_audio"]
    assert audio["media_summary"]["audio"]["count"] == 3
    timeline = next(r for r in audio["artifacts"] if r["artifact_type"] == "tts_timeline_audio")
    assert timeline["duration_s"] == pytest.approx(17.5, abs=1e-3)
    assert audio["preview"]["audio"]["artifact_type"] == "tts_timeline_audio"

    status, body = server.json(f"/artifacts?run_id={server.run_id}&stage=finalize")
    assert status == 200 and [s["stage"] for s in body["stages"]] == ["finalize"]
    final = body["stages"][0]
    assert "video_final" in final["artifact_types"]
    assert final["preview"]["video"]["playback_ready"] is True
    assert final["preview"]["video"]["duration_s"] == pytest.approx(17.5, abs=0.1)
    assert final["review_summary"]["status"] == "pending"
    entry = next(r for r in final["artifacts"] if r["artifact_type"] == "video_final")
    # With a token the link is signed and expires, so that a browser's <video src> plays it.
    path, _, query = entry["download_url"].partition("?")
    assert path == f"/files/runs/{server.run_id}/finalize/video_final.mp4"
    assert set(parse_qs(query)) == {"expires", "sig"}


@pytest.mark.slow
def test_range_requests(server):
    path = server.store.path(server.run_id, "finalize", "video_final.mp4")
    data = path.read_bytes()
    url = f"/files/runs/{server.run_id}/finalize/video_final.mp4"
    status, headers, body = server.request(url)
    assert status == 200 and body == data and headers["content-type"] == "video/mp4"
    assert headers["accept-ranges"] == "bytes"
    status, headers, body = server.request(url, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["content-range"] == f"bytes 100-199/{len(data)}"
    status, headers, body = server.request(url, headers={"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    assert headers["content-range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    status, headers, _ = server.request(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert status == 416


@pytest.mark.slow
def test_paths_outside_the_run_folders_are_refused(server):
    run_dir = server.store.run_dir(server.run_id)
    (run_dir / "finalize" / "escape.txt").symlink_to(server.outside)
    (run_dir / "escape_dir").symlink_to(server.outside.parent, target_is_directory=True)
    (run_dir / "finalize" / "inside.json").symlink_to(run_dir / "finalize" / "alignment_map.json")
    refused = [
        "/files/../../../../etc/passwd",
        f"/files/runs/{server.run_id}/../../../outside-secret.txt",
        "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/files/runs/{server.run_id}/%2e%2e/%2e%2e/%2e%2e/outside-secret.txt",
        "/files//etc/passwd",
        "/files/%2Fetc%2Fpasswd",
        f"/files/runs/{server.run_id}/finalize/escape.txt",
        f"/files/runs/{server.run_id}/escape_dir/outside-secret.txt",
        "/files/index.duckdb",
        f"/files/runs/{server.run_id}/request/../../../index.duckdb",
        f"/files/runs/{server.run_id}/finalize",
        f"/files/runs/{server.run_id}/base_images/.meta/frame_000.png.json",
    ]
    for path in refused:
        status, _, body = server.request(path)
        assert status in (403, 404), (path, status)
        assert b"secret" not in body and b"root:" not in body, path
    status, _, body = server.request(f"/files/runs/{server.run_id}/finalize/inside.json")
    assert status == 200 and json.loads(body)["run_id"] == server.run_id


@pytest.mark.slow
def test_a_link_inside_the_runs_to_a_hidden_file_is_refused(server):
    run_dir = server.store.run_dir(server.run_id)
    hidden = next((run_dir / "base_images" / ".meta").glob("*.json"))
    (run_dir / "finalize" / "sidecar.json").symlink_to(hidden)
    (run_dir / "finalize" / "spool").symlink_to(run_dir / ".catalog", target_is_directory=True)
    (run_dir / ".catalog").mkdir(exist_ok=True)
    (run_dir / ".catalog" / "note.json").write_text('{"hidden": true}')
    for path in ("finalize/sidecar.json", "finalize/spool/note.json"):
        status, _, body = server.request(f"/files/runs/{server.run_id}/{path}")
        assert status == 404 and b"hidden" not in body and b"fingerprint" not in body, path


@pytest.mark.slow
def test_swapping_a_file_for_a_link_during_requests_never_serves_the_link(server):
    """A thread keeps replacing a served file by a symlink to a file outside the root and back;
    no response may carry the outside file, and every body matches its Content-Length."""
    inside = b"inside the run folder\n" * 50  # a different length from the outside file
    target = server.store.run_dir(server.run_id) / "finalize" / "swapped.txt"
    target.write_bytes(inside)
    stop = threading.Event()

    def swap():
        spare_link, spare_file = target.with_name(".swap-link"), target.with_name(".swap-file")
        while not stop.is_set():
            spare_link.unlink(missing_ok=True)
            spare_link.symlink_to(server.outside)
            os.replace(spare_link, target)
            spare_file.write_bytes(inside)
            os.replace(spare_file, target)

    swapper = threading.Thread(target=swap, daemon=True)
    log_start = len(server.log_lines)
    swapper.start()
    served = refused = 0
    try:
        for _ in range(400):
            try:
                status, headers, body = server.request(f"/files/runs/{server.run_id}/finalize/swapped.txt")
            except http.client.IncompleteRead as exc:
                pytest.fail(f"a body shorter than its Content-Length: {exc!r}")
            assert b"secret" not in body
            if status == 200:
                assert body == inside and int(headers["content-length"]) == len(body)
                served += 1
            else:
                assert status == 404
                refused += 1
    finally:
        stop.set()
        swapper.join(timeout=10)
    assert served > 0 and served + refused == 400
    log = "".join(server.log_lines[log_start:])
    assert "Content-Length" not in log and "Traceback" not in log


@pytest.mark.slow
def test_bad_run_ids_are_400_and_name_run_id(server):
    for path in ("/status?run_id=../../etc", "/artifacts?run_id=run_XYZ", "/status", "/artifacts?run_id="):
        status, body = server.json(path)
        assert status == 400 and "run_id" in body["detail"], path
    status, body = server.json("/artifacts?run_id=" + server.run_id + "&stage=../x")
    assert status == 400 and "stage" in body["detail"]
    for path in ("/status?run_id=run_0badc0de", "/artifacts?run_id=run_0badc0de"):
        status, body = server.json(path)
        assert status == 404 and "run_0badc0de" in body["detail"]


@pytest.mark.slow
def test_health_command(server, capsys):
    assert cli_inspect.main(["health", "--url", f"http://127.0.0.1:{server.port}/healthz"]) == 0
    assert "healthy" in capsys.readouterr().out
    assert cli_inspect.main(["health", "--url", f"http://127.0.0.1:{free_port()}/healthz"]) == 1
    assert "unhealthy" in capsys.readouterr().err
    assert cli_inspect.main(["health", "--url", "ftp://example/healthz"]) == 2


def test_non_loopback_without_a_token_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("ARTIFACTS_FS_TOKEN", raising=False)
    for host in ("0.0.0.0", "192.0.2.1", "example.org", "::"):
        with pytest.raises(ValueError, match="--host.*ARTIFACTS_FS_TOKEN"):
            service.check_bind(host, 7077, None)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        service.check_bind(host, 7077, None)
    service.check_bind("0.0.0.0", 7077, "a-token")
    with pytest.raises(ValueError, match="--port"):
        service.check_bind("127.0.0.1", 70000, None)
    assert cli_inspect.main(["serve-artifacts", "--host", "0.0.0.0", "--port", "7077"]) == 2
    assert "refusing to serve" in capsys.readouterr().err


def test_artifacts_env_prints_exports(tmp_path, capsys):
    root, index = tmp_path / "fs", tmp_path / "fs" / "index.duckdb"

    def exports(*extra):
        assert cli_inspect.main(["artifacts-env", "--root", str(root), "--index", str(index), *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert all(line.startswith("export ") for line in lines)
        return dict(shlex.split(line[len("export "):])[0].split("=", 1) for line in lines)

    plain = exports()
    assert plain == {"ARTIFACTS_BACKEND": "filesystem", "ARTIFACTS_FS_ROOT": str(root),
                     "ARTIFACTS_FS_INDEX": str(index)}
    assert exports("--token", "t0k en")["ARTIFACTS_FS_TOKEN"] == "t0k en"
    first, second = exports("--emit-token")["ARTIFACTS_FS_TOKEN"], exports("--emit-token")["ARTIFACTS_FS_TOKEN"]
    assert len(first) >= 40 and first != second
    assert exports("--token", "given", "--emit-token")["ARTIFACTS_FS_TOKEN"] == "given"
    assert cli_inspect.main(["artifacts-env", "--root", str(root), "--index", str(tmp_path), "--emit-token"]) == 2
    assert "--index" in capsys.readouterr().err


def test_cli_constants_match_the_service():
    assert (cli_inspect.DEFAULT_HOST, cli_inspect.DEFAULT_PORT, cli_inspect.TOKEN_ENV) == (
        service.DEFAULT_HOST, service.DEFAULT_PORT, service.TOKEN_ENV)


# --- signed links ---------------------------------------------------------------------------

@pytest.mark.slow
def test_a_signed_download_url_plays_without_the_bearer_header(server):
    _, body = server.json(f"/artifacts?run_id={server.run_id}&stage=finalize")
    url = next(r for r in body["artifacts"] if r["artifact_type"] == "video_final")["download_url"]
    status, headers, data = server.request(url, token=None, headers={"Range": "bytes=0-99"})
    assert (status, headers["content-type"], len(data)) == (206, "video/mp4", 100)
    assert server.request(url.partition("?")[0], token=None)[0] == 401  # the same path unsigned


@pytest.mark.slow
def test_forged_expired_and_borrowed_signatures_are_refused(server):
    from sparkle_motion_dagster.service import signing

    path = f"runs/{server.run_id}/finalize/video_final.mp4"
    good = signing.signed_path(TOKEN, path)
    assert server.request(good, token=None)[0] == 200
    forged = signing.signed_path("not-the-token", path)
    expired = signing.signed_path(TOKEN, path, ttl_s=-10)
    stretched = good.replace("expires=", "expires=9")  # a later expiry with the old signature
    other = f"runs/{server.run_id}/assembly/video_raw_concat.mp4"
    borrowed = "/files/" + other + "?" + good.partition("?")[2]  # a signature made for another file
    for url in (forged, expired, stretched, borrowed):
        assert server.request(url, token=None)[0] == 401, url
    # A signed path that climbs out of the run folders is still refused (signed by the token itself).
    escaping = signing.signed_path(TOKEN, f"runs/{server.run_id}/../../../outside-secret.txt")
    status, _, data = server.request(escaping, token=None)
    assert status in (401, 404) and b"secret" not in data


def test_signatures_name_their_path_and_expiry():
    from sparkle_motion_dagster.service import signing

    sig = signing.signature("k", "runs/a.mp4", 100)
    assert signing.valid("k", "runs/a.mp4", "100", sig, now=99)
    assert not signing.valid("k", "runs/a.mp4", "100", sig, now=101)
    assert not signing.valid("k", "runs/b.mp4", "100", sig, now=99)
    assert not signing.valid("k", "runs/a.mp4", "100", "0" * 64, now=99)
    assert not signing.valid("k", "runs/a.mp4", "soon", sig, now=99)


# --- the control surface --------------------------------------------------------------------

@pytest.mark.slow
def test_ready_answers_without_the_token(server):
    from sparkle_motion_dagster.store.locations import path_id

    status, body = server.json("/ready", token=None)
    # which root it serves, as a fingerprint (a notebook tells its own service from another's), not the path
    assert (status, body) == (200, {"ready": True, "problems": [], "root_id": path_id(server.store.root)})


@pytest.mark.slow
@pytest.mark.parametrize("route", ["/runs", "/control/pause", "/review", "/regenerate"])
def test_control_routes_need_the_token(server, route):
    assert server.post(route, {"run_id": server.run_id}, token=None)[0] == 401
    assert server.post(route, {"run_id": server.run_id}, token="wrong")[0] == 401


@pytest.mark.slow
def test_control_of_a_finished_run(server):
    status, body = server.post("/control/pause", {"run_id": server.run_id})
    assert status == 409 and "succeeded" in body["detail"]
    status, body = server.post("/control/resume", {"run_id": server.run_id})
    assert status == 200 and body["state"] == "running" and body["needs_launch"] is False
    status, body = server.post("/control/stop", {"run_id": "run_../../etc"})
    assert status == 400 and "run_id" in body["detail"]
    assert server.post("/control/explode", {"run_id": server.run_id})[0] == 422
    assert server.post("/control/pause", {"run_id": "run_00000000"})[0] == 404


@pytest.mark.slow
def test_new_runs_from_a_prompt_and_a_plan(server):
    status, body = server.post("/runs", {"prompt": "A fox at dawn", "title": "Fox", "size": "96x64"})
    assert status == 200 and body["run_id"].startswith("run_")
    request = json.loads(server.store.request_path(body["run_id"]).read_text())
    assert request["prompt"] == {"prompt": "A fox at dawn", "title": "Fox", "seed": 0, "size": [96, 64]}
    plan = json.loads(SAMPLE.read_text())
    plan["validated_plan"]["shots"][0]["duration_sec"] = -1
    status, body = server.post("/runs", {"plan": plan})
    assert status == 422
    assert [p["field"] for p in body["detail"]["problems"]] == ["validated_plan.shots[0].duration_sec"]
    assert server.post("/runs", {"prompt": "x", "title": "y", "size": "big"})[1]["detail"].startswith("size:")


@pytest.mark.slow
def test_review_and_regenerate_routes(server):
    final = server.store.run_dir(server.run_id) / "finalize" / "video_final.mp4"
    watched = hashlib.sha256(final.read_bytes()).hexdigest()
    # An approval binds to the video the reviewer watched: another file's sha256 is refused, with the reason.
    stale = "0" * 64
    status, body = server.post("/review", {"run_id": server.run_id, "decision": "approve", "reviewer": "ana",
                                           "sha256": stale})
    assert status == 409 and body["detail"].startswith(f"{server.run_id}: refused: the video you watched "
                                                       f"(sha256 {stale[:16]}…) is not the current")
    status, body = server.post("/review", {"run_id": server.run_id, "decision": "approve", "reviewer": "ana"})
    assert status == 422 and body["detail"].startswith("sha256: the sha256 of the final video the reviewer watched")
    # While a process films the run again (the marker it leaves), no approval binds, whatever was watched.
    control.mark_active(server.store, server.run_id)
    try:
        status, body = server.post("/review", {"run_id": server.run_id, "decision": "approve", "reviewer": "ana",
                                               "sha256": watched})
    finally:
        control.clear_active(server.store, server.run_id)
    assert status == 409 and body["detail"] == (f"{server.run_id}: refused: the film is being made again (running); "
                                                "the final video may change; approve it once filming has ended")
    assert server.json(f"/status?run_id={server.run_id}")[1]["review"]["status"] == "pending"

    status, body = server.post("/review", {"run_id": server.run_id, "decision": "approve", "reviewer": "ana",
                                           "notes": "continuity ok", "sha256": watched})
    assert status == 200 and body["review"]["status"] == "approved"
    assert body["record"]["video_final"]["sha256"] == watched
    assert body["launch"] == {"checks": [{"asset": "video_final", "name": "approved_by_reviewer"}],
                              "partition": server.run_id}  # the check, for this film's partition
    assert server.post("/review", {"run_id": server.run_id, "decision": "approve", "reviewer": " "})[0] == 422

    status, body = server.post("/regenerate", {"run_id": server.run_id, "shot_id": "shot_002", "seed": 77})
    assert status == 200 and body["seeds"] == {"shot_002": 77}
    assert body["launch"] == {"job": "film", "assets": ["video_clips", "video_raw_concat", "video_final"]}
    overrides = json.loads(server.store.path(server.run_id, "overrides", "overrides.json").read_text())
    assert overrides["shots"]["shot_002"] == {"seed": 77}
    status, body = server.post("/regenerate", {"run_id": server.run_id, "shot_id": "shot_999"})
    assert status == 422 and body["detail"].startswith("shot_id:")


# --- malformed input: always a 4xx, never a 5xx ----------------------------------------------

MALFORMED_QUERIES = [
    "expires=%C2%B2&sig=" + "0" * 64, "expires=" + "9" * 5000 + "&sig=" + "0" * 64, "sig=%C3%A9&expires=99999999999",
    "expires=-1&sig=x", "expires=1e9&sig=%00", "run_id=%00", "run_id=%C3%A9", "run_id=" + "a" * 5000,
    "run_id=run_00000000&log_lines=" + "9" * 5000, "log_lines=NaN", "log_lines=%C2%B2", "stage=%00&run_id=%ff",
    "run_id=run_00000000&stage=" + "x" * 5000, "%ff=%ff", "run_id=run_00000000&run_id=../x",
]
MALFORMED_BODIES = [
    b'{"prompt": "x", "title": "y", "seed": NaN}', b'{"plan": {"title": NaN}}', b'{"plan": {"a": Infinity}}',
    b'{"run_id": NaN}', b'{"run_id": "run_00000000", "shot_id": "x", "seed": -Infinity}', b'{"seed": 1e400}',
    b"[" * 100_000, b'{"a": ' + b"1" * 5000 + b"}", b"\xff\xfe", b"", b"null", b"[]", b'"x"', b"{",
    b'{"plan": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"prompt": "x", "title": "y", "size": "' + b"9" * 400 + b'x9"}',
    b'{"run_id": "run_00000000", "decision": "approve", "reviewer": "x", "notes": NaN}',
    b'{"prompt": "x", "title": "y", "seed": ' + str(2**70).encode() + b"}",
    b'{"run_id": "run_00000000", "shot_id": "shot_001", "seed": -1}',
]
GET_ROUTES = ["/healthz", "/ready", "/artifacts", "/status", "/files/runs/{run_id}/finalize/video_final.mp4",
              "/files/%C3%A9", "/files/runs/%ff%fe"]
POST_ROUTES = ["/runs", "/control/pause", "/control/resume", "/control/stop", "/control/%C3%A9", "/review",
               "/regenerate"]


@pytest.mark.slow
def test_malformed_queries_and_bodies_get_a_4xx_on_every_route(server):
    answers = {}
    for route in GET_ROUTES:
        for query in MALFORMED_QUERIES:
            for token in (TOKEN, None):
                path = route.format(run_id=server.run_id) + "?" + query
                for method in ("GET", "HEAD"):
                    answers[(method, path[:80], token)] = server.send(method, path, token=token)[0]
    for route in POST_ROUTES:
        for body in MALFORMED_BODIES:
            answers[("POST", route, body[:60])] = server.send("POST", route, body)[0]
    failed = {key: status for key, status in answers.items() if status >= 500}
    assert not failed, failed
    # Without the token every query is refused; every malformed body is refused with or without it.
    wrong = {key: status for key, status in answers.items() if (key[0] == "POST" or key[2] is None)
             and not key[1].startswith(("/healthz", "/ready")) and not 400 <= status < 500}
    assert not wrong, wrong

    # The cases as found: a signature that is not one is a 401; a body JSON cannot hold is a 422 naming it.
    final = f"/files/runs/{server.run_id}/finalize/video_final.mp4"
    for query in ("expires=%C2%B2&sig=" + "0" * 64, "expires=" + "9" * 5000 + "&sig=" + "0" * 64,
                  "sig=%C3%A9&expires=99999999999"):
        assert server.send("GET", f"{final}?{query}", token=None)[0] == 401
    status, body = server.send("POST", "/runs", b'{"prompt": "x", "title": "y", "seed": NaN}')
    assert status == 422 and json.loads(body)["detail"] == "body: NaN is not a JSON number"
    status, body = server.send("POST", "/review", b'{"run_id": "%s", "decision": "approve", "reviewer": "x", '
                               b'"notes": Infinity}' % server.run_id.encode())
    assert status == 422 and json.loads(body)["detail"] == "body: Infinity is not a JSON number"


# --- seeds ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_seeds_out_of_range_are_refused_naming_the_field(server):
    before = set(server.store.run_ids())
    status, body = server.post("/runs", {"prompt": "A fox at dawn", "title": "Fox", "seed": 2**70})
    assert status == 422
    (error,) = body["detail"]
    assert error["loc"] == ["body", "seed"] and "0 <= seed < 2**32" in error["msg"]
    assert "an integer of 71 bits" in error["msg"]
    overrides = server.store.path(server.run_id, "overrides", "overrides.json")
    recorded = overrides.read_bytes() if overrides.exists() else None
    for seed in (-1, 10**30, 2**32):
        status, body = server.post("/regenerate", {"run_id": server.run_id, "shot_id": "shot_001", "seed": seed})
        assert status == 422 and body["detail"][0]["loc"] == ["body", "seed"], body
    assert set(server.store.run_ids()) == before  # nothing registered
    assert (overrides.read_bytes() if overrides.exists() else None) == recorded  # nothing recorded
