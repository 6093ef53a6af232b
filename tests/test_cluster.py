"""The same graph on a small cluster, for real: Redis, PostgreSQL, two GPU-queue workers and
one CPU-queue worker (`sparkle-motion worker`), and `dagster dev` (webserver and daemon) on
the same Postgres, all on loopback and shared by the tests of this module."""

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from cluster_services import Worker, missing_programs, postgres_server, redis_server, sparkle_motion
from film_checks import ffmpeg, frame_md5s, identity, small_plan
from helpers import dagster_dev, wait_for

from sparkle_motion_dagster.store.storage import TEMP_MARKER

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing_programs() is not None,
                                                   reason=f"cluster tests: {missing_programs()}")]
SIZE = (96, 64)
GPU_WORKERS = ("gpu0", "gpu1")


class Cluster:
    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self.state = root / "state"
        self.artifacts = self.state / "artifacts"
        self.workers: dict[str, Worker] = {}
        self.client = None

    def cli(self, *args, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sparkle_motion(), *map(str, args)], env=env or self.env, capture_output=True,
                                text=True)
        assert not check or result.returncode == 0, result.stdout + result.stderr
        return result

    def status(self, run_id: str) -> dict:
        return json.loads(self.cli("status", run_id, "--json").stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    with redis_server() as redis, postgres_server() as postgres:
        env = {**os.environ, "SPARKLE_STATE_DIR": str(root / "state"), "DAGSTER_HOME": str(root / "state/dagster_home"),
               "SPARKLE_EXECUTOR": "celery", "SPARKLE_CELERY_BROKER": f"{redis}/0",
               "SPARKLE_CELERY_BACKEND": f"{redis}/1", "SPARKLE_POSTGRES_URL": postgres,
               # a task whose worker was killed goes to another worker after 8 s (the default is an hour)
               "SPARKLE_CELERY_REDELIVER_S": "8", "SPARKLE_PLAN_INBOX": str(root / "inbox")}
        for name in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_INDEX"):
            env.pop(name, None)
        cluster = Cluster(root, env)
        cluster.cli("paths", "--create")
        assert "storage:\n  postgres:" in (cluster.state / "dagster_home" / "dagster.yaml").read_text()
        try:
            for name, queues in (("gpu0", "gpu"), ("gpu1", "gpu"), ("cpu", "cpu")):
                cluster.workers[name] = Worker(env, queues, name, root / f"{name}.log")
            with dagster_dev(env, root) as (client, _):  # starts while the workers do
                for worker in cluster.workers.values():
                    wait_for(lambda: worker.ready() or worker.process.poll() is not None, f"worker {worker.name}")
                    assert worker.ready(), worker.log.read_text()[-3000:]
                cluster.client = client
                yield cluster
        finally:
            for worker in cluster.workers.values():
                worker.stop()


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _gpu_steps(status: dict) -> list[dict]:
    return [step for stage in status["stages"] for step in stage["steps"] if step["worker"]
            and step["worker"].split("@")[0] in GPU_WORKERS]


def _assert_one_step_at_a_time(steps: list[dict]) -> None:
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for step in steps:
        by_worker.setdefault(step["worker"], []).append((_when(step["started_at"]), _when(step["ended_at"])))
    for worker, spans in by_worker.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"two GPU steps overlapped on {worker}: {spans}"


def _audio(path: Path) -> bytes:
    return subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-"],
                          capture_output=True, check=True).stdout


def test_a_film_through_celery_spreads_its_clips_over_both_gpu_workers_and_matches_in_process(cluster, tmp_path):
    plan = small_plan(tmp_path, shots=4, size=SIZE)
    filmed = cluster.cli("run", "--plan", plan)
    run_id = filmed.stdout.split()[1]
    final = cluster.artifacts / "runs" / run_id / "finalize" / "video_final.mp4"
    assert final.exists(), filmed.stdout + filmed.stderr

    doctor = json.loads(cluster.cli("doctor", "--json", check=False).stdout)["cluster"]
    assert doctor["executor"] == "celery" and doctor["broker"]["reachable"] and doctor["postgres"]["reachable"]
    assert sorted(name.split("@")[0] for name in doctor["workers"]) == ["cpu", "gpu0", "gpu1"]

    status = cluster.status(run_id)
    assert status["status"] == "succeeded"
    clips = next(stage for stage in status["stages"] if stage["asset"] == "video_clips")
    renders = [step for step in clips["steps"] if "video_clips_render[" in step["step"]]
    assert sorted(step["step"] for step in renders) == [f"video_clips.video_clips_render[shot_00{i}]"
                                                        for i in range(1, 5)]
    assert {step["worker"].split("@")[0] for step in renders} == set(GPU_WORKERS)
    assert {step["worker"].split("@")[0] for step in status["stages"][0]["steps"]} == {"cpu"}
    _assert_one_step_at_a_time(_gpu_steps(status))

    # The same plan in process, in a state of its own: the same frames and the same samples.
    alone = {k: v for k, v in cluster.env.items() if not k.startswith(("SPARKLE_CELERY", "SPARKLE_POSTGRES"))}
    alone.update(SPARKLE_EXECUTOR="in_process", SPARKLE_STATE_DIR=str(tmp_path / "alone"),
                 DAGSTER_HOME=str(tmp_path / "alone" / "dagster_home"))
    local = cluster.cli("run", "--plan", plan, env=alone)
    local_final = tmp_path / "alone" / "artifacts" / "runs" / local.stdout.split()[1] / "finalize" / "video_final.mp4"
    assert frame_md5s(final) == frame_md5s(local_final)
    assert _audio(final) == _audio(local_final)

    # Regenerating one shot on the cluster renders that shot's step alone, and the review gate stays out.
    clips = cluster.artifacts / "runs" / run_id / "video_clips"
    before = {path.name: identity(path) for path in clips.glob("shot_*.mp4")}
    cluster.cli("regenerate", run_id, "--shot", "shot_002", "--seed", "7")
    after = {path.name: identity(path) for path in clips.glob("shot_*.mp4")}
    assert [name for name in before if before[name] != after[name]] == ["shot_002.mp4"]


