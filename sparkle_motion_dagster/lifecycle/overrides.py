"""Per-run render overrides: the seeds a person chose when regenerating a shot.

``runs/<run_id>/overrides/overrides.json`` maps base image ids, shot ids and
character ids (their reference portraits) to their seed. The rendering stages fold these into each item's fingerprint, so
changing one shot's seed re-renders that shot and nothing else.
"""

from __future__ import annotations

import json

from sparkle_motion_dagster.film.plan import checked_seed
from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_json


KINDS = ("base_images", "shots", "characters")


def read_overrides(store: ArtifactStore, run_id: str) -> dict:
    path = store.path(run_id, "overrides", "overrides.json")
    data = json.loads(path.read_text()) if path.exists() else {}
    return {kind: data.get(kind, {}) for kind in KINDS}


def set_seed(store: ArtifactStore, run_id: str, kind: str, item_id: str, seed: int) -> dict:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    seed = checked_seed(seed)
    data = read_overrides(store, run_id)
    data[kind][item_id] = {"seed": seed}
    atomic_write_json(store.path(run_id, "overrides", "overrides.json"), data)
    return data


def seed_override(overrides: dict, kind: str, item_id: str) -> int | None:
    entry = overrides.get(kind, {}).get(item_id)
    return int(entry["seed"]) if entry and "seed" in entry else None
