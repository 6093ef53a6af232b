"""The artifact store as a resource: configuration only, so it crosses process boundaries."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from sparkle_motion_dagster.store.locations import artifacts_backend, artifacts_root
from sparkle_motion_dagster.store.storage import ArtifactStore


class ArtifactStoreResource(dg.ConfigurableResource):
    """Where film runs write their files. Empty ``root`` means ARTIFACTS_FS_ROOT, else ``state/artifacts``."""

    root: str = Field(default="", description="Artifact root folder; empty uses the environment default.")

    def store(self) -> ArtifactStore:
        artifacts_backend()
        return ArtifactStore(self.root or artifacts_root())