def test_films_launched_from_the_ui_and_the_drop_folder_at_once_all_finish(cluster, tmp_path):
    """Two films through the webserver's GraphQL API and one dropped into the inbox (the daemon's
    sensor), at once, on Postgres: each finishes with its own files, one GPU step per worker at a time."""
    run_ids = []
    for title in ("Harbour one", "Harbour two"):
        plan = small_plan(tmp_path, shots=2, size=SIZE, name=f"{title}.json", title=title)
        run_ids.append(cluster.cli("submit", "--plan", plan).stdout.split()[1])
    launched = [cluster.client.submit_job_execution("film", tags={"dagster/partition": run_id}) for run_id in run_ids]
    inbox = cluster.root / "inbox"
    inbox.mkdir(exist_ok=True)
    dropped = json.loads(small_plan(tmp_path, shots=2, size=SIZE, name="dropped.json", title="Dropped").read_text())
    (inbox / "dropped.json.part").write_text(json.dumps(dropped))
    (inbox / "dropped.json.part").rename(inbox / "dropped.json")

    for dagster_run_id in launched:
        outcome = wait_for(lambda: (s := cluster.client.get_run_status(dagster_run_id).value)
                           in ("SUCCESS", "FAILURE", "CANCELED") and s, "a film launched from the UI")
        assert outcome == "SUCCESS"
    accepted = wait_for(lambda: next(iter((inbox / "accepted").glob("run_*.json")), None), "the sensor to accept it")
    run_ids.append(accepted.stem)
    wait_for(lambda: cluster.status(accepted.stem)["status"] in ("succeeded", "failed"), "the dropped film")

    steps = []
    for run_id in run_ids:
        status = cluster.status(run_id)
        assert status["status"] == "succeeded", status["detail"]
        clips = cluster.artifacts / "runs" / run_id / "video_clips"
        manifest = json.loads((clips / "motion_manifest.json").read_text())
        assert manifest["run_id"] == run_id and len(manifest["clip_assets"]) == 2
        assert all(f"/runs/{run_id}/" in clip["asset_path"] for clip in manifest["clip_assets"])
        steps += _gpu_steps(status)
    assert {step["worker"].split("@")[0] for step in steps} == set(GPU_WORKERS)
    _assert_one_step_at_a_time(steps)


def test_a_gpu_worker_killed_mid_clips_leaves_the_film_to_the_other(cluster, tmp_path):
    """kill -9 a GPU worker (its pool too) while it holds a clip step: the task goes back to the
    queue, the other worker runs it, the film completes; finished clips are not rendered again
    and no temporary file is left. The step is caught mid-clips by the temporary file of the clip
    it is writing (named with its writer's pid)."""
    plan = small_plan(tmp_path, shots=4, size=SIZE)
    run_id = cluster.cli("submit", "--plan", plan).stdout.split()[1]
    clips = cluster.artifacts / "runs" / run_id / "video_clips"
    film = subprocess.Popen([sparkle_motion(), "run", "--run-id", run_id], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    def writing_worker():
        """A GPU worker writing a clip now (one has finished before it), and the finished clips."""
        finished = {path.name: identity(path) for path in clips.glob("shot_*.mp4") if TEMP_MARKER not in path.name}
        for temp in clips.glob(f"shot_*{TEMP_MARKER}*"):
            pid = temp.name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
            try:
                group = os.getpgid(int(pid))
            except (ValueError, ProcessLookupError):
                continue
            worker = next((w for w in cluster.workers.values() if w.process.pid == group), None)
            if finished and worker is not None and worker.name in GPU_WORKERS:
                return worker, finished
        return None

    try:
        victim, finished = wait_for(writing_worker, "a GPU worker writing a clip after the first",
                                    interval=0.005, attempts=200000)
        victim.kill()
        output, _ = film.communicate(timeout=600)
    finally:
        if film.poll() is None:
            film.kill()
    assert film.returncode == 0, output
    assert (cluster.artifacts / "runs" / run_id / "finalize" / "video_final.mp4").exists()
    assert {path.name: identity(path) for path in clips.glob("shot_*.mp4") if path.name in finished} == finished
    assert len(list(clips.glob("shot_*.mp4"))) == 4
    assert not [p for p in (cluster.artifacts / "runs" / run_id).rglob(f"*{TEMP_MARKER}*")]
    status = cluster.status(run_id)
    clips_stage = next(stage for stage in status["stages"] if stage["asset"] == "video_clips")
    renders = [s for s in clips_stage["steps"] if "video_clips_render[" in s["step"]]
    survivor = next(name for name in GPU_WORKERS if name != victim.name)
    assert {s["worker"].split("@")[0] for s in renders if s["outcome"] == "succeeded"} >= {survivor}
