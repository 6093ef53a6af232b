"""No film outlives its process, and a paused film holds no GPU: a dead run is marked failed and
its slot freed (a SIGKILLed `dagster dev` included), a paused film ends its Dagster run at the
stage boundary so another film's GPU stages go on, and a waiting command says what it waits for
and ends on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from helpers import dagster_dev, wait_for
from test_run_life import cli, environment, harbour_plan, poll, run_dir, run_id_in

from sparkle_motion_dagster.orchestration import liveness
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.store.storage import ArtifactStore, sha256_file
from sparkle_motion_dagster.stages import STAGES

FIRST_GPU_STAGE = next(row.key for row in STAGES if row.gpu)

BIN = Path(sys.executable).parent


def instance_of(state: Path, monkeypatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    return dg.DagsterInstance.get()


def rendered(state: Path, run_id: str) -> dict[str, str]:
    """The sha256 of every keyframe, clip and the final video of a film."""
    folder = run_dir(state, run_id)
    files = [*sorted((folder / "base_images").glob("*.png")), *sorted((folder / "video_clips").glob("shot_*.mp4")),
             folder / "finalize" / "video_final.mp4"]
    return {str(path.relative_to(folder)): sha256_file(path) for path in files}


def gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- the one module that reaches past Dagster's documented surface ---------------------------------


def test_a_dead_run_is_failed_and_its_slot_freed_and_a_live_one_is_left(tmp_path, monkeypatch):
    """What liveness relies on: run tags, report_run_failed, and the event log storage's pool
    slots (claims, pending steps, freeing a run's). Fails loudly if Dagster changes them."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    from sparkle_motion_dagster.definitions import defs

    with dg.DagsterInstance.get() as instance:
        job = defs.resolve_job_def("film")
        runs = {}
        for name, pid in (("dead", gone_pid()), ("alive", os.getpid())):
            run = instance.create_run_for_job(job, tags={"dagster/partition": f"run_{name}"},
                                              status=dg.DagsterRunStatus.STARTED)
            instance.add_run_tags(run.run_id, {liveness.PID_TAG: str(pid), liveness.HOST_TAG: socket.gethostname(),
                                               liveness.TAGGED_RUN_TAG: run.run_id})
            runs[name] = run.run_id
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("gpu")  # as a step of the pool does first
        assert storage.claim_concurrency_slot("gpu", runs["dead"], "video_clips").is_claimed
        assert not storage.claim_concurrency_slot("gpu", runs["alive"], "base_images").is_claimed
        wait = liveness.slot_wait(instance, runs["alive"])
        assert wait is not None and wait.holders == (runs["dead"],) and wait.step == "base_images"
        assert "for a slot of the gpu pool (for base_images); held by film run_dead" in wait.message(instance)

        assert liveness.fail_dead_runs(instance) == [runs["dead"]]
        assert instance.get_run_by_id(runs["dead"]).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(runs["alive"]).status == dg.DagsterRunStatus.STARTED
        assert runs["dead"] not in storage.get_concurrency_run_ids()
        assert storage.claim_concurrency_slot("gpu", runs["alive"], "base_images").is_claimed
        assert liveness.slot_wait(instance, runs["alive"]) is None


def test_a_re_executed_run_is_not_judged_by_its_parents_pid(tmp_path, monkeypatch):
    """A run re-executed from the UI inherits its parent's tags; their pid is not its process."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    from sparkle_motion_dagster.definitions import defs

    with dg.DagsterInstance.ephemeral() as instance:
        parent_tags = {liveness.PID_TAG: str(gone_pid()), liveness.HOST_TAG: socket.gethostname(),
                       liveness.TAGGED_RUN_TAG: "the-parent-run"}
        child = instance.create_run_for_job(defs.resolve_job_def("film"), tags=parent_tags,
                                            status=dg.DagsterRunStatus.STARTED)
        assert not liveness.is_dead(child)
        assert liveness.fail_dead_runs(instance) == []


# --- pause frees the GPU ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_paused_film_holds_no_gpu_slot_so_another_film_finishes_and_it_resumes_to_the_same_files(
        tmp_path, monkeypatch):
    state = tmp_path / "state"
    plan = harbour_plan(tmp_path)
    reference = cli(state, "run", "--plan", plan)  # the gpu pool has one slot (the project's dagster.yaml)
    assert reference.returncode == 0, reference.stderr
    store = ArtifactStore(state / "artifacts")

    a_id = cli(state, "submit", "--plan", plan).stdout.split()[1]
    film_a = cli(state, "run", "--run-id", a_id, wait=False)
    poll(lambda: any((run_dir(state, a_id) / "base_images" / ".meta").glob("*.json")), "A's first keyframe")
    control.set_state(store, a_id, "paused", actor="test")  # while its keyframes render
    film_b = cli(state, "run", "--plan", harbour_plan(tmp_path, title="Harbour at night"), wait=False)

    poll(lambda: control.read_hold(store, a_id), "A to hold at a stage boundary")
    held_before = control.read_hold(store, a_id)["stage"]  # the stage after its keyframes: before its clips
    assert held_before in ("dialogue_audio", "video_clips"), held_before
    b_out, b_err = film_b.communicate()
    assert film_b.returncode == 0, b_err  # B filmed every GPU stage while A was paused
    b_id = run_id_in(b_out)
    assert (run_dir(state, b_id) / "finalize" / "video_final.mp4").exists()
    assert film_a.poll() is None and control.read_hold(store, a_id)["stage"] == held_before
    assert not list((run_dir(state, a_id) / "video_clips").glob("shot_*.mp4"))
    with instance_of(state, monkeypatch) as instance:
        a_runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": a_id}))
        assert [r.status for r in a_runs] == [dg.DagsterRunStatus.FAILURE]  # ended, holding nothing
        assert a_runs[0].run_id not in instance.event_log_storage.get_concurrency_run_ids()
    status = json.loads(cli(state, "status", a_id, "--json").stdout)
    assert status["status"] == "held" and f"held before {held_before}" in status["detail"], status
    assert {s["asset"]: s["status"] for s in status["stages"]}.get(held_before) == "held"
    assert "running" not in {s["status"] for s in status["stages"]}

    resumed = cli(state, "control", "resume", a_id)
    assert resumed.returncode == 0 and resumed.stdout.strip() == f"{a_id} resumed", resumed
    a_out, a_err = film_a.communicate()
    assert film_a.returncode == 0, a_err
    assert f"{a_id} is paused: holding before {held_before} since " in a_err
    assert f"{a_id} resumed after" in a_err
    assert rendered(state, a_id) == rendered(state, run_id_in(reference.stdout))


@pytest.mark.slow
def test_a_film_launched_from_the_ui_holds_then_control_resume_films_the_rest(tmp_path, monkeypatch):
    """Nothing waits for a UI film held at a pause: `control resume` films what is missing itself."""
    state = tmp_path / "state"
    store = ArtifactStore(state / "artifacts")
    a_id = cli(state, "submit", "--plan", harbour_plan(tmp_path)).stdout.split()[1]
    control.set_state(store, a_id, "paused", actor="test")
    # A run with no CLI behind it, as the daemon's run worker films one.
    worker = ("import dagster as dg\nfrom sparkle_motion_dagster.definitions import defs\n"
              "with dg.DagsterInstance.get() as instance:\n"
              f"    defs.resolve_job_def('film').execute_in_process(instance=instance, partition_key={a_id!r},"
              " raise_on_error=False)\n")
    env = {**environment(state), "DAGSTER_HOME": str(state / "dagster_home")}
    subprocess.run([sys.executable, "-c", worker], env=env, check=True, capture_output=True)
    assert control.read_hold(store, a_id)["stage"] == "movie_plan"
    assert json.loads(cli(state, "status", a_id, "--json").stdout)["status"] == "held"
    resumed = cli(state, "control", "resume", a_id)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[0] == f"{a_id} resumed; nothing is filming it, so the rest is filmed here"
    assert (run_dir(state, a_id) / "finalize" / "video_final.mp4").exists()


# --- a waiting command ends on SIGTERM -------------------------------------------------------------


@pytest.mark.slow
def test_resume_waiting_for_the_gpu_says_for_what_and_sigterm_ends_it(tmp_path, monkeypatch):
    state = tmp_path / "state"
    run_id = cli(state, "submit", "--plan", harbour_plan(tmp_path)).stdout.split()[1]
    with instance_of(state, monkeypatch) as instance:  # a live film (this process) holds the only gpu slot
        from sparkle_motion_dagster.definitions import defs

        holder = instance.create_run_for_job(defs.resolve_job_def("film"), tags={"dagster/partition": "run_holder"},
                                             status=dg.DagsterRunStatus.STARTED)
        instance.add_run_tags(holder.run_id, liveness.process_tags(holder.run_id))
        instance.event_log_storage.initialize_concurrency_limit_to_default("gpu")
        assert instance.event_log_storage.claim_concurrency_slot("gpu", holder.run_id, "video_clips").is_claimed

        waiting = subprocess.Popen([sys.executable, "-m", "sparkle_motion_dagster.cli.main", "resume", run_id],
                                   env=environment(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = waiting.stderr.readline()
        while "waiting since" not in line and line:
            line = waiting.stderr.readline()
        assert f"for a slot of the gpu pool (for {FIRST_GPU_STAGE}); held by film run_holder" in line, line
        waiting.send_signal(signal.SIGTERM)
        rest = waiting.stderr.read()
        assert waiting.wait() == 128 + signal.SIGTERM
        assert f"{run_id}: SIGTERM while waiting; nothing was rendering" in rest, rest
        assert f"quitting now; continue {run_id} with `sparkle-motion resume {run_id}`" in rest, rest
        (ended,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": run_id}))
        assert ended.status == dg.DagsterRunStatus.FAILURE
        assert ended.run_id not in instance.event_log_storage.get_concurrency_run_ids()


@pytest.mark.slow
def test_resume_while_another_process_films_the_run_waits_saying_so_and_sigterm_ends_it(tmp_path, monkeypatch):
    state = tmp_path / "state"
    run_id = cli(state, "submit", "--plan", harbour_plan(tmp_path)).stdout.split()[1]
    with instance_of(state, monkeypatch) as instance:  # this process films it, as far as Dagster knows
        from sparkle_motion_dagster.definitions import defs

        other = instance.create_run_for_job(defs.resolve_job_def("film"), tags={"dagster/partition": run_id},
                                            status=dg.DagsterRunStatus.STARTED)
        instance.add_run_tags(other.run_id, liveness.process_tags(other.run_id))
        waiting = subprocess.Popen([sys.executable, "-m", "sparkle_motion_dagster.cli.main", "resume", run_id],
                                   env=environment(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = waiting.stderr.readline()
        assert line.startswith(f"{run_id}: waiting since ") and line.rstrip().endswith(
            f"for film {run_id} (Dagster run {other.run_id[:8]}, pid {os.getpid()}), which films it now, to end"), line
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait() == 128 + signal.SIGTERM
        assert waiting.stderr.read().strip() == (f"{run_id}: SIGTERM: stopped waiting; nothing was started "
                                                 f"(continue later with `sparkle-motion resume {run_id}`)")
        assert [r.run_id for r in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": run_id}))] == [
            other.run_id]  # nothing was launched


# --- a killed `dagster dev` ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_film_whose_dagster_dev_was_killed_is_failed_on_restart_and_resume_finishes_it(tmp_path, monkeypatch):
    state = tmp_path / "state"
    env = {**environment(state), "DAGSTER_HOME": str(state / "dagster_home")}
    subprocess.run([str(BIN / "sparkle-motion"), "paths", "--create"], env=env, capture_output=True, check=True)
    run_id = cli(state, "submit", "--plan", harbour_plan(tmp_path)).stdout.split()[1]
    clips = run_dir(state, run_id) / "video_clips" / ".meta"

    with dagster_dev(env, tmp_path) as (client, _):
        dagster_run_id = wait_for(lambda: _try(lambda: client.submit_job_execution(
            "film", tags={"dagster/partition": run_id})), "the code location to load")
        wait_for(lambda: (clips / "shot_001.mp4.json").exists(), "the film to render clips (in the gpu pool)",
                 attempts=20000, interval=0.02)
        server = _dagster_dev_group(tmp_path)
        os.killpg(server, signal.SIGKILL)  # webserver, daemon, code server and run worker at once

    with instance_of(state, monkeypatch) as instance:
        run = instance.get_run_by_id(dagster_run_id)
        assert run.status == dg.DagsterRunStatus.STARTED and liveness.PID_TAG in run.tags
        assert dagster_run_id in instance.event_log_storage.get_concurrency_run_ids()  # it holds the gpu slot

    with dagster_dev(env, tmp_path):  # the daemon's dead_runs sensor looks as it starts
        with instance_of(state, monkeypatch) as instance:
            wait_for(lambda: instance.get_run_by_id(dagster_run_id).status == dg.DagsterRunStatus.FAILURE,
                     "the restarted daemon to mark the dead run failed")
            assert dagster_run_id not in instance.event_log_storage.get_concurrency_run_ids()
    resumed = cli(state, "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir(state, run_id) / "finalize" / "video_final.mp4").exists()
    assert json.loads(cli(state, "status", run_id, "--json").stdout)["status"] == "succeeded"


def _try(call):
    try:
        return call()
    except Exception:
        return None


def _dagster_dev_group(cwd: Path) -> int:
    """The process group of the `dagster dev` that `helpers.dagster_dev` started in ``cwd``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"dev" in cmdline and any(part.endswith(b"/dagster") for part in cmdline) \
                    and os.readlink(entry / "cwd") == str(cwd):
                return os.getpgid(int(entry.name))
        except OSError:
            continue
    raise AssertionError("no `dagster dev` process found")
