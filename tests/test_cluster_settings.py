"""The cluster's settings, the executor choice, the Postgres dagster.yaml and the worker's start check
(fast: no broker, no database)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from film_checks import sparkle

from sparkle_motion_dagster.cluster.executors import celery_executor_config, film_executor
from sparkle_motion_dagster.cluster.identity import (
    MARKER,
    ClusterMismatchError,
    check_step_view,
    check_worker_view,
    ensure_marker,
)
from sparkle_motion_dagster.cluster.settings import ClusterSettings, redact
from sparkle_motion_dagster.cluster.worker import parse_queues, worker_argv
from sparkle_motion_dagster.resources.settings import SettingsError
from sparkle_motion_dagster.store.locations import ensure_dagster_home, upgrade_dagster_yaml

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql+psycopg2://films:secret@db.studio:5432/dagster"


def test_in_process_is_the_default_and_bad_values_name_their_variable():
    assert ClusterSettings.from_env({}).executor == "in_process"
    assert film_executor(ClusterSettings.from_env({})) is dg.in_process_executor
    assert film_executor(ClusterSettings.from_env({"SPARKLE_EXECUTOR": "multiprocess"})) is dg.multiprocess_executor
    with pytest.raises(SettingsError, match=r"SPARKLE_EXECUTOR .* = 'celry': expected 'in_process', 'multiprocess'"):
        ClusterSettings.from_env({"SPARKLE_EXECUTOR": "celry"})
    with pytest.raises(SettingsError, match=r"SPARKLE_CELERY_BROKER .*must be set when SPARKLE_EXECUTOR=celery"):
        ClusterSettings.from_env({"SPARKLE_EXECUTOR": "celery"})
    with pytest.raises(SettingsError, match=r"SPARKLE_POSTGRES_URL .*postgresql\+psycopg2://"):
        ClusterSettings.from_env({"SPARKLE_POSTGRES_URL": "postgresql://films@db/dagster"})
    with pytest.raises(SettingsError, match=r"SPARKLE_SHOTS_PER_STEP .* must be at least 1"):
        ClusterSettings.from_env({"SPARKLE_SHOTS_PER_STEP": "0"})
    assert redact(PG) == "postgresql+psycopg2://films:***@db.studio:5432/dagster"


def test_the_celery_executor_gets_the_broker_and_hands_dead_workers_tasks_back():
    settings = ClusterSettings.from_env({"SPARKLE_EXECUTOR": "celery", "SPARKLE_CELERY_BROKER": "redis://b:6379/0",
                                         "SPARKLE_CELERY_REDELIVER_S": "600"})
    assert film_executor(settings).name == "celery"
    config = celery_executor_config(settings)
    assert config["broker"] == config["backend"] == "redis://b:6379/0"
    source = config["config_source"]
    assert source["task_acks_late"] and source["task_reject_on_worker_lost"]
    assert source["worker_prefetch_multiplier"] == 1
    assert source["task_default_queue"] == "cpu"  # new_film and the review gate have no queue tag
    assert source["broker_transport_options"]["visibility_timeout"] == 600


def _job_shape(env: dict) -> dict:
    """Step keys, queue tags and pools of the film job as the definitions build them under ``env``."""
    code = ("import json, sparkle_motion_dagster.definitions as d\n"
            "job = d.defs.resolve_job_def('film')\n"
            "plan = {o.name: [dict(o.tags), o.pool] for n in job.graph.node_defs "
            "for o in getattr(n, 'node_defs', [n])}\n"
            "print(json.dumps({'executor': job.executor_def.name, 'ops': plan}))")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_rendering_stages_are_the_same_steps_under_every_executor_with_their_queues_and_pool():
    alone = _job_shape({"SPARKLE_EXECUTOR": "in_process"})
    celery = _job_shape({"SPARKLE_EXECUTOR": "celery", "SPARKLE_CELERY_BROKER": "redis://127.0.0.1:9/0"})
    assert (alone["executor"], celery["executor"]) == ("in_process", "celery")
    assert alone["ops"] == celery["ops"]
    ops = celery["ops"]
    # GPU work on the gpu queue and in the gpu pool (unlimited in a Celery cluster's instance); the rest on cpu
    assert ops["video_clips_render"] == [{"dagster-celery/queue": "gpu"}, "gpu"]
    assert ops["base_images_render"] == [{"dagster-celery/queue": "gpu"}, "gpu"]
    assert ops["video_clips_groups"][0] == ops["video_clips_manifest"][0] == {"dagster-celery/queue": "cpu"}
    assert ops["video_clips_groups"][1] is None and ops["video_clips_manifest"][1] is None
    assert ops["movie_plan"][0] == ops["video_raw_concat"][0] == {"dagster-celery/queue": "cpu"}
    assert ops["video_final"] == [{"dagster-celery/queue": "gpu"}, "gpu"]


def test_a_render_step_takes_every_item_in_process_and_a_group_where_steps_run_apart(monkeypatch):
    from sparkle_motion_dagster.assets.shot_steps import items_per_step

    monkeypatch.setenv("SPARKLE_SHOTS_PER_STEP", "2")
    assert items_per_step("in_process") is None  # steps run one at a time here: the items render side by side
    assert items_per_step(dg.in_process_executor.name) is None
    assert items_per_step("execute_in_process_executor") is None  # JobDefinition.execute_in_process's own
    assert items_per_step("multiprocess") == items_per_step("celery") == 2


def test_a_celery_clusters_home_leaves_the_gpu_pool_unlimited(monkeypatch):
    from sparkle_motion_dagster.store.locations import dagster_yaml

    monkeypatch.setenv("SPARKLE_EXECUTOR", "in_process")
    assert "default_limit: 1" in dagster_yaml()
    monkeypatch.setenv("SPARKLE_EXECUTOR", "celery")
    assert "default_limit" not in dagster_yaml().replace("# ", "")


def test_a_bad_executor_stops_the_definitions_from_loading_with_the_variable_named():
    result = subprocess.run([sys.executable, "-c", "import sparkle_motion_dagster.definitions"],
                            env={**os.environ, "PYTHONPATH": str(ROOT), "SPARKLE_EXECUTOR": "dask"},
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert "SPARKLE_EXECUTOR (ClusterSettings.executor) = 'dask'" in result.stderr


def test_postgres_storage_comes_from_the_environment_and_is_added_to_an_older_home(isolated_state, monkeypatch):
    monkeypatch.setenv("SPARKLE_POSTGRES_URL", PG)
    home = ensure_dagster_home()
    text = (home / "dagster.yaml").read_text()
    assert "storage:\n  postgres:\n    postgres_url:\n      env: SPARKLE_POSTGRES_URL" in text
    assert "secret" not in text  # the URL stays in the environment
    old = home / "old.yaml"
    old.write_text("telemetry:\n  enabled: false\n")
    assert upgrade_dagster_yaml(old) and "env: SPARKLE_POSTGRES_URL" in old.read_text()
    own = home / "own.yaml"
    own.write_text("run_monitoring:\n  enabled: true\nstorage:\n  sqlite:\n    base_dir: /x\n")
    assert not upgrade_dagster_yaml(own)


def test_a_worker_that_does_not_see_the_runs_artifact_root_or_storage_refuses_to_start(tmp_path):
    root = tmp_path / "artifacts"
    with pytest.raises(ClusterMismatchError, match="does not see the artifact root.*ARTIFACTS_FS_ROOT"):
        check_worker_view(root, redact(PG))
    marker = ensure_marker(root, redact(PG))
    assert (root / MARKER).exists() and check_worker_view(root, redact(PG))["id"] == marker["id"]
    with pytest.raises(ClusterMismatchError, match="set SPARKLE_POSTGRES_URL to the URL the webserver"):
        check_worker_view(root, "postgresql+psycopg2://films:***@elsewhere:5432/dagster")
    check_step_view(root, marker["id"])  # a step of a run started on this artifact root
    with pytest.raises(ClusterMismatchError, match="is not the run's .*has id none.*ARTIFACTS_FS_ROOT"):
        check_step_view(tmp_path / "another", marker["id"])
    from sparkle_motion_dagster.assets.stage import is_permanent

    assert is_permanent(ClusterMismatchError("x"))  # another attempt on the same box would write elsewhere too
    assert ensure_marker(root, "sqlite:/srv/home")["id"] == marker["id"]  # the owner's storage moved: same id
    with pytest.raises(ClusterMismatchError, match="SQLite on the box that owns them"):
        check_worker_view(root, "sqlite:/home/me/state/dagster_home")


def test_the_worker_command_checks_before_it_serves(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.setenv("SPARKLE_CELERY_BROKER", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("SPARKLE_EXECUTOR", "celery")  # the worker sets it; restored after the test
    monkeypatch.delenv("SPARKLE_POSTGRES_URL", raising=False)
    result = sparkle("worker", "--queues", "gpu", "--gpu", "1")
    assert result.code == 2
    assert "worker not started: no .sparkle-cluster.json under the artifact root" in result.stderr
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert sparkle("worker", "--queues", "gpu,disk").code == 2
    with pytest.raises(ValueError, match="expected gpu, cpu or gpu,cpu"):
        parse_queues("gpu,disk")
    argv = worker_argv(["gpu"], name="gpu0@%h", concurrency=1)
    assert "--concurrency=1" in argv and "--prefetch-multiplier=1" in argv and "--pool=prefork" in argv
