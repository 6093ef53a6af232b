"""Resume, regenerate, rerun, pause/stop, retries and crash safety, driven as a user would."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from helpers import wait_for

from sparkle_motion_dagster.media.ffmpeg import run_ffmpeg
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.lifecycle.events import read_events
from sparkle_motion_dagster.store.storage import TEMP_MARKER, ArtifactStore, sha256_file

pytestmark = pytest.mark.slow


def cli(state: Path, *args, wait=True):
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state)}
    env.pop("ARTIFACTS_FS_ROOT", None)
    env.pop("DAGSTER_HOME", None)
    command = [sys.executable, "-m", "sparkle_motion_dagster.cli.main", *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True)


def run_id_of(output: str) -> str:
    return next(line.split(": ")[1].split()[0] for line in output.splitlines() if line.startswith("run_id: "))


def poll(predicate, what):
    """Wait for ``predicate`` in small steps (bounded by attempts, not by a clock)."""
    return wait_for(predicate, what, attempts=2000, interval=0.01)


def framemd5(path: Path) -> list[str]:
    out = run_ffmpeg(["-i", str(path), "-map", "0:v", "-f", "framemd5", "-"]).stdout.decode()
    return [line.split(",")[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


SMALL = (160, 90)


def four_shot_plan(tmp_path: Path, size: tuple[int, int] | None = None) -> Path:
    """Four three-second shots at the default 1280x720 (clips slow enough to act on while they
    render), or at ``size`` for tests that only need the films made."""
    frames = [{"id": f"frame_{i:03d}", "prompt": f"Keyframe {i}: a harbour at dusk, boat {i}",
               "metadata": {"seed": 100 + i}} for i in range(5)]
    shots = [{"id": f"shot_{i + 1:03d}", "duration_sec": 3.0, "start_base_image_id": f"frame_{i:03d}",
              "end_base_image_id": f"frame_{i + 1:03d}", "motion_prompt": f"drift {i}"} for i in range(4)]
    plan = {
        "title": "Harbour", "characters": [{"id": "ava", "name": "Ava"}],
        "base_images": frames, "shots": shots,
        "dialogue_timeline": [{"type": "dialogue", "character_id": "ava", "text": "The boats are back.",
                               "start_time_sec": 1.0, "duration_sec": 2.0}],
        "render_profile": {"video": {"model_id": "animatic", "max_fps": 24}},
    }
    if size:
        plan["render_profile"]["video"].update(width=size[0], height=size[1])
    path = tmp_path / "harbour.json"
    path.write_text(json.dumps(plan))
    return path


def test_kill_during_clips_then_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    state = tmp_path / "state"
    plan = four_shot_plan(tmp_path)
    reference = cli(state, "run", "--plan", str(plan))
    assert reference.returncode == 0, reference.stderr
    reference_final = Path(next(l.split(": ", 1)[1] for l in reference.stdout.splitlines() if l.startswith("video_final")))

    submitted = cli(state, "submit", "--plan", str(plan))
    run_id = submitted.stdout.split()[1]
    clips = state / "artifacts" / "runs" / run_id / "video_clips"
    proc = cli(state, "run", "--run-id", run_id, wait=False)
    poll(lambda: (clips / ".meta" / "shot_001.mp4.json").exists(), "the first clip")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    meta = clips / ".meta"
    assert not (meta / "shot_004.mp4.json").exists(), "the kill came too late to test anything"
    under_final_names = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in clips.glob("shot_*.mp4")
                         if TEMP_MARKER not in p.name}
    # Every file under a final name is whole: it decodes to its full frame count.
    for name in under_final_names:
        assert len(framemd5(clips / name)) == 72
    # A clip is finished once its sidecar is written; the kill can land between a clip's rename and its
    # sidecar, and such a clip is simply rendered again.
    finished_before = {name: identity for name, identity in under_final_names.items()
                       if (meta / f"{name}.json").exists()}
    unrecorded = under_final_names.keys() - finished_before.keys()
    # What a kill in the middle of writing a sidecar leaves in .meta/ (the killed process's pid in its name).
    stale_sidecar = meta / f"shot_004.mp4{TEMP_MARKER}{proc.pid}-0badc0.json"
    stale_sidecar.write_text("{")

    resumed = cli(state, "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "video_clips" in resumed.stdout and "movie_plan" not in resumed.stdout.split("resuming")[1].split("\n")[0]
    for name, identity in finished_before.items():  # finished clips were not rendered again
        assert ((clips / name).stat().st_ino, (clips / name).stat().st_mtime_ns) == identity
    for name in unrecorded:
        assert ((clips / name).stat().st_ino, (clips / name).stat().st_mtime_ns) != under_final_names[name]
    assert not list(clips.glob(f"*{TEMP_MARKER}*"))
    final = state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4"
    assert framemd5(final) == framemd5(reference_final)

    # The killed Dagster run no longer claims to be running.
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"sparkle/run_id": run_id}))
        assert {r.status for r in runs} <= {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}

    # The stage clears a killed writer's temporaries among the sidecars in .meta/ too (the planted one
    # above, or one a kill in the middle of a sidecar write really left).
    assert not list(meta.glob(f"*{TEMP_MARKER}*")), "stale temporary files left in video_clips/.meta/"


def test_regenerate_one_shot_keeps_every_other_file(tmp_path):
    state = tmp_path / "state"
    first = cli(state, "run", "--plan", str(four_shot_plan(tmp_path, size=SMALL)))
    run_id = run_id_of(first.stdout)
    run = state / "artifacts" / "runs" / run_id
    before = {p: sha256_file(p) for p in run.rglob("*") if p.suffix in {".png", ".wav", ".mp4"}}
    for attempt in (1, 2):
        result = cli(state, "regenerate", run_id, "--shot", "shot_002")
        assert result.returncode == 0, result.stderr
        assert f"regenerations: {attempt}" in result.stdout
    changed = {p.relative_to(run).as_posix() for p, digest in before.items() if sha256_file(p) != digest}
    assert changed == {"video_clips/shot_002.mp4", "assembly/video_raw_concat.mp4", "finalize/video_final.mp4"}
    events = read_events(state / "artifacts", run_id, "regeneration")
    assert [e["payload"]["count"] for e in events] == [1, 2]
    # 101, then the next seed no other clip uses, twice: 102 and 103 are shot_003's and shot_004's.
    assert events[-1]["payload"]["seeds"] == {"shot_002": 105}

    bad = cli(state, "regenerate", run_id, "--shot", "shot_999")
    assert bad.returncode == 2 and "shot_001, shot_002" in bad.stderr


def test_rerun_from_a_stage_and_resume_when_complete(tmp_path):
    state = tmp_path / "state"
    run_id = run_id_of(cli(state, "run", "--plan", str(four_shot_plan(tmp_path, size=SMALL))).stdout)
    rerun = cli(state, "rerun", run_id, "--from", "video_raw_concat")
    assert rerun.returncode == 0, rerun.stderr
    stages = [line.split()[0] for line in rerun.stdout.splitlines() if line.startswith("  ")]
    assert stages == ["video_raw_concat", "video_final"]
    done = cli(state, "resume", run_id)
    assert done.returncode == 0 and "nothing to do" in done.stdout
    unknown = cli(state, "rerun", run_id, "--from", "lipsync_magic")
    assert unknown.returncode == 2 and "unknown stage" in unknown.stderr


def filming_process(state: Path, run_id: str):
    """`run --run-id` in the background, once it has marked itself as filming the run (so `control` acts on it)."""
    proc = cli(state, "run", "--run-id", run_id, wait=False)
    active = state / "artifacts" / "runs" / run_id / "control" / "active"
    poll(lambda: any(active.glob("*.json")), "the run to start")
    return proc


def test_pause_holds_then_resume_continues_and_stop_ends(tmp_path):
    state = tmp_path / "state"
    plan = four_shot_plan(tmp_path)
    run_id = cli(state, "submit", "--plan", str(plan)).stdout.split()[1]
    store = ArtifactStore(state / "artifacts")
    proc = filming_process(state, run_id)
    assert cli(state, "control", "pause", run_id).returncode == 0
    poll(lambda: control.read_hold(store, run_id), "the run to hold at its gate")
    held_before = control.read_hold(store, run_id)["stage"]
    # Its Dagster run ends at the gate; the command waits, holding no slot.
    poll(lambda: film_status_of(state, run_id) == "held", "the film to read held")
    assert proc.poll() is None and control.read_hold(store, run_id)["stage"] == held_before
    # `status` says the stage holds (not running, not pending), since when, and that it has no time of its own.
    while_held = stage_line(cli(state, "status", run_id).stdout, held_before)
    assert while_held[2:4] == ["held", "-"] and while_held[5] == "since", while_held
    assert cli(state, "control", "resume", run_id).returncode == 0
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert f"is paused: holding before {held_before}" in err
    assert (state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4").exists()

    second = cli(state, "submit", "--plan", str(plan)).stdout.split()[1]
    proc = filming_process(state, second)
    cli(state, "control", "pause", second)
    poll(lambda: control.read_hold(store, second), "the run to hold")
    assert cli(state, "control", "stop", second).returncode == 0
    out, err = proc.communicate()
    assert proc.returncode == 1 and "stopped" in err
    refused = cli(state, "control", "resume", second)
    assert refused.returncode == 2 and "sparkle-motion resume" in refused.stderr
    finished = cli(state, "resume", second)
    assert finished.returncode == 0, finished.stderr
    assert (state / "artifacts" / "runs" / second / "finalize" / "video_final.mp4").exists()


def stage_line(status_output: str, asset: str) -> list[str]:
    """The words of a stage's row in `sparkle-motion status` (STAGE ASSET STATUS STARTED DURATION HELD FILES)."""
    return next(line.split() for line in status_output.splitlines() if line.split()[1:2] == [asset])


