"""A film's title where the Dagster UI shows it: the ``sparkle/title`` tag on its runs and the
``title`` entry of its stages' materializations. Dagster-free; read from the submitted request."""

from __future__ import annotations

from typing import Any

from sparkle_motion_dagster.lifecycle.shown import one_line
from sparkle_motion_dagster.store.storage import ArtifactStore

TITLE_TAG = "sparkle/title"
MAX_TITLE_CHARS = 200  # a tag is a label, not a document


def document_title(document: Any) -> str | None:
    """The title of a MoviePlan or of a plan artifact (``{"validated_plan": {...}}``), if it has one."""
    if isinstance(document, dict) and isinstance(document.get("validated_plan"), dict):
        document = document["validated_plan"]
    title = document.get("title") if isinstance(document, dict) else None
    return shown_title(title) if isinstance(title, str) and title.strip() else None


def shown_title(title: str) -> str:
    """A title as a tag or a metadata entry shows it: on one line, at most 200 characters."""
    return one_line(title.strip(), MAX_TITLE_CHARS)


def requested_title(store: ArtifactStore, run_id: str) -> str | None:
    """The title a film run was submitted with (its plan's, or a prompt's); None when unknown."""
    try:
        request = store.read_request(run_id)
    except (OSError, ValueError, LookupError):
        return None
    if isinstance(request.get("prompt"), dict):
        return document_title(request["prompt"])
    return document_title(request.get("document"))


def title_tags(store: ArtifactStore, run_id: str) -> dict[str, str]:
    """``{sparkle/title: title}`` for a film run's Dagster run; empty when it has no title yet."""
    title = requested_title(store, run_id)
    return {TITLE_TAG: title} if title else {}
