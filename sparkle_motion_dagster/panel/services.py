"""The two services a notebook panel needs: ``dagster dev`` (webserver and daemon) and
``sparkle-motion serve-artifacts``, found or started.

:func:`connect_services` reuses what already serves the state folder (a ``make ui``, another
kernel: recorded in ``<state>/panel_endpoints.json`` and checked to answer for this state, see
:mod:`panel.discovery`) and starts, as child processes of the kernel, only what does not answer,
on the ports it is given or on free ones. Each started service is ready when it answers (the
webserver's ``/server_info`` and its daemon's heartbeat; the artifact service's ``/ready``); the
bounded waits say which one did not come up and where its log is.
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

from sparkle_motion_dagster.panel import discovery
from sparkle_motion_dagster.panel.endpoints import ARTIFACTS_ENV, DAGSTER_ENV, PanelEndpoints

DAGSTER_PORT_ENV = "SPARKLE_DAGSTER_PORT"
ARTIFACTS_PORT_ENV = "SPARKLE_ARTIFACTS_PORT"

DAEMON_QUERY = '{ instance { daemonHealth { daemonStatus(daemonType: "QUEUED_RUN_COORDINATOR") { healthy } } } }'


def _program(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


@dataclass
class Services:
    """The services a panel talks to: ``processes`` are those this kernel started (and stops);
    ``reused`` names those that were already serving the state (left running)."""

    state: Path
    endpoints: PanelEndpoints
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)

    def running(self) -> dict[str, bool]:
        """``{service: running}`` for the services this kernel started."""
        return {name: proc.poll() is None for name, proc in self.processes.items()}

    def describe(self) -> str:
        """One line per service: where it answers and whether it runs, was reused or was stopped."""
        urls = {"dagster": self.endpoints.dagster_url, "artifacts": self.endpoints.artifacts_url}
        names = {"dagster": "Dagster UI", "artifacts": "artifact service"}
        lines = []
        for name, url in urls.items():
            if name in self.reused:
                how = "reused (already serving this state; left running)"
            elif name in self.processes:
                proc = self.processes[name]
                how = f"started here (pid {proc.pid})" if proc.poll() is None else "stopped"
            else:
                how = "not started"
            lines.append(f"{names[name]}: {url} — {how}")
        return "\n".join(lines)

    def stop(self) -> None:
        """Stop the services this kernel started (their whole process groups: the webserver's and
        daemon's children too) and forget them in the endpoints file; reused ones keep running."""
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.processes:
            discovery.forget(self.state, list(self.processes))

    def stop_button(self):
        """The services' state (an HTML line each, kept true) above a button that stops those this
        kernel started."""
        import ipywidgets as widgets

        from html import escape

        state = widgets.HTML(f"<pre class='sm-services'>{escape(self.describe())}</pre>")
        button = widgets.Button(description="Stop services", button_style="danger", icon="stop",
                                disabled=not self.processes)

        def clicked(_):
            button.disabled = True
            self.stop()
            state.value = f"<pre class='sm-services'>{escape(self.describe())}</pre>"
            button.description = "Services stopped"

        button.on_click(clicked)
        return widgets.VBox([state, button])


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


def connect_services(*, state: str | Path | None = None, dagster_port: int | str | None = None,
                     artifacts_port: int | str | None = None, host: str = "127.0.0.1", token: str | None = None,
                     env: dict[str, str] | None = None, workspace: str | Path | None = None) -> Services:
    """The services of ``state``: each one that the endpoints file records and that answers for
    this state is reused (``SPARKLE_DAGSTER_URL`` / ``SPARKLE_ARTIFACTS_URL`` first); the others are started on ``dagster_port`` / ``artifacts_port`` (else
    ``SPARKLE_DAGSTER_PORT`` / ``SPARKLE_ARTIFACTS_PORT``, else a free port)."""
    state = _state(state, env)
    home = state / "dagster_home"
    root = Path((env or {}).get("ARTIFACTS_FS_ROOT") or os.environ.get("ARTIFACTS_FS_ROOT") or state / "artifacts")
    saved = discovery.recorded(state)
    merged = {**os.environ, **(env or {})}
    reused = {}
    for url in (merged.get(DAGSTER_ENV), saved.get("dagster_url")):
        if url and "dagster" not in reused and discovery.dagster_serves(url.rstrip("/"), home):
            reused["dagster"] = url.rstrip("/")
    for url in (merged.get(ARTIFACTS_ENV), saved.get("artifacts_url")):
        if url and "artifacts" not in reused and discovery.artifacts_serves(url.rstrip("/"), root, token=token):
            reused["artifacts"] = url.rstrip("/")
    ports = {}
    for name, given, variable in (("dagster", dagster_port, DAGSTER_PORT_ENV),
                                  ("artifacts", artifacts_port, ARTIFACTS_PORT_ENV)):
        if name in reused:
            continue
        port = discovery.port_setting(f"{name}_port", given, variable)
        if port is not None and not discovery.port_is_free(host, port):
            raise RuntimeError(f"{name}_port: {host}:{port} is taken by something that does not serve {state}; "
                               f"give another port, or 0 for a free one")
        ports[name] = port or discovery.free_port(host)
    return _start(state, ports, reused, host=host, token=token, env=env, workspace=workspace)


def start_services(*, state: str | Path | None = None, dagster_port: int = 3000, artifacts_port: int = 7077,
                   host: str = "127.0.0.1", token: str | None = None, env: dict[str, str] | None = None,
                   workspace: str | Path | None = None) -> Services:
    """Start ``dagster dev`` and the artifact service for the project's state folder on these ports
    and wait until both answer. ``workspace`` is a ``workspace.yaml``; without one the definitions
    module is loaded."""
    return _start(_state(state, env), {"dagster": dagster_port, "artifacts": artifacts_port}, {}, host=host,
                  token=token, env=env, workspace=workspace)


def _state(state: str | Path | None, env: dict[str, str] | None) -> Path:
    from sparkle_motion_dagster.store.locations import state_dir

    return Path(state or (env or {}).get("SPARKLE_STATE_DIR") or os.environ.get("SPARKLE_STATE_DIR")
                or state_dir()).resolve()


def _start(state: Path, ports: dict[str, int], reused: dict[str, str], *, host: str, token: str | None,
           env: dict[str, str] | None, workspace: str | Path | None) -> Services:
    """Start the services named in ``ports`` (the others are ``reused``: name → URL) and wait for them."""
    from sparkle_motion_dagster.store.locations import artifacts_root, ensure_dagster_home

    child_env = {**os.environ, **(env or {})}
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
    urls = {**reused, **{name: f"http://{host}:{port}" for name, port in ports.items()}}
    endpoints = PanelEndpoints(dagster_url=urls["dagster"], artifacts_url=urls["artifacts"], token=token or None)
    child_env["SPARKLE_ARTIFACTS_URL"] = endpoints.artifacts_url
    logs_dir = state / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    target = ["-w", str(Path(workspace).resolve())] if workspace else ["-m", "sparkle_motion_dagster.definitions"]
    commands = {
        "dagster": [_program("dagster"), "dev", *target, "-h", host, "-p", str(ports.get("dagster"))],
        "artifacts": [_program("sparkle-motion"), "serve-artifacts", "--host", host,
                      "--port", str(ports.get("artifacts"))],
    }
    services = Services(state, endpoints, reused=dict(reused))
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
        for name in ports:
            log = services.logs[name] = logs_dir / f"{name}.log"
            with open(log, "ab") as out:
                services.processes[name] = subprocess.Popen(commands[name], env=child_env, cwd=state, stdout=out,
                                                            stderr=subprocess.STDOUT, start_new_session=True)
            for check, what in readiness[name]:
                _wait(check, what, log, services.processes[name])
    except BaseException:
        services.stop()
        raise
    # The token stays in the environment; the pids let whoever finds this file stop what was left.
    discovery.record(state, urls={f"{name}_url": urls[name] for name in ports},
                     pids={name: services.processes[name].pid for name in ports})
    atexit.register(services.stop)  # a kernel that shuts down takes its services with it
    return services
