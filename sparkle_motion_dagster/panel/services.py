"""Start and stop the two services a notebook panel needs, as child processes of the kernel:
``dagster dev`` (webserver and daemon) and ``sparkle-motion serve-artifacts``.

Each is ready when it answers (the webserver's ``/server_info`` and its daemon's heartbeat;
the artifact service's ``/ready``); the bounded waits say which one did not come up and where
its log is. The URLs are left in ``<state>/panel_endpoints.json`` so that a panel built with
no arguments finds them.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from sparkle_motion_dagster.panel.endpoints import PanelEndpoints, endpoints_file

DAEMON_QUERY = '{ instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { healthy } } } }'


def _program(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


@dataclass
class Services:
    state: Path
    endpoints: PanelEndpoints
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def running(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.processes.items()}

    def stop(self) -> None:
        """Stop both services (their whole process groups: the webserver's and daemon's children too)."""
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        endpoints_file(self.state).unlink(missing_ok=True)

    def stop_button(self):
        """An ipywidgets button that stops the services."""
        import ipywidgets as widgets

        button = widgets.Button(description="Stop services", button_style="danger", icon="stop")

        def clicked(_):
            self.stop()
            button.description, button.disabled = "Services stopped", True

        button.on_click(clicked)
        return button


def _wait(check, what: str, log: Path, proc: subprocess.Popen, attempts: int = 600) -> None:
    for _ in range(attempts):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            if check():
                return
        except (requests.RequestException, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready; see {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_services(*, state: str | Path | None = None, dagster_port: int = 3000, artifacts_port: int = 7077,
                   host: str = "127.0.0.1", token: str | None = None, env: dict[str, str] | None = None,
                   workspace: str | Path | None = None) -> Services:
    """Start ``dagster dev`` and the artifact service for the project's state folder and wait until
    both answer. ``workspace`` is a ``workspace.yaml``; without one the definitions module is loaded."""
    from sparkle_motion_dagster.store.locations import artifacts_root, ensure_dagster_home, state_dir

    child_env = {**os.environ, **(env or {})}
    state = Path(state or child_env.get("SPARKLE_STATE_DIR") or state_dir()).resolve()
    child_env.update(SPARKLE_STATE_DIR=str(state), DAGSTER_HOME=str(state / "dagster_home"))
    previous = {k: os.environ.get(k) for k in ("SPARKLE_STATE_DIR", "DAGSTER_HOME")}
    os.environ.update(SPARKLE_STATE_DIR=child_env["SPARKLE_STATE_DIR"], DAGSTER_HOME=child_env["DAGSTER_HOME"])
    try:
        ensure_dagster_home()  # the dagster.yaml with the run queue, before either service opens it
        artifacts_root().mkdir(parents=True, exist_ok=True)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if token:
        child_env["ARTIFACTS_FS_TOKEN"] = token
    endpoints = PanelEndpoints(dagster_url=f"http://{host}:{dagster_port}",
                               artifacts_url=f"http://{host}:{artifacts_port}", token=token or None)
    child_env["SPARKLE_ARTIFACTS_URL"] = endpoints.artifacts_url
    logs_dir = state / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    target = ["-w", str(Path(workspace).resolve())] if workspace else ["-m", "sparkle_motion_dagster.definitions"]
    commands = {
        "dagster": [_program("dagster"), "dev", *target, "-h", host, "-p", str(dagster_port)],
        "artifacts": [_program("sparkle-motion"), "serve-artifacts", "--host", host, "--port", str(artifacts_port)],
    }
    services = Services(state, endpoints)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # One after the other: two processes creating a new SQLite instance at once break it.
        readiness = {
            "dagster": [(lambda: requests.get(f"{endpoints.dagster_url}/server_info", timeout=2).ok,
                         "the Dagster webserver"),
                        (lambda: requests.post(f"{endpoints.dagster_url}/graphql", json={"query": DAEMON_QUERY},
                                               timeout=5).json()["data"]["instance"]["daemonHealth"]["daemonStatus"]
                         ["healthy"], "the Dagster daemon")],
            "artifacts": [(lambda: requests.get(f"{endpoints.artifacts_url}/ready", headers=headers, timeout=2).ok,
                           "the artifact service")],
        }
        for name, command in commands.items():
            log = services.logs[name] = logs_dir / f"{name}.log"
            with open(log, "ab") as out:
                services.processes[name] = subprocess.Popen(command, env=child_env, cwd=state, stdout=out,
                                                            stderr=subprocess.STDOUT, start_new_session=True)
            for check, what in readiness[name]:
                _wait(check, what, log, services.processes[name])
    except BaseException:
        services.stop()
        raise
    # The token stays in the environment; the pids let whoever finds this file stop what was left.
    endpoints_file(state).write_text(json.dumps({"dagster_url": endpoints.dagster_url,
                                                 "artifacts_url": endpoints.artifacts_url,
                                                 "pids": {n: p.pid for n, p in services.processes.items()}}))
    atexit.register(services.stop)  # a kernel that shuts down takes its services with it
    return services
