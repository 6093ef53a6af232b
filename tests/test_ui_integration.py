"""The Dagster UI path for real: `dagster dev` on loopback, a run launched through its GraphQL API."""

import base64
import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import dagster_dev, wait_for
from PIL import Image

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
    with dagster_dev(env, folder) as (client, url):
        yield SimpleNamespace(client=client, url=url, env=env, state=state, inbox=folder / "inbox")


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


def graphql(url: str, query: str, **variables) -> dict:
    """One request to the webserver's GraphQL endpoint, as the UI makes it."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


LOCATION = {"repositoryLocationName": "sparkle_motion", "repositoryName": "__repository__"}
DEFAULT_YAML = """query($selector: PipelineSelector!) { runConfigSchemaOrError(selector: $selector) {
  ... on RunConfigSchema { rootDefaultYaml } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


def pasted_into_the_launchpad(default_yaml: str, plan: dict) -> str:
    """The launchpad's default config with the plan's JSON pasted over the {} of `plan: {}`, its
    lines indented under `plan:` (select them, Tab), as the README says, and a small size."""
    pasted = json.dumps(plan, indent=2, ensure_ascii=False).replace("\n", "\n        ")
    assert "      plan: {}\n" in default_yaml and "      size: ''\n" in default_yaml
    return default_yaml.replace("plan: {}", "plan: " + pasted, 1).replace("size: ''", "size: 160x90", 1)


def test_new_film_job_films_a_pasted_plan_from_the_ui_api_alone(ui):
    """The launchpad path: nothing but the webserver's GraphQL API and the daemon. A plan's JSON
    with quotes and apostrophes, pasted into the default config as the README says, launches; it
    gets a run_id partition, the sensor films it, and the runs carry its title and each other."""
    client, state = ui.client, ui.state

    def finished(dagster_run_id):
        return wait_for(lambda: (s := client.get_run_status(dagster_run_id).value)
                        in ("SUCCESS", "FAILURE", "CANCELED") and s, "the new_film run to finish")

    plan = json.loads(LANTERN.read_text())
    broken = {**plan, "shots": [{**plan["shots"][0], "duration_sec": -1}, plan["shots"][1]]}
    bad_run = wait_for(lambda: _try(lambda: client.submit_job_execution(
        "new_film", run_config=_new_film_config(plan_text=json.dumps(broken)))), "the code location to load")
    assert finished(bad_run) == "FAILURE"

    plan["title"] = "Noor's \"Lantern\""
    plan["dialogue_timeline"][0]["text"] = "Isn't it far? It's \"far\"."
    default_yaml = graphql(ui.url, DEFAULT_YAML, selector={**LOCATION, "pipelineName": "new_film"})[
        "runConfigSchemaOrError"]["rootDefaultYaml"]
    launched = graphql(ui.url, LAUNCH, params={"selector": {**LOCATION, "jobName": "new_film"},
                                                "runConfigData": pasted_into_the_launchpad(default_yaml, plan)})
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    good_run = launched["launchRun"]["run"]["runId"]
    assert finished(good_run) == "SUCCESS"

    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(state / "dagster_home"))
    try:
        failure = [e for e in instance.all_logs(bad_run) if e.dagster_event and e.dagster_event.is_step_failure]
        assert "shots[0].duration_sec" in failure[0].dagster_event.step_failure_data.error.message
        new_film_tags = instance.get_run_by_id(good_run).tags
        run_id = new_film_tags["sparkle/new_film_run_id"]
        assert new_film_tags["sparkle/title"] == plan["title"]
        final = state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4"
        wait_for(final.exists, "the sensor's film run to make video_final")
        (film_run,) = instance.get_runs(dg.RunsFilter(job_name="film", tags={"dagster/partition": run_id}))
        assert film_run.tags["sparkle/title"] == plan["title"]
        assert film_run.tags["sparkle/new_film_dagster_run"] == good_run
        wait_for(lambda: instance.get_run_by_id(good_run).tags.get("sparkle/film_dagster_run") == film_run.run_id,
                 "the new_film run to be tagged with the film run it started")
        wait_for(lambda: instance.get_run_by_id(film_run.run_id).is_finished, "the film run to end")
        assert instance.get_run_by_id(film_run.run_id).status == dg.DagsterRunStatus.SUCCESS
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("video_final"), asset_partitions=[run_id]), limit=1).records
        metadata = record.asset_materialization.metadata
        assert metadata["play"].value == f"http://127.0.0.1:7077/files/runs/{run_id}/finalize/video_final.mp4"
        assert metadata["play_later"].value == f"sparkle-motion link runs/{run_id}/finalize/video_final.mp4"
        assert metadata["title"].value == plan["title"]
        preview = metadata["preview"].value.split("base64,", 1)[1].rstrip(")")
        assert Image.open(io.BytesIO(base64.b64decode(preview))).width >= 480
    finally:
        instance.dispose()
