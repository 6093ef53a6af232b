"""The /status payload: read from the Dagster instance across every Dagster run of a film run."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
from helpers import small_sample, wait_for

from sparkle_motion_dagster.cli import inspection as cli_inspect
from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import film_run, submit_run
from sparkle_motion_dagster.orchestration.status import STAGES, film_status, format_age, list_runs
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.lifecycle.control import set_state
from sparkle_motion_dagster.lifecycle.events import write_event
from sparkle_motion_dagster.store.locations import artifacts_root, ensure_dagster_home
from sparkle_motion_dagster.store.run_files import submit_request
from sparkle_motion_dagster.store.storage import ArtifactStore, UnknownRunError, UnsafeIdError, new_run_id
from sparkle_motion_dagster.stages import STAGE_KEYS as FILM_STAGES

SAMPLE = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "rooftop_revelations.json"
STAGE_NAMES = [name for _, name in STAGES]
STATUS_KEYS = {"run_id", "title", "status", "current_stage", "progress", "stages", "log", "dagster_runs", "review",
               "regenerations", "started_at", "completed_at"}
STAGE_KEYS = {"name", "status", "started_at", "completed_at", "duration_s", "artifacts"}
LOG_KEYS = {"timestamp", "stage", "level", "message"}


@dataclass
class Filmed:
    state: Path
    instance: dg.DagsterInstance
    store: ArtifactStore
    run_id: str
    result: object


def _env(state: Path) -> dict[str, str]:
    return {"SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home")}


def submit(store, instance, preview=True) -> str:
    clips = defs.resources["clips"]
    return submit_run(store, instance, small_sample(), source="test", preview=preview,
                      clip_model_ids=clips.model_ids, clip_backend=clips.backend)


@pytest.fixture(scope="module")
def filmed(tmp_path_factory):
    """One real film of the seed's sample in a private state folder, shared by the module."""
    state = tmp_path_factory.mktemp("status") / "state"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _env(state).items():
            mp.setenv(key, value)
        mp.delenv("ARTIFACTS_FS_ROOT", raising=False)
        mp.delenv("ARTIFACTS_FS_INDEX", raising=False)
        mp.delenv("QA_AUTOMATION_REMOVED", raising=False)
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
        store = ArtifactStore(artifacts_root())
        run_id = submit(store, instance)
        result = film_run(defs, instance, run_id, store=store)
        assert result.success, result.error
        yield Filmed(state, instance, store, run_id, result)
        instance.dispose()


@pytest.fixture
def bare():
    """An ephemeral instance and an empty artifact root (no filming)."""
    import tempfile

    with tempfile.TemporaryDirectory() as root, dg.DagsterInstance.ephemeral() as instance:
        yield instance, ArtifactStore(root)


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.slow
def test_status_of_a_finished_film_has_the_seed_shape(filmed):
    status = film_status(filmed.instance, filmed.store, filmed.run_id)
    assert STATUS_KEYS <= set(status)
    assert (status["run_id"], status["title"]) == (filmed.run_id, "Rooftop Revelations")
    assert status["status"] == "succeeded" and status["progress"] == 1.0
    assert status["current_stage"] == "finalize"
    assert [s["name"] for s in status["stages"]] == STAGE_NAMES
    for stage in status["stages"]:
        assert STAGE_KEYS <= set(stage)
        assert stage["status"] == "succeeded", stage
        started, completed = _parse(stage["started_at"]), _parse(stage["completed_at"])
        assert stage["duration_s"] == pytest.approx((completed - started).total_seconds(), abs=0.002)
        assert stage["duration_s"] >= 0
        assert stage["artifacts"] and all(Path(p).is_file() for p in stage["artifacts"])
        assert all(Path(p).parent.name == stage["name"] for p in stage["artifacts"])
    # The times agree with what the runner measured from the same event log.
    for asset, seconds in filmed.result.stage_seconds.items():
        stage = next(s for s in status["stages"] if s["asset"] == asset)
        assert stage["duration_s"] == pytest.approx(seconds, abs=0.01)
    by_name = {s["name"]: s for s in status["stages"]}
    assert sum(p.endswith(".png") for p in by_name["base_images"]["artifacts"]) == 3
    assert sum(p.endswith(".mp4") for p in by_name["video_clips"]["artifacts"]) == 2
    assert any(p.endswith("video_final.mp4") for p in by_name["finalize"]["artifacts"])
    assert status["completed_at"] == by_name["finalize"]["completed_at"]

    # The log: the most recent lines, oldest first, user messages and step events.
    assert 0 < len(status["log"]) <= 20
    for line in status["log"]:
        assert LOG_KEYS <= set(line)
    assert [_parse(line["timestamp"]) for line in status["log"]] == sorted(_parse(l["timestamp"]) for l in status["log"])
    assert status["log"][-1]["message"] == "Dagster run succeeded"
    full = film_status(filmed.instance, filmed.store, filmed.run_id, log_lines=500)["log"]
    assert any(l["level"] == "INFO" and "rendered" in l["message"] and l["stage"] == "video_clips" for l in full)
    assert any(l["stage"] == "plan_intake" and l["message"].startswith("movie_plan succeeded") for l in full)
    assert len(film_status(filmed.instance, filmed.store, filmed.run_id, log_lines=3)["log"]) == 3

    assert [(r["dagster_run_id"], r["status"], r["source"]) for r in status["dagster_runs"]] == [
        (filmed.result.dagster_run_id, "SUCCESS", "cli")]
    assert status["review"]["status"] == "pending" and status["review"]["ready_to_share"] is False
    assert status["regenerations"] == []


