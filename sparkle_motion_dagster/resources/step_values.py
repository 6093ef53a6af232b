"""The values a stage's steps hand to each other (a shot group, a tally of what was rendered):
small JSON files under the film run's folder in the artifact root, so that a step on another
machine (a Celery worker on another GPU box) reads what this one wrote."""

from __future__ import annotations

import json
import re

import dagster as dg

from sparkle_motion_dagster.store.locations import artifacts_root
from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_json

STEP_VALUES = "step_values"
PARTITION_TAG = "dagster/partition"


def _name(step_key: str, output: str, mapping_key: str | None) -> str:
    parts = [step_key, output] + ([mapping_key] if mapping_key else [])
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-")


class StepValuesIOManager(dg.ConfigurableIOManager):
    """JSON step values under ``runs/<run_id>/.steps/<dagster run id>/`` (empty ``root``: the
    artifact root of the environment, as the artifact store resource)."""

    root: str = ""

    def _path(self, context: dg.OutputContext):
        film_run = context.step_context.dagster_run.tags[PARTITION_TAG] if context.step_context else None
        if film_run is None:
            raise dg.DagsterInvariantViolationError("step values need the film run's partition")
        store = ArtifactStore(self.root or artifacts_root())
        return store.step_value_path(film_run, context.run_id, _name(context.step_key, context.name,
                                                                       context.mapping_key))

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:  # a stage's last step: its files are the asset, nothing to hand on
            return
        atomic_write_json(self._path(context), obj)

    def load_input(self, context: dg.InputContext):
        upstream = context.upstream_output
        film_run = context.step_context.dagster_run.tags[PARTITION_TAG]
        store = ArtifactStore(self.root or artifacts_root())
        path = store.step_value_path(film_run, upstream.run_id,
                                     _name(upstream.step_key, upstream.name, upstream.mapping_key))
        return json.loads(path.read_text(encoding="utf-8"))
