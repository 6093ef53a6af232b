"""Links that play an artifact through the artifact service (``sparkle-motion serve-artifacts``).

Dagster-free. A file is served at ``<base>/files/<path under the artifact root>``, e.g.
``/files/runs/<run_id>/finalize/video_final.mp4``; that path never changes, the base may.
The base is, first that is set: ``SPARKLE_ARTIFACTS_URL``; the address the running service
recorded in the artifact root (``.artifact_service.json``, written as it starts, ignored once that
process is gone); the service's
default, http://127.0.0.1:7077. A link made while the service ran elsewhere plays again through
:func:`current_link` (``sparkle-motion link LINK_OR_FILE``), which keeps the path and puts the
base of now in front of it. With ``ARTIFACTS_FS_TOKEN`` set the service wants
``Authorization: Bearer <token>`` on the request.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

BASE_ENV = "SPARKLE_ARTIFACTS_URL"
DEFAULT_BASE = "http://127.0.0.1:7077"  # serve-artifacts' default host and port
RECORD_NAME = ".artifact_service.json"  # in the artifact root: where the service runs now
_FILES = "/files/"


def record_path(store_root: str | Path) -> Path:
    return Path(store_root) / RECORD_NAME


def service_url(host: str, port: int) -> str:
    """The URL a browser on this machine reaches a service bound to ``host``:``port`` at."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def record_service(store_root: str | Path, url: str) -> Path:
    """Record where the service of this artifact root runs (atomically: a reader never sees half)."""
    from sparkle_motion_dagster.store.storage import atomic_write_json

    return atomic_write_json(record_path(store_root), {"url": url, "pid": os.getpid(), "host": socket.gethostname()})


def forget_service(store_root: str | Path, url: str) -> None:
    """Remove the record when it still names ``url`` (another service may have taken over)."""
    path = record_path(store_root)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("url") == url:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def recorded_base(store_root: str | Path) -> str | None:
    """The base URL the service recorded in the artifact root, or None: also when the service
    that wrote it ran on this machine and is gone (stopped by a signal, it leaves the record)."""
    from sparkle_motion_dagster.store.storage import process_alive

    try:
        record = json.loads(record_path(store_root).read_text(encoding="utf-8"))
        url, pid, host = record.get("url"), record.get("pid"), record.get("host")
    except (OSError, ValueError, AttributeError):
        return None
    if host == socket.gethostname() and isinstance(pid, int) and not process_alive(pid):
        return None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def current_base(store_root: str | Path) -> str:
    """Where the artifact service is now: SPARKLE_ARTIFACTS_URL, its record, or the default."""
    return (os.environ.get(BASE_ENV) or recorded_base(store_root) or DEFAULT_BASE).rstrip("/")


def root_relative(store_root: str | Path, path: str | Path) -> str | None:
    """``path`` (a file under ``store_root``) as a path under the root, or None when it is elsewhere."""
    try:
        return Path(path).resolve().relative_to(Path(store_root).resolve()).as_posix()
    except ValueError:
        return None


def play_url(store_root: str | Path, path: str | Path) -> str | None:
    """The service URL that plays ``path`` (a file under ``store_root``) now, or None when it is elsewhere."""
    relative = root_relative(store_root, path)
    return None if relative is None else f"{current_base(store_root)}{_FILES}{quote(relative)}"


def current_link(store_root: str | Path, target: str) -> str:
    """The link that plays ``target`` now: an earlier play link (any host and port), a file, or a
    path under the artifact root (``runs/<run_id>/finalize/video_final.mp4``). ValueError otherwise."""
    if target.startswith(("http://", "https://")):
        path = urlsplit(target).path
        if _FILES not in path:
            raise ValueError(f"LINK: {target!r} is not a play link (its path has no {_FILES})")
        relative = unquote(path.split(_FILES, 1)[1])
    else:
        given = Path(target).expanduser()
        relative = root_relative(store_root, given) if given.is_absolute() or given.exists() else None
        if relative is None:
            relative = given.as_posix()
        if not (Path(store_root) / relative).is_file():
            raise ValueError(f"FILE: {target!r} is not a file under the artifact root {store_root}")
    if ".." in Path(relative).parts or relative.startswith("/"):
        raise ValueError(f"LINK: {target!r} leaves the artifact root")
    return f"{current_base(store_root)}{_FILES}{quote(relative)}"