@pytest.mark.slow
def test_regenerations_are_counted_per_shot(filmed):
    for shot in ("shot_002", "shot_001", "shot_002"):
        write_event(filmed.store.root, filmed.run_id, "regeneration", {"shot_id": shot, "what": "clip"})
    notes = [r["note"] for r in film_status(filmed.instance, filmed.store, filmed.run_id)["regenerations"]]
    assert notes == ["shot_001 regenerations: 1", "shot_002 regenerations: 2"]


@pytest.mark.slow
def test_a_failed_stage_reports_its_error_and_stop_wins(filmed):
    run_id = new_run_id()
    submit_request(filmed.store, run_id, document=json.loads(SAMPLE.read_text()), source="test", preview=False)
    filmed.instance.add_dynamic_partitions("run_id", [run_id])
    assert film_status(filmed.instance, filmed.store, run_id)["status"] == "submitted"
    assert not film_run(defs, filmed.instance, run_id, store=filmed.store).success

    status = film_status(filmed.instance, filmed.store, run_id)
    assert status["status"] == "failed" and status["current_stage"] == "plan_intake"
    intake = status["stages"][0]
    assert intake["status"] == "failed" and "wan-2.1" in intake["error"] and "--preview" in intake["error"]
    assert [s["status"] for s in status["stages"][1:]] == ["pending"] * (len(FILM_STAGES) - 1)
    assert status["progress"] == 0.0
    assert any(l["level"] == "ERROR" and l["stage"] == "plan_intake" for l in status["log"])

    set_state(filmed.store, run_id, "stopped")
    assert film_status(filmed.instance, filmed.store, run_id)["status"] == "stopped"


def test_precedence_of_control_state_and_dagster_runs(bare):
    instance, store = bare
    run_id = new_run_id()
    submit_request(store, run_id, document=json.loads(SAMPLE.read_text()), source="test", preview=True)
    instance.add_dynamic_partitions("run_id", [run_id])
    job = defs.resolve_job_def("film")
    tags = {"dagster/partition": run_id}

    def status():
        return film_status(instance, store, run_id)["status"]

    assert status() == "submitted"  # registered, never launched
    # A launched run that has not started yet (QUEUED runs need a code location to create).
    queued = instance.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.NOT_STARTED)
    assert status() == "queued"
    started = instance.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.STARTED)
    assert status() == "running"
    set_state(store, run_id, "paused")
    assert status() == "paused"
    set_state(store, run_id, "stopped")
    assert status() == "stopped"
    set_state(store, run_id, "running")
    instance.report_run_canceled(queued)
    instance.report_run_failed(started)
    assert status() == "failed"
    set_state(store, run_id, "paused")  # paused without an active Dagster run is just the outcome
    assert status() == "failed"
    with pytest.raises(control.RunPaused):  # ... until a stage's gate ends a Dagster run there: held
        control.close_gate(store, run_id, "video_clips")
    payload = film_status(instance, store, run_id)
    assert payload["status"] == "held" and "held before video_clips" in payload["detail"], payload
    clips = next(s for s in payload["stages"] if s["asset"] == "video_clips")
    assert clips["status"] == "held" and clips["held_since"] and clips["duration_s"] is None  # not pending
    set_state(store, run_id, "paused")
    set_state(store, run_id, "running")
    instance.report_run_canceled(instance.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.STARTED))
    assert status() == "stopped"

    # A CLI run whose process was killed stays "started" in Dagster; it is not running.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    killed = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED, tags=tags)
    instance.add_run_tags(killed.run_id, {"sparkle/pid": str(dead.pid), "sparkle/host": socket.gethostname(),
                                          "sparkle/pid_of_run": killed.run_id})
    payload = film_status(instance, store, run_id)
    assert payload["status"] == "failed" and payload["dagster_runs"][-1]["status"] == "ABANDONED"
    assert "process" in payload["detail"]

    # A run created but never launched, older than the newest run, is not waiting for anything.
    instance.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.NOT_STARTED)
    instance.report_run_failed(instance.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.STARTED))
    set_state(store, run_id, "paused")
    assert status() == "failed"


