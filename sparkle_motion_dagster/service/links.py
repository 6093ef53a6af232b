"""Links that play an artifact through the artifact service (``sparkle-motion serve-artifacts``).

Dagster-free. The base URL is ``SPARKLE_ARTIFACTS_URL`` (default the service's own default,
http://127.0.0.1:7077); a file is served at ``/files/runs/<run_id>/...``. With
``ARTIFACTS_FS_TOKEN`` set the service wants ``Authorization: Bearer <token>`` on the request.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

BASE_ENV = "SPARKLE_ARTIFACTS_URL"
DEFAULT_BASE = "http://127.0.0.1:7077"  # serve-artifacts' default host and port


def play_url(store_root: str | Path, path: str | Path) -> str | None:
    """The service URL that plays ``path`` (a file under ``store_root``), or None when it is elsewhere."""
    try:
        relative = Path(path).resolve().relative_to(Path(store_root).resolve()).as_posix()
    except ValueError:
        return None
    base = (os.environ.get(BASE_ENV) or DEFAULT_BASE).rstrip("/")
    return f"{base}/files/{quote(relative)}"
