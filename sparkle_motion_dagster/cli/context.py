"""What the commands open: the artifact store, the persistent Dagster instance, the definitions.

Everything is imported when a command asks for it, so ``--help`` and ``validate`` never
load Dagster or the asset graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sparkle_motion_dagster.store.storage import ArtifactStore


def open_store(*, read_only: bool = False) -> ArtifactStore:
    """The artifact store at the configured root (ARTIFACTS_BACKEND checked first).

    ``read_only``: for commands that only look (``artifacts``, ``events``); the project's
    state must already exist, and a clear error says where it was looked for."""
    from sparkle_motion_dagster.store import locations
    from sparkle_motion_dagster.store.storage import ArtifactStore

    locations.artifacts_backend()
    return ArtifactStore(locations.existing_artifacts_root() if read_only else locations.artifacts_root())


def open_instance_and_store(*, read_only: bool = False) -> tuple[Any, ArtifactStore]:
    """The persistent Dagster instance and the artifact store; ``read_only`` opens existing
    state only (``status``, ``runs``) and never creates a Dagster home."""
    from sparkle_motion_dagster.store.locations import dagster_instance

    store = open_store(read_only=read_only)
    return dagster_instance(create=not read_only), store


def open_film_context() -> tuple[Any, Any, ArtifactStore]:
    """The Dagster instance (persistent DAGSTER_HOME), the definitions and their artifact store."""
    from sparkle_motion_dagster.store.locations import artifacts_backend, dagster_instance

    artifacts_backend()
    instance = dagster_instance()
    from sparkle_motion_dagster.definitions import defs

    return instance, defs, defs.resources["artifact_store"].store()


def submitted_run(instance: Any, run_id: str) -> str:
    """``run_id``, once it is safe and was submitted to this Dagster instance."""
    from sparkle_motion_dagster.store.storage import check_run_id

    check_run_id(run_id)
    if not instance.has_dynamic_partition("run_id", run_id):
        raise LookupError(f"unknown run_id {run_id!r}: it was never submitted to this Dagster instance")
    return run_id


def run_with_files(store: ArtifactStore, run_id: str) -> str:
    """``run_id``, once it is safe and has a folder under the artifact root."""
    from sparkle_motion_dagster.store.storage import UnknownRunError, check_run_id

    check_run_id(run_id)
    if not store.run_dir(run_id).is_dir():
        raise UnknownRunError(f"run_id: unknown run {run_id!r}: no files under {store.root}")
    return run_id


def warn_if_ephemeral(root: Path) -> None:
    """Say on stderr when the artifact root lives where files vanish (a notebook VM, /tmp)."""
    from sparkle_motion_dagster.lifecycle.evacuation import ephemeral_root_warning

    warning = ephemeral_root_warning(root)
    if warning:
        click.echo(warning, err=True)
