"""Which of the panel's services answer now: the Dagster UI and the artifact service, each asked
its cheapest question (``/server_info``, ``/healthz``) with a short timeout, for the panel's
services line."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import requests

from sparkle_motion_dagster.panel.colab import browser_url
from sparkle_motion_dagster.panel.endpoints import PanelEndpoints

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Answer:
    """One service: its name, where it was asked, and whether it answered (``problem`` says why not)."""

    name: str
    url: str
    answered: bool
    problem: str = ""


def probe(name: str, url: str, path: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> Answer:
    """Ask ``url + path``; any HTTP answer below 500 counts (a 401 is a service that answers)."""
    try:
        response = requests.get(url.rstrip("/") + path, timeout=timeout_s)
    except requests.RequestException as exc:
        return Answer(name, url, False, type(exc).__name__)
    if response.status_code >= 500:
        return Answer(name, url, False, f"HTTP {response.status_code}")
    return Answer(name, url, True)


def probe_services(endpoints: PanelEndpoints) -> list[Answer]:
    """The Dagster UI and the artifact service, in that order."""
    return [probe("Dagster UI", endpoints.dagster_url, "/server_info"),
            probe("artifact service", endpoints.artifacts_url, "/healthz")]


def services_html(answers: list[Answer]) -> str:
    """``services: Dagster UI http://… answers · artifact service http://… does not answer (ConnectionError)``."""
    parts = []
    for answer in answers:
        link = f'<a href="{escape(browser_url(answer.url), quote=True)}" target="_blank">{escape(answer.url)}</a>'
        state = ('<span data-answers="yes" style="color:#1b7f3b">answers</span>' if answer.answered else
                 f'<span data-answers="no" style="color:#b00020">does not answer ({escape(answer.problem)})</span>')
        parts.append(f"{escape(answer.name)} {link} {state}")
    return f'<div class="sm-services">services: {" · ".join(parts)}</div>'
