"""The Dagster UI path for real: `dagster dev` on loopback, a run launched through its GraphQL API."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_film_launched_from_the_ui_api_and_from_the_drop_folder(tmp_path):
    from dagster_graphql import DagsterGraphQLClient

    state = tmp_path / "state"
    inbox = tmp_path / "inbox"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home"),
           "SPARKLE_PLAN_INBOX": str(inbox)}
    env.pop("ARTIFACTS_FS_ROOT", None)
    submitted = subprocess.run([str(BIN / "sparkle-motion"), "submit", "--sample", "--preview"], env=env,
                               capture_output=True, text=True, check=True)
    run_id = submitted.stdout.split()[1]

    port = free_port()
    server = subprocess.Popen([str(BIN / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                               "-p", str(port)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def up():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).status == 200
            except OSError:
                return False

        wait_for(up, "the webserver")
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
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
        plan = json.loads((ROOT / "sparkle_motion_dagster" / "samples" / "rooftop_revelations.json").read_text())
        plan["validated_plan"]["title"] = "Dropped Revelations"
        plan["preview"] = True
        inbox.mkdir(exist_ok=True)
        (inbox / "dropped.json.part").write_text(json.dumps(plan))
        (inbox / "dropped.json.part").rename(inbox / "dropped.json")
        accepted = wait_for(lambda: next(iter((inbox / "accepted").glob("run_*.json")), None), "the sensor to accept it")
        dropped_final = state / "artifacts" / "runs" / accepted.stem / "finalize" / "video_final.mp4"
        wait_for(dropped_final.exists, "the dropped plan's film")
        assert json.loads(accepted.read_text())["validated_plan"]["title"] == "Dropped Revelations"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _try(call):
    try:
        return call()
    except Exception:
        return None
