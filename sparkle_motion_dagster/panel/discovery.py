"""Finding the services that already serve a state folder, so a notebook reuses a ``make ui``'s
``dagster dev`` (or another kernel's services) instead of starting a second one.

``<state>/panel_endpoints.json`` records what serves the state: ``dagster_url`` and
``artifacts_url``, and, under ``pids``, the process groups a notebook started itself (a
``make ui`` records its URL and no pid: it is not the notebook's to stop). A recorded URL is
only trusted once it answers *for this state*: the webserver's instance lives in this state's
Dagster home, the artifact service's ``/ready`` names this artifact root.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import requests

from sparkle_motion_dagster.panel.endpoints import endpoints_file

INSTANCE_QUERY = "{ instance { info } }"


def recorded(state: Path) -> dict[str, Any]:
    """What ``panel_endpoints.json`` records for ``state`` (empty when nothing or unreadable)."""
    try:
        saved = json.loads(endpoints_file(state).read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def record(state: Path, *, urls: dict[str, str], pids: dict[str, int] | None = None) -> None:
    """Merge ``urls`` (``dagster_url`` / ``artifacts_url``) and the ``pids`` of the services started
    for them into ``panel_endpoints.json``, atomically; a URL recorded without a pid drops any pid
    an earlier owner left for it."""
    saved = recorded(state)
    saved_pids = dict(saved.get("pids") or {})
    for key, url in urls.items():
        saved[key] = url
        saved_pids.pop(key.removesuffix("_url"), None)
    saved_pids.update(pids or {})
    saved["pids"] = saved_pids
    _write(state, saved)


def forget(state: Path, names: list[str]) -> None:
    """Remove the services ``names`` (``dagster``, ``artifacts``) from ``panel_endpoints.json``,
    leaving what others serve; the file goes when nothing is left."""
    saved = recorded(state)
    pids = dict(saved.get("pids") or {})
    for name in names:
        saved.pop(f"{name}_url", None)
        pids.pop(name, None)
    saved["pids"] = pids
    if not any(key.endswith("_url") for key in saved):
        endpoints_file(state).unlink(missing_ok=True)
    else:
        _write(state, saved)


def _write(state: Path, saved: dict[str, Any]) -> None:
    path = endpoints_file(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(saved, indent=1))
    os.replace(temp, path)


def dagster_serves(url: str, home: Path, timeout_s: float = 5.0) -> bool:
    """Whether a Dagster webserver answers at ``url`` with its instance in ``home``."""
    try:
        if not requests.get(f"{url}/server_info", timeout=timeout_s).ok:
            return False
        body = requests.post(f"{url}/graphql", json={"query": INSTANCE_QUERY}, timeout=timeout_s).json()
        info = body["data"]["instance"]["info"] or ""
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False
    return re.search(re.escape(str(Path(home).resolve())) + r"(/|$)", info, re.M) is not None


def artifacts_serves(url: str, root: Path, *, token: str | None = None, timeout_s: float = 5.0) -> bool:
    """Whether the artifact service at ``url`` is ready, serves the artifact root ``root`` and
    lets this ``token`` in (a service without a token for a kernel without one)."""
    from sparkle_motion_dagster.store.locations import path_id

    try:
        ready = requests.get(f"{url}/ready", timeout=timeout_s)
        if not (ready.ok and ready.json().get("root_id") == path_id(root)):
            return False
        auth = requests.get(f"{url}/healthz", timeout=timeout_s).json().get("auth")
        if auth != ("token" if token else "none"):
            return False
        if token:  # a guarded route: refused (401) only when the token is not the service's
            answer = requests.get(f"{url}/artifacts", headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout_s)
            return answer.status_code not in (401, 403)
        return True
    except (requests.RequestException, ValueError, AttributeError):
        return False


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` can be listened on now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    """A port on ``host`` nothing listens on (the system's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_setting(name: str, given: int | str | None, env: str) -> int | None:
    """The port for a service: ``given`` (a notebook parameter), else the environment variable
    ``env``; None (or 0) when neither names one. A value that is not a port is refused, naming it."""
    for source, value in ((name, given), (env, os.environ.get(env))):
        if value in (None, "", 0, "0"):
            continue
        try:
            port = int(value)
        except (TypeError, ValueError):
            port = -1
        if not 0 < port < 65536:
            raise ValueError(f"{source}: {value!r} is not a port number (1-65535; 0 or empty for a free one)")
        return port
    return None



def main(argv: list[str] | None = None) -> int:
    """``python -m sparkle_motion_dagster.panel.discovery dagster URL``: record that a service (here
    ``make ui``'s ``dagster dev``) serves the state folder (``SPARKLE_STATE_DIR`` or the one found
    from here), so notebooks reuse it instead of starting their own."""
    import argparse

    from sparkle_motion_dagster.store.locations import state_dir

    parser = argparse.ArgumentParser(prog="python -m sparkle_motion_dagster.panel.discovery")
    parser.add_argument("service", choices=["dagster", "artifacts"])
    parser.add_argument("url")
    args = parser.parse_args(argv)
    record(state_dir(), urls={f"{args.service}_url": args.url.rstrip("/")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
