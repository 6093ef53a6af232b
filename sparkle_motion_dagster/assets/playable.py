"""Materialization metadata that plays a video through the artifact service: start
``sparkle-motion serve-artifacts`` (http://127.0.0.1:7077 by default) and click the link.

A link names the service where it was when the asset was made; the file's path under the
artifact root never changes, and ``sparkle-motion link LINK_OR_FILE`` prints where it plays
now (see :mod:`sparkle_motion_dagster.service.links`)."""

from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from sparkle_motion_dagster.store.storage import ArtifactStore
from sparkle_motion_dagster.service.links import play_url, root_relative


def play_metadata(store: ArtifactStore, paths: Iterable[tuple[str, Path]]) -> dict[str, dg.MetadataValue]:
    """``{label: url}`` for each ``(label, path)`` (a path outside the artifact root gets no link),
    and ``play_later``: the command that prints the link wherever the service runs later."""
    links, files = {}, []
    for label, path in paths:
        url = play_url(store.root, path)
        if url:
            links[label] = dg.MetadataValue.url(url)
            files.append(root_relative(store.root, path))
    if len(files) == 1:
        links["play_later"] = dg.MetadataValue.text(f"sparkle-motion link {files[0]}")
    elif files:
        links["play_later"] = dg.MetadataValue.text("sparkle-motion link LINK (any link above: it prints where "
                                                    "it plays now)")
    return links
