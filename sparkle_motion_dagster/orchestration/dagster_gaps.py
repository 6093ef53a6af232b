"""The two things Sparkle Motion asks of Dagster that its public API does not offer.

A film whose process was killed (``kill -9``, a lost box) never hands back the concurrency-pool
slots its steps held (the ``gpu`` pool): the next film would wait for them forever. Dagster frees
such slots from its daemon's run monitoring (``free_slots_after_run_end_seconds``, which
``sparkle-motion`` writes into dagster.yaml) or from the UI's button, both through the event log
storage; a CLI film with no daemon running must do the same at once, and no public method of the
instance does it. A command that waits for a slot says which run holds it: the UI's pool page
reads that from the same storage, and no public method of the instance gives it either.
``tests/test_dagster_gaps.py`` fails the day either call changes.
"""

from __future__ import annotations

from typing import Any

import dagster as dg


def free_pool_slots(instance: dg.DagsterInstance, dagster_run_id: str) -> None:
    """Free every concurrency-pool slot (and pending claim) the (ended) Dagster run still holds."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(dagster_run_id)


def pool_slots(instance: dg.DagsterInstance, pool: str) -> Any | None:
    """The claimed slots and pending steps of ``pool`` (``claimed_slots``, ``pending_steps``), or None
    where the instance's storage keeps no pools."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    return storage.get_concurrency_info(pool)
