"""A film under the multiprocess executor: the CLI runs the job through Dagster's public
execute_job, each step in a process of its own, for the film's partition, and reports each stage
from the events those processes store."""

import os
import subprocess
import sys

import dagster as dg
import pytest

CLI = [sys.executable, "-m", "sparkle_motion_dagster.cli.main"]


@pytest.mark.slow
def test_a_dry_run_under_the_multiprocess_executor_runs_its_step_apart_for_the_partition(tmp_path, monkeypatch):
    state = tmp_path / "state"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "SPARKLE_EXECUTOR": "multiprocess"}
    env.pop("ARTIFACTS_FS_ROOT", None)
    env.pop("DAGSTER_HOME", None)
    result = subprocess.run([*CLI, "run", "--sample", "--mode", "dry"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("run_id:"))
    assert any(line.split()[:2] == ["movie_plan", "ok"] for line in result.stdout.splitlines()), result.stdout

    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"sparkle/run_id": run_id}))
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == run_id
        starts = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
        assert [r.event_log_entry.step_key for r in starts] == ["movie_plan"]  # the dry run's one stage
        assert starts[0].event_log_entry.dagster_event.pid != int(run.tags["sparkle/pid"])  # a process of its own
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("movie_plan"), asset_partitions=[run_id]), limit=1).records
        assert record.run_id == run.run_id
