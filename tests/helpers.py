"""Small helpers shared by tests that start servers and wait on other processes."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, what: str, attempts: int = 2000, interval: float = 0.1):
    """Poll until ``predicate`` returns something truthy; bounded by attempts, not by a clock."""
    for _ in range(attempts):
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}")


@contextlib.contextmanager
def dagster_dev(env: dict, cwd: Path):
    """`dagster dev` (webserver and daemon) on a free loopback port: a GraphQL client for it and its URL."""
    from dagster_graphql import DagsterGraphQLClient

    port = free_port()
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    server = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(workspace),
                               "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)

    def up():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(up, "the webserver")
        yield DagsterGraphQLClient("127.0.0.1", port_number=port), f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def small_sample(width: int = 160, height: int = 90) -> dict:
    """The bundled sample plan artifact (Rooftop Revelations) rendered small: the same shots, lines
    and timing, at a size that films in seconds (its own 1280x720 proves nothing more here)."""
    import json

    document = json.loads((Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples"
                           / "rooftop_revelations.json").read_text())
    document["validated_plan"]["render_profile"]["video"].update(width=width, height=height)
    return document
