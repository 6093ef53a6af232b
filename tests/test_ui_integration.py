"""The Dagster UI path for real: `dagster dev` on loopback, a run launched through its GraphQL API."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import dagster_dev, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """One `dagster dev` (webserver and daemon, drop folder watched) on a fresh state folder for the
    tests of this file; each films its own runs in it."""
    folder = tmp_path_factory.mktemp("ui")
    state = folder / "state"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home"),
           "SPARKLE_PLAN_INBOX": str(folder / "inbox")}
    env.pop("ARTIFACTS_FS_ROOT", None)
    subprocess.run([str(BIN / "sparkle-motion"), "paths", "--create"], env=env, capture_output=True, check=True)
    with dagster_dev(env, folder) as (client, _):
        yield SimpleNamespace(client=client, env=env, state=state, inbox=folder / "inbox")


def small_lantern(title: str) -> dict:
    """The two-shot sample at 160x90 (the size proves nothing here; it only costs time)."""
    plan = json.loads(LANTERN.read_text())
    plan["title"] = title
    plan["render_profile"]["video"].update(width=160, height=90)
    return plan


def test_film_launched_from_the_ui_api_and_from_the_drop_folder(ui, tmp_path):
    client, state, inbox = ui.client, ui.state, ui.inbox
    submitted = subprocess.run([str(BIN / "sparkle-motion"), "submit", "--sample", "--preview", "--size", "160x90"],
                               env=ui.env, capture_output=True, text=True, check=True)
    run_id = submitted.stdout.split()[1]

    dagster_run_id = wait_for(
        lambda: _try(lambda: client.submit_job_execution("film", tags={"dagster/partition": run_id})),
        "the code location to load",
    )
    status = wait_for(
        lambda: (s := client.get_run_status(dagster_run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s,
        "the run to finish",
    )
    assert status == "SUCCESS"
    final = state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4"
    assert final.stat().st_size > 10_000

    # A plan dropped into the inbox becomes a final video with nobody touching the CLI:
    # the daemon's sensor accepts it, adds the partition and launches the film.
    plan = {"validated_plan": small_lantern("Dropped Lantern"), "preview": True}
    inbox.mkdir(exist_ok=True)
    (inbox / "dropped.json.part").write_text(json.dumps(plan))
    (inbox / "dropped.json.part").rename(inbox / "dropped.json")
    accepted = wait_for(lambda: next(iter((inbox / "accepted").glob("run_*.json")), None), "the sensor to accept it")
    dropped_final = state / "artifacts" / "runs" / accepted.stem / "finalize" / "video_final.mp4"
    wait_for(dropped_final.exists, "the dropped plan's film")
    assert json.loads(accepted.read_text())["validated_plan"]["title"] == "Dropped Lantern"


def _try(call):
    try:
        return call()
    except Exception:
        return None


LANTERN = ROOT / "sparkle_motion_dagster" / "samples" / "lantern_walk.json"


def _new_film_config(**fields) -> dict:
    return {"ops": {"submit_new_film": {"config": fields}}}


def test_new_film_job_films_a_pasted_plan_from_the_ui_api_alone(ui):
    """The launchpad path: nothing but the webserver's GraphQL API and the daemon. A pasted
    (YAML) plan is validated, gets a run_id partition, and the sensor films it."""
    import yaml

    client, state = ui.client, ui.state

    def finished(dagster_run_id):
        return wait_for(lambda: (s := client.get_run_status(dagster_run_id).value)
                        in ("SUCCESS", "FAILURE", "CANCELED") and s, "the new_film run to finish")

    plan = json.loads(LANTERN.read_text())
    broken = {**plan, "shots": [{**plan["shots"][0], "duration_sec": -1}, plan["shots"][1]]}
    bad_run = wait_for(lambda: _try(lambda: client.submit_job_execution(
        "new_film", run_config=_new_film_config(plan_text=json.dumps(broken)))), "the code location to load")
    assert finished(bad_run) == "FAILURE"

    good_run = client.submit_job_execution(
        "new_film", run_config=_new_film_config(plan_text=yaml.safe_dump(plan), size="160x90"))
    assert finished(good_run) == "SUCCESS"

    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(state / "dagster_home"))
    try:
        failure = [e for e in instance.all_logs(bad_run) if e.dagster_event and e.dagster_event.is_step_failure]
        assert "shots[0].duration_sec" in failure[0].dagster_event.step_failure_data.error.message
        run_id = instance.get_run_by_id(good_run).tags["sparkle/new_film_run_id"]
        final = state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4"
        wait_for(final.exists, "the sensor's film run to make video_final")
        film_runs = instance.get_runs(dg.RunsFilter(job_name="film", tags={"dagster/partition": run_id}))
        wait_for(lambda: instance.get_run_by_id(film_runs[0].run_id).is_finished, "the film run to end")
        assert instance.get_run_by_id(film_runs[0].run_id).status == dg.DagsterRunStatus.SUCCESS
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("video_final"), asset_partitions=[run_id]), limit=1).records
        play = record.asset_materialization.metadata["play"].value
        assert play == f"http://127.0.0.1:7077/files/runs/{run_id}/finalize/video_final.mp4"
    finally:
        instance.dispose()
