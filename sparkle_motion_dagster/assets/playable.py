"""Materialization metadata that plays a video through the artifact service: start
``sparkle-motion serve-artifacts`` (http://127.0.0.1:7077 by default) and click the link."""

from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from sparkle_motion_dagster.store.storage import ArtifactStore
from sparkle_motion_dagster.service.links import play_url


def play_metadata(store: ArtifactStore, paths: Iterable[tuple[str, Path]]) -> dict[str, dg.MetadataValue]:
    """``{label: url}`` for each ``(label, path)``; a path outside the artifact root gets no link."""
    links = {}
    for label, path in paths:
        url = play_url(store.root, path)
        if url:
            links[label] = dg.MetadataValue.url(url)
    return links