def test_bad_and_unknown_run_ids(bare):
    instance, store = bare
    with pytest.raises(UnsafeIdError, match="run_id"):
        film_status(instance, store, "../etc")
    with pytest.raises(UnknownRunError, match="run_id: unknown run 'run_0badc0de'"):
        film_status(instance, store, "run_0badc0de")
    with pytest.raises(ValueError, match="log_lines"):
        film_status(instance, store, "run_0badc0de", log_lines=-1)


def test_format_age():
    assert [format_age(s) for s in (None, 5, 125, 3 * 3600 + 600, 4 * 86400 + 7200)] == ["?", "5s", "2m", "3h 10m", "4d 2h"]


@pytest.mark.slow
def test_status_follows_a_film_run_in_another_process(tmp_path, monkeypatch):
    state = tmp_path / "state"
    for key, value in _env(state).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ARTIFACTS_FS_ROOT", raising=False)
    monkeypatch.delenv("ARTIFACTS_FS_INDEX", raising=False)
    ensure_dagster_home()  # create the instance's storage once, before two processes use it
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state)}
    env.pop("DAGSTER_HOME")  # the CLI derives it from SPARKLE_STATE_DIR
    proc = subprocess.Popen([sys.executable, "-m", "sparkle_motion_dagster.cli.main", "run", "--sample", "--preview",
                             "--size", "320x180"],  # still seconds of "running" to observe
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with dg.DagsterInstance.get() as instance:
            store = ArtifactStore(artifacts_root())
            run_id = wait_for(lambda: (instance.get_dynamic_partitions("run_id") or [None])[0]
                               or (proc.poll() is not None and pytest.fail(proc.stdout.read())), "the run to be submitted")
            seen = []

            def observe(wanted):
                status = film_status(instance, store, run_id)
                if not seen or seen[-1]["status"] != status["status"]:
                    seen.append(status)
                if status["status"] == wanted:
                    return status
                if proc.poll() is not None and wanted == "running":
                    pytest.fail(f"the film ended before status said running; saw {[s['status'] for s in seen]}")
                return None

            running = wait_for(lambda: observe("running"), "status running")
            assert running["current_stage"] in STAGE_NAMES and running["progress"] < 1
            assert running["dagster_runs"][-1]["status"] in ("STARTING", "STARTED")
            done = wait_for(lambda: observe("succeeded"), "status succeeded")
            assert proc.wait() == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert done["progress"] == 1.0 and all(s["status"] == "succeeded" for s in done["stages"])
    assert [r["source"] for r in done["dagster_runs"]] == ["cli"]
    statuses = [s["status"] for s in seen]
    assert statuses.index("running") < statuses.index("succeeded")
    assert set(statuses) <= {"submitted", "queued", "running", "succeeded"}


@pytest.mark.slow
def test_status_and_runs_commands(filmed, capsys):
    assert cli_inspect.main(["status", filmed.run_id, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["run_id"] == filmed.run_id and payload["status"] == "succeeded"

    assert cli_inspect.main(["status", filmed.run_id]) == 0
    out = capsys.readouterr().out
    assert "status:    succeeded" in out and f"{len(FILM_STAGES)}/{len(FILM_STAGES)} stages" in out and "finalize" in out
    assert "Manual review required" in out

    assert cli_inspect.main(["runs", "--json"]) == 0
    runs = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs[filmed.run_id]["status"] == "succeeded" and runs[filmed.run_id]["age"].endswith(("s", "m"))
    assert list_runs(filmed.instance, filmed.store)[0]["submitted_at"] >= runs[filmed.run_id]["submitted_at"]

    assert cli_inspect.main(["runs"]) == 0
    assert filmed.run_id in capsys.readouterr().out

    assert cli_inspect.main(["status", "run_nothex"]) == 2
    assert "run_id" in capsys.readouterr().err


@pytest.mark.slow
def test_artifacts_and_catalog_commands(filmed, capsys):
    assert cli_inspect.main(["artifacts", filmed.run_id, "--stage", "video_clips"]) == 0
    out = capsys.readouterr().out
    assert "video_clips/shot_001.mp4" in out and "8.00 s" in out and "9.50 s" in out and "review: pending" in out
    assert cli_inspect.main(["artifacts", filmed.run_id, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {s["stage"] for s in payload["stages"]} >= set(STAGE_NAMES)
    assert cli_inspect.main(["artifacts", filmed.run_id, "--stage", "nope"]) == 2
    assert "--stage" in capsys.readouterr().err
    assert cli_inspect.main(["catalog", "rebuild"]) == 0
    assert "catalog rebuilt" in capsys.readouterr().out
    assert cli_inspect.main(["artifacts", filmed.run_id, "--stage", "finalize", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"][0]["count"] >= 2