def film_status_of(state: Path, run_id: str) -> str:
    from sparkle_motion_dagster.orchestration.status import film_status

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(state / "dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            return film_status(instance, ArtifactStore(state / "artifacts"), run_id, log_lines=0,
                               artifacts=False)["status"]
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous


def test_two_runs_at_once_each_get_their_own_files(tmp_path):
    state = tmp_path / "state"
    cli(state, "paths")  # create the Dagster home once, as `make ui` does
    plan = four_shot_plan(tmp_path, size=SMALL)
    other = json.loads(plan.read_text())
    other["title"] = "Harbour at night"
    other["base_images"][0]["prompt"] = "A different first keyframe"
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    procs = [cli(state, "run", "--plan", str(p), wait=False) for p in (plan, other_path)]
    outputs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    run_ids = [run_id_of(out) for out, _ in outputs]
    assert len(set(run_ids)) == 2
    titles = [json.loads((state / "artifacts" / "runs" / r / "plan_intake" / "movie_plan.json").read_text())["title"]
              for r in run_ids]
    assert titles == ["Harbour", "Harbour at night"]
    frames = [sha256_file(state / "artifacts" / "runs" / r / "base_images" / "frame_000.png") for r in run_ids]
    assert frames[0] != frames[1]


def test_dry_run_reports_warnings_and_renders_nothing(tmp_path, sample_plan):
    state = tmp_path / "state"
    sample_plan["base_images"][2]["prompt"] = sample_plan["base_images"][1]["prompt"]
    sample_plan["dialogue_timeline"][0]["text"] = "word " * 80
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(sample_plan))
    result = cli(state, "run", "--mode", "dry", "--plan", str(plan))
    assert result.returncode == 0, result.stderr
    assert "identical; the clip will be static" in result.stdout
    assert "spoken in chunks" in result.stdout
    assert "wan-2.1" in result.stdout  # the unconfigured model is a warning in a dry run
    run = state / "artifacts" / "runs" / run_id_of(result.stdout)
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["events", "plan_intake", "request"] \
        or sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["plan_intake", "request"]
    report = json.loads((run / "plan_intake" / "plan_validation.json").read_text())
    assert report["mode"] == "dry"
    assert [w["kind"] for w in report["warnings"]] == ["video_model", "identical_keyframes", "line_too_long", "overrun"]
    assert [w["field"] for w in report["warnings"]] == ["render_profile.video.model_id", "shots[1]",
                                                      "dialogue_timeline[0].text", "dialogue_timeline[0]"]
    assert all(w["message"] in result.stdout for w in report["warnings"])
