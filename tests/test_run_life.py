"""A film run's life from the command line: Ctrl-C and SIGTERM stop it cleanly, pause says what
it does, a dead run never holds a gpu slot, the model check holds on every path that renders,
and only transient errors are retried."""

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from helpers import wait_for

from sparkle_motion_dagster.assets.stage import is_permanent
from sparkle_motion_dagster.media.ffmpeg import FfmpegError, FrameEncoder, run_ffmpeg
from sparkle_motion_dagster.orchestration.status import film_status
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.lifecycle.events import read_events
from sparkle_motion_dagster.store.locations import DAGSTER_YAML, upgrade_dagster_yaml
from sparkle_motion_dagster.store.storage import TEMP_MARKER, ArtifactStore
from sparkle_motion_dagster.stages import stage_of_step

CLI = [sys.executable, "-m", "sparkle_motion_dagster.cli.main"]
SHOTS = 8


def environment(state: Path) -> dict:
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state)}
    env.pop("ARTIFACTS_FS_ROOT", None)
    env.pop("DAGSTER_HOME", None)
    return env


def cli(state: Path, *args, wait=True):
    command = [*CLI, *map(str, args)]
    if not wait:
        return subprocess.Popen(command, env=environment(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, env=environment(state), capture_output=True, text=True)


def poll(predicate, what):
    """Wait for ``predicate`` in small steps (bounded by attempts, not by a clock)."""
    return wait_for(predicate, what, attempts=5000, interval=0.01)


def harbour_plan(folder: Path, *, title="Harbour", model_id="animatic", shots=SHOTS, size=(640, 360)) -> Path:
    """Eight four-second shots at 640x360: the clips take a few seconds to render, time enough to
    interrupt them. Tests that only need a finished film ask for fewer shots and a smaller size."""
    count = shots
    frames = [{"id": f"frame_{i:03d}", "prompt": f"Keyframe {i}: a harbour at dusk, boat {i}",
               "metadata": {"seed": 100 + i}} for i in range(count + 1)]
    shots = [{"id": f"shot_{i + 1:03d}", "duration_sec": 4.0, "start_base_image_id": f"frame_{i:03d}",
              "end_base_image_id": f"frame_{i + 1:03d}", "motion_prompt": f"drift {i}"} for i in range(count)]
    plan = {"title": title, "characters": [{"id": "ava", "name": "Ava"}], "base_images": frames, "shots": shots,
            "dialogue_timeline": [{"type": "dialogue", "character_id": "ava", "text": "The boats are back.",
                                   "start_time_sec": 1.0, "duration_sec": 2.0}],
            "render_profile": {"video": {"model_id": model_id, "max_fps": 24, "width": size[0], "height": size[1]}}}
    path = folder / f"{title.lower().replace(' ', '_')}.json"
    path.write_text(json.dumps(plan))
    return path


class Terminal:
    """A command in a real pseudo-terminal, as a person runs it: Ctrl-C is the terminal's,
    sent to the command's whole process group (ffmpeg and Dagster's helpers included)."""

    def __init__(self, state: Path, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the command, with the terminal as its controlling tty
            os.execve(sys.executable, [*CLI, *map(str, args)], environment(state))
        self.output = b""
        self.status: int | None = None

    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def read_until(self, predicate=lambda: False) -> bool:
        """Read output until ``predicate()`` holds (True) or the command ends (False)."""
        while not predicate():
            ready, _, _ = select.select([self.fd], [], [], 0.01)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the command has ended and closed the terminal
                    data = b""
                if not data:
                    return False
                self.output += data
        return True

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def finish(self) -> int:
        self.read_until()
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status


def run_dir(state: Path, run_id: str) -> Path:
    return state / "artifacts" / "runs" / run_id


def run_id_in(output: str) -> str:
    return next(line.split(": ")[1].split()[0] for line in output.splitlines() if line.startswith("run_id: "))


def framemd5(path: Path) -> list[str]:
    out = run_ffmpeg(["-i", str(path), "-map", "0:v", "-f", "framemd5", "-"]).stdout.decode()
    return [line.split(",")[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def clip_frames(state: Path, run_id: str) -> dict[str, list[str]]:
    return {f"shot_{i + 1:03d}": framemd5(run_dir(state, run_id) / "video_clips" / f"shot_{i + 1:03d}.mp4")
            for i in range(SHOTS)}


def dagster_runs(state: Path, run_id: str, monkeypatch) -> list[dg.DagsterRun]:
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_runs(filters=dg.RunsFilter(tags={"sparkle/run_id": run_id})))


def step_events(state: Path, run_id: str, step: str, monkeypatch) -> list[dg.DagsterEventType]:
    """The kinds of the events of one stage's steps in the latest Dagster run of a film run."""
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        latest = instance.get_run_records(filters=dg.RunsFilter(tags={"sparkle/run_id": run_id}), limit=1)[0]
        return [e.dagster_event.event_type for e in instance.all_logs(latest.dagster_run.run_id)
                if e.dagster_event and stage_of_step(e.step_key) == step]


def status_of(state: Path, run_id: str) -> str:
    return json.loads(cli(state, "status", run_id, "--json").stdout)["status"]


def assert_stopped_cleanly(state: Path, run_id: str, terminal: Terminal, code: int, monkeypatch) -> None:
    """Exit status, one line with the resume command, no retry, no traceback, no temporary file,
    status ``stopped``, and no Dagster run left claiming to run."""
    output = terminal.text()
    assert terminal.status == code, output
    assert [line for line in output.splitlines() if f"sparkle-motion resume {run_id}" in line] == [
        f"stopped {run_id} ({signal.Signals(code - 128).name}) at video_clips; continue it with: "
        f"sparkle-motion resume {run_id}"], output
    assert "up for retry" not in output and "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert not list(run_dir(state, run_id).rglob(f"*{TEMP_MARKER}*"))
    assert status_of(state, run_id) == "stopped"
    assert {r.status for r in dagster_runs(state, run_id, monkeypatch)} == {dg.DagsterRunStatus.FAILURE}


def clips_rendering(state: Path, run_id_holder: list, terminal: Terminal):
    """True once the first clip of the film in ``terminal`` is finished (its sidecar written)."""
    def check() -> bool:
        if not run_id_holder and "run_id: " in terminal.text():
            run_id_holder.append(run_id_in(terminal.text()))
        return bool(run_id_holder) and (run_dir(state, run_id_holder[0]) / "video_clips" / ".meta"
                                        / "shot_001.mp4.json").exists()
    return check


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The harbour filmed without interruption: its state folder and run id."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    state = folder / "state"
    reference = cli(state, "run", "--plan", harbour_plan(folder))
    assert reference.returncode == 0, reference.stderr
    return state, run_id_in(reference.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_film_cleanly_and_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                                          how, uninterrupted):
    state = tmp_path / "state"
    plan = harbour_plan(tmp_path)

    terminal, run_ids = Terminal(state, "run", "--plan", plan), []
    assert terminal.read_until(clips_rendering(state, run_ids, terminal)), terminal.text()
    if how == "ctrl-c":
        terminal.ctrl_c()
    else:
        os.kill(terminal.pid, signal.SIGTERM)
    terminal.finish()
    run_id = run_ids[0]
    meta = run_dir(state, run_id) / "video_clips" / ".meta"
    assert not (meta / f"shot_{SHOTS:03d}.mp4.json").exists(), "the signal came too late to test anything"
    assert_stopped_cleanly(state, run_id, terminal, 130 if how == "ctrl-c" else 143, monkeypatch)
    assert "stopping" in terminal.text()

    resumed = cli(state, "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert clip_frames(state, run_id) == clip_frames(*uninterrupted)
    assert framemd5(run_dir(state, run_id) / "finalize" / "video_final.mp4") == framemd5(
        run_dir(*uninterrupted) / "finalize" / "video_final.mp4")


@pytest.mark.slow
def test_ctrl_c_while_held_at_a_pause_stops_the_film(tmp_path, monkeypatch):
    state = tmp_path / "state"
    terminal, run_ids = Terminal(state, "run", "--plan", harbour_plan(tmp_path)), []
    assert terminal.read_until(clips_rendering(state, run_ids, terminal)), terminal.text()
    run_id = run_ids[0]
    paused = cli(state, "control", "pause", run_id)
    assert paused.returncode == 0, paused.stderr
    store = ArtifactStore(state / "artifacts")
    assert terminal.read_until(lambda: "is paused: holding before video_raw_concat" in terminal.text())
    assert control.read_hold(store, run_id)["stage"] == "video_raw_concat"
    terminal.ctrl_c()
    terminal.finish()
    output = terminal.text()
    assert terminal.status == 130, output
    assert f"stopped {run_id} (SIGINT) at video_raw_concat; continue it with: sparkle-motion resume {run_id}" in output
    assert "up for retry" not in output and "Traceback" not in output
    assert status_of(state, run_id) == "stopped" and control.read_hold(store, run_id) is None
    assert cli(state, "resume", run_id).returncode == 0


@pytest.mark.slow
def test_a_second_ctrl_c_quits_at_once_and_resume_completes(tmp_path, monkeypatch):
    state = tmp_path / "state"
    terminal, run_ids = Terminal(state, "run", "--plan", harbour_plan(tmp_path)), []
    assert terminal.read_until(clips_rendering(state, run_ids, terminal)), terminal.text()
    terminal.ctrl_c()
    assert terminal.read_until(lambda: "Ctrl-C again to quit at once" in terminal.text())
    terminal.ctrl_c()
    assert terminal.finish() == 130, terminal.text()
    output = terminal.text()
    assert "quitting now" in output and "Traceback" not in output
    run_id = run_ids[0]
    resumed = cli(state, "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(run_dir(state, run_id).rglob(f"*{TEMP_MARKER}*"))
    assert {r.status for r in dagster_runs(state, run_id, monkeypatch)} <= {dg.DagsterRunStatus.FAILURE,
                                                                            dg.DagsterRunStatus.SUCCESS}


# --- pause ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pause_of_a_run_that_is_not_running_says_so_and_changes_nothing(tmp_path):
    state = tmp_path / "state"
    plan = harbour_plan(tmp_path, shots=2, size=(160, 90))
    submitted = cli(state, "submit", "--plan", plan).stdout.split()[1]
    store = ArtifactStore(state / "artifacts")
    for action in ("pause", "stop"):
        refused = cli(state, "control", action, submitted)
        assert refused.returncode == 2 and f"{submitted} is not running" in refused.stderr, refused.stderr
        assert not control.state_path(store, submitted).exists()

    finished = run_id_in(cli(state, "run", "--plan", plan).stdout)
    assert cli(state, "control", "pause", finished).returncode == 2
    assert control.read_state(store, finished)["state"] == "running"
    rerun = cli(state, "rerun", finished, "--from", "video_final")  # held at no gate
    assert rerun.returncode == 0, rerun.stderr


@pytest.mark.slow
def test_a_run_starting_at_a_closed_gate_says_it_is_paused_and_reports_time_held_as_held(tmp_path, monkeypatch):
    state = tmp_path / "state"
    run_id = cli(state, "submit", "--plan", harbour_plan(tmp_path)).stdout.split()[1]
    store = ArtifactStore(state / "artifacts")
    control.set_state(store, run_id, "paused")  # as a process killed while it was held leaves it
    proc = cli(state, "run", "--run-id", run_id, wait=False)
    poll(lambda: control.read_hold(store, run_id) is not None, "the run to hold at its gate")
    assert control.read_hold(store, run_id)["stage"] == "movie_plan"
    time.sleep(2.0)  # hold long enough that held time would show in the stage's time
    resumed = cli(state, "control", "resume", run_id)
    assert resumed.returncode == 0 and resumed.stdout.strip() == f"{run_id} resumed", resumed
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert f"{run_id} is paused: holding before movie_plan since " in err
    assert f"; continue it with `sparkle-motion control resume {run_id}`" in err
    assert f"{run_id} resumed after" in err and "held before movie_plan" in err
    intake_line = next(line for line in out.splitlines() if line.strip().startswith("movie_plan"))
    assert 0 < float(intake_line.split()[2]) < 1.5, intake_line  # its own time: the hold was before it

    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        # The paused film's first Dagster run ended at the gate; the second filmed it once resumed.
        held_run, filmed = sorted(instance.get_run_records(filters=dg.RunsFilter(tags={"sparkle/run_id": run_id})),
                                  key=lambda r: r.create_timestamp)
        assert held_run.dagster_run.status == dg.DagsterRunStatus.FAILURE
        assert filmed.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        messages = [e.user_message for e in instance.all_logs(held_run.dagster_run.run_id)
                    if e.step_key == "movie_plan"]
        assert any("is paused: holding before movie_plan" in m for m in messages)
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("movie_plan"), asset_partitions=[run_id]), limit=1).records[0]
        assert record.asset_materialization.metadata["held_seconds"].value >= 2.0
        # status reports the hold apart from the stage's own time too
        intake = film_status(instance, store, run_id)["stages"][0]
        assert intake["held_s"] >= 2.0 and 0 < intake["duration_s"] < 1.5, intake


@pytest.mark.slow
def test_control_answers_without_loading_dagster(tmp_path):
    state = tmp_path / "state"
    run_id = cli(state, "submit", "--plan", harbour_plan(tmp_path)).stdout.split()[1]
    command = [sys.executable, "-X", "importtime", *CLI[1:], "control", "pause", run_id]
    traced = subprocess.run(command, env=environment(state), capture_output=True, text=True)
    imported = {line.split("|")[-1].strip() for line in traced.stderr.splitlines() if line.startswith("import time:")}
    assert "sparkle_motion_dagster.lifecycle.control" in imported
    assert not {name for name in imported if name == "dagster" or name.startswith("dagster.")}
    assert traced.returncode == 2 and "is not running" in traced.stderr


# --- slots ----------------------------------------------------------------------------------------


def test_the_dagster_yaml_frees_the_slots_of_ended_runs(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:  # Dagster's own schema accepts it
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert instance.run_monitoring_enabled


def test_an_older_dagster_yaml_gains_the_setting_and_keeps_its_edits(tmp_path):
    old = tmp_path / "dagster.yaml"
    old.write_text("# mine\ntelemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 2  # two GPUs\n")
    before = old.read_text()
    assert upgrade_dagster_yaml(old)
    assert old.read_text().startswith(before) and "free_slots_after_run_end_seconds: 30" in old.read_text()
    assert not upgrade_dagster_yaml(old)  # once only

    own = tmp_path / "own.yaml"
    own.write_text("run_monitoring:\n  enabled: false\n")
    assert not upgrade_dagster_yaml(own) and own.read_text() == "run_monitoring:\n  enabled: false\n"


@pytest.mark.slow
def test_a_film_killed_in_a_gpu_stage_does_not_hold_its_slot_against_another_film(tmp_path, monkeypatch):
    state = tmp_path / "state"
    cli(state, "paths")  # one Dagster home for both films
    first = cli(state, "submit", "--plan", harbour_plan(tmp_path)).stdout.split()[1]
    killed = cli(state, "run", "--run-id", first, wait=False)
    poll(lambda: (run_dir(state, first) / "video_clips" / ".meta" / "shot_001.mp4.json").exists(),
         "the first film to be rendering clips (in the gpu pool)")
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        (dead,) = instance.get_runs(filters=dg.RunsFilter(tags={"sparkle/run_id": first}))
        assert dead.status == dg.DagsterRunStatus.STARTED
        assert dead.run_id in instance.event_log_storage.get_concurrency_run_ids()  # it holds the gpu slot

    # Another film (not a resume of the dead one) in the same Dagster home.
    other = cli(state, "run", "--plan", harbour_plan(tmp_path, title="Harbour at night", shots=2, size=(160, 90)))
    assert other.returncode == 0, other.stderr
    assert (run_dir(state, run_id_in(other.stdout)) / "finalize" / "video_final.mp4").exists()
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert dead.run_id not in instance.event_log_storage.get_concurrency_run_ids()


# --- the model check ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_dry_run_then_resume_does_not_film_an_unconfigured_model(tmp_path, monkeypatch):
    state = tmp_path / "state"
    plan = harbour_plan(tmp_path, model_id="wan-2.1")
    dry = cli(state, "run", "--mode", "dry", "--plan", plan)
    assert dry.returncode == 0, dry.stderr
    run_id = run_id_in(dry.stdout)
    resumed = cli(state, "resume", run_id)
    assert resumed.returncode == 1
    assert "video_clips failed" in resumed.stderr and "VIDEOS_WAN_MODEL" in resumed.stderr, resumed.stderr
    assert not list((run_dir(state, run_id) / "video_clips").glob("*.mp4"))
    kinds = step_events(state, run_id, "video_clips", monkeypatch)
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds and dg.DagsterEventType.STEP_FAILURE in kinds

    # The UI materializing video_clips alone for the partition meets the same check.
    from sparkle_motion_dagster.definitions import defs

    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(state / "artifacts"))
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([*defs.assets], selection="video_clips", instance=instance, partition_key=run_id,
                                resources=defs.resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "VIDEOS_WAN_MODEL" in failure.step_failure_data.error.message


@pytest.mark.slow
def test_a_previewed_dry_run_then_resume_records_the_substitution(tmp_path):
    state = tmp_path / "state"
    plan = harbour_plan(tmp_path, model_id="wan-2.1", shots=2, size=(160, 90))
    run_id = run_id_in(cli(state, "run", "--mode", "dry", "--preview", "--plan", plan).stdout)
    resumed = cli(state, "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((run_dir(state, run_id) / "video_clips" / "motion_manifest.json").read_text())
    assert manifest["video"]["substituted"] is True and manifest["video"]["declared_model_id"] == "wan-2.1"
    events = read_events(state / "artifacts", run_id, "backend.substitution")
    assert [e["payload"]["declared_model_id"] for e in events] == ["wan-2.1"]


# --- errors, classified once ----------------------------------------------------------------------


def test_permanent_and_transient_errors():
    with pytest.raises(ValueError) as bad_seed:
        np.random.default_rng(-1)
    assert is_permanent(bad_seed.value)
    refused = FfmpegError("ffmpeg failed (234): Stream map '' matches no streams.\nInvalid argument")
    assert is_permanent(refused)
    assert not is_permanent(FfmpegError("ffmpeg failed (-9): "))  # killed: try again
    assert not is_permanent(FfmpegError("ffmpeg failed (1): av_interleaved_write_frame(): No space left on device"))
    assert not is_permanent(FfmpegError("ffmpeg encode of shot_001.mp4 stopped (exit status 1; ...)"))
    assert not is_permanent(OSError("Input/output error"))
    assert not is_permanent(json.JSONDecodeError("cut short", "{", 1))
    # Out of GPU memory is never retried as it is: the adapters step down a placement themselves.
    assert is_permanent(RuntimeError("CUDA out of memory"))


@pytest.mark.slow
def test_a_deterministic_ffmpeg_refusal_fails_after_one_attempt(tmp_path, monkeypatch):
    state = tmp_path / "state"
    run_id = run_id_in(cli(state, "run", "--plan", harbour_plan(tmp_path, shots=2, size=(160, 90))).stdout)
    clip = run_dir(state, run_id) / "video_clips" / "shot_001.mp4"
    with FrameEncoder(clip, width=160, height=90, fps=24):
        pass  # a clip with no frames: ffmpeg's concat refuses it
    # Recorded as what the clip model made (a clip damaged afterwards would be rendered again).
    from sparkle_motion_dagster.store import integrity

    sidecar = integrity.sidecar_path(clip)
    integrity.atomic_write_json(sidecar, {**json.loads(sidecar.read_text()),
                                          integrity.FILE_KEY: integrity.file_record(clip)})
    rerun = cli(state, "rerun", run_id, "--from", "video_raw_concat")
    assert rerun.returncode == 1 and "matches no streams" in rerun.stderr, rerun.stderr
    assert "up for retry" not in rerun.stdout + rerun.stderr
    kinds = step_events(state, run_id, "video_raw_concat", monkeypatch)
    assert kinds.count(dg.DagsterEventType.STEP_START) == 1
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds and dg.DagsterEventType.STEP_FAILURE in kinds
