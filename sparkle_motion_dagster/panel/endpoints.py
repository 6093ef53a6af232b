"""Where the panel finds Dagster's webserver and the artifact service.

Defaults, in order: the arguments; the environment (``SPARKLE_DAGSTER_URL``,
``SPARKLE_ARTIFACTS_URL``, ``ARTIFACTS_FS_TOKEN``); the ``panel_endpoints.json`` that
:func:`services.connect_services` and ``make ui`` leave in the project's state folder; the services' own
default ports on loopback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DAGSTER_ENV = "SPARKLE_DAGSTER_URL"
ARTIFACTS_ENV = "SPARKLE_ARTIFACTS_URL"  # also what service/links.py reads
TOKEN_ENV = "ARTIFACTS_FS_TOKEN"
ENDPOINTS_FILE = "panel_endpoints.json"
DEFAULT_DAGSTER = "http://127.0.0.1:3000"
DEFAULT_ARTIFACTS = "http://127.0.0.1:7077"


@dataclass(frozen=True)
class PanelEndpoints:
    """The two services a panel talks to, and the artifact service's token (None on loopback)."""

    dagster_url: str = DEFAULT_DAGSTER
    artifacts_url: str = DEFAULT_ARTIFACTS
    token: str | None = None
    timeout_s: float = 30.0

    @classmethod
    def from_environment(cls) -> PanelEndpoints:
        saved = _saved_endpoints()
        return cls(
            dagster_url=(os.environ.get(DAGSTER_ENV) or saved.get("dagster_url") or DEFAULT_DAGSTER).rstrip("/"),
            artifacts_url=(os.environ.get(ARTIFACTS_ENV) or saved.get("artifacts_url") or DEFAULT_ARTIFACTS).rstrip("/"),
            token=os.environ.get(TOKEN_ENV) or saved.get("token") or None,
        )


def endpoints_file(state: Path) -> Path:
    return state / ENDPOINTS_FILE


def _saved_endpoints() -> dict:
    from sparkle_motion_dagster.store.locations import state_dir

    state = state_dir()  # the CLI's state: SPARKLE_STATE_DIR, else found from the current folder
    try:
        saved = json.loads(endpoints_file(state).read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}
