"""The panel's HTTP client for the artifact service (status, artifacts, files, control, review)."""

from __future__ import annotations

from typing import Any

import requests

from sparkle_motion_dagster.panel.endpoints import PanelEndpoints


class ServiceError(RuntimeError):
    """The artifact service refused a request; the message is its ``detail``."""

    def __init__(self, status: int, detail: Any):
        self.status, self.detail = status, detail
        text = detail.get("message", detail) if isinstance(detail, dict) else detail
        super().__init__(f"artifact service answered {status}: {text}")


class ArtifactClient:
    def __init__(self, endpoints: PanelEndpoints):
        self.endpoints = endpoints
        self.base = endpoints.artifacts_url.rstrip("/")
        self.session = requests.Session()
        if endpoints.token:
            self.session.headers["Authorization"] = f"Bearer {endpoints.token}"

    def _answer(self, response: requests.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(response.status_code, detail)
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._answer(self.session.get(self.base + path, params=params, timeout=self.endpoints.timeout_s))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._answer(self.session.post(self.base + path, json=body, timeout=self.endpoints.timeout_s))

    def ready(self) -> dict[str, Any]:
        response = self.session.get(self.base + "/ready", timeout=self.endpoints.timeout_s)
        return response.json()

    def status(self, run_id: str, log_lines: int = 12) -> dict[str, Any]:
        return self.get("/status", run_id=run_id, log_lines=log_lines)

    def artifacts(self, run_id: str, stage: str | None = None) -> dict[str, Any]:
        return self.get("/artifacts", run_id=run_id, **({"stage": stage} if stage else {}))

    def file_url(self, download_url: str) -> str:
        """An absolute URL for a row's ``download_url`` (which is relative to the service)."""
        return download_url if download_url.startswith(("http://", "https://")) else self.base + download_url

    def fetch(self, url: str) -> bytes:
        """A file's bytes (a plan, a thumbnail): small files only; videos play from their URL."""
        response = self.session.get(self.file_url(url), timeout=self.endpoints.timeout_s)
        if response.status_code >= 400:
            raise ServiceError(response.status_code, response.text[:200])
        return response.content
