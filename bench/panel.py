"""A tiny film driven from the notebook panel against the same film from the CLI.

The two-shot sample at 96x64, three times each, on one state folder: the panel launches it
through Dagster's webserver (queue, daemon, a run worker process) and polls the artifact
service; the CLI films it in its own process. Prints ``panel_over_cli`` (medians), which is
the price of running under the daemon: the run queue and a fresh run worker per film.
Needs the notebook extra (`pip install -e '.[notebook]'`).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sparkle_motion_dagster" / "samples" / "lantern_walk.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(repeats: int = 3) -> None:
    from sparkle_motion_dagster.panel import create_control_panel
    from sparkle_motion_dagster.panel.services import start_services

    state = Path(tempfile.mkdtemp(prefix="sparkle-bench-panel-")) / "state"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home")}
    services = start_services(state=state, dagster_port=free_port(), artifacts_port=free_port(),
                              workspace=ROOT / "workspace.yaml")
    panel_s, cli_s = [], []
    try:
        for _ in range(repeats):
            panel = create_control_panel(services.endpoints, size="96x64")
            panel.plan_uri.value = str(SAMPLE)
            panel.load_plan.click()
            start = time.perf_counter()
            panel.run_production.click()
            while (status := panel.refresh(artifacts=False))["status"] in ("submitted", "queued", "running"):
                time.sleep(0.2)
            panel_s.append(time.perf_counter() - start)
            assert status["status"] == "succeeded", status["detail"]
            start = time.perf_counter()
            done = subprocess.run([str(Path(sys.executable).parent / "sparkle-motion"), "run", "--plan", str(SAMPLE),
                                   "--size", "96x64"], env=env, capture_output=True, text=True)
            cli_s.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr
    finally:
        services.stop()
    print("panel_s", [round(s, 2) for s in panel_s], "cli_s", [round(s, 2) for s in cli_s])
    print(f"panel_over_cli = {statistics.median(panel_s) / statistics.median(cli_s):.2f}")


if __name__ == "__main__":
    main()
