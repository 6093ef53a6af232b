"""Real Redis and PostgreSQL on loopback ports for the cluster tests (and bench/cluster.py),
and `sparkle-motion worker` processes; each started in a temporary folder and torn down."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import free_port, wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MISSING_REDIS = "redis-server is not installed (apt-get install redis-server)"
MISSING_POSTGRES = "PostgreSQL is not installed (apt-get install postgresql)"


def postgres_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")) if Path("/usr/lib/postgresql").is_dir() \
        else []
    return str(candidates[-1]) if candidates else None


def missing_programs() -> str | None:
    """Why the cluster tests cannot run here (one line saying what to install), or None."""
    if shutil.which("redis-server") is None:
        return MISSING_REDIS
    if not all(postgres_program(name) for name in ("initdb", "pg_ctl", "postgres")):
        return MISSING_POSTGRES
    return None


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def redis_server():
    """A Redis on a free loopback port, nothing saved to disk: yields its URL base (redis://127.0.0.1:PORT)."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for(lambda: _port_open(port), "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as `nobody` then."""
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgres_server():
    """A PostgreSQL cluster in a temporary folder on a free loopback port (trust auth on
    loopback only): yields its URL (postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres)."""
    folder = Path(tempfile.mkdtemp(prefix="sparkle-pg-"))
    data = folder / "data"
    os.chmod(folder, 0o777)
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody")
    port = free_port()
    subprocess.run(_as_postgres_user([postgres_program("initdb"), "-D", str(data), "-U", "postgres",
                                      "--auth=trust", "-E", "UTF8", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    subprocess.run(_as_postgres_user([postgres_program("pg_ctl"), "-D", str(data), "-o", options,
                                      "-l", str(folder / "log"), "-w", "start"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([postgres_program("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


def sparkle_motion() -> str:
    return str(Path(sys.executable).parent / "sparkle-motion")


class Worker:
    """A `sparkle-motion worker` process in its own process group (so kill -9 takes its pool too)."""

    def __init__(self, env: dict, queues: str, name: str, log: Path):
        self.name, self.log = name, log
        self.process = subprocess.Popen([sparkle_motion(), "worker", "--queues", queues, "--name", name],
                                        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def ready(self) -> bool:
        return "ready." in self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 the worker and its pool processes: the box is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
