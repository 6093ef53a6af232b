"""The one thing Sparkle Motion asks of Dagster that its public API does not offer.

A film whose process was killed (``kill -9``, a lost box) never hands back the concurrency-pool
slots its steps held (the ``gpu`` pool): the next film would wait for them forever. Dagster frees
such slots from its daemon's run monitoring (``free_slots_after_run_end_seconds``, which
``sparkle-motion`` writes into dagster.yaml) or from the UI's button, both through the event log
storage; a CLI film with no daemon running must do the same at once, and no public method of the
instance does it. ``tests/test_dagster_gaps.py`` fails the day this call changes.
"""

from __future__ import annotations

import dagster as dg


def free_pool_slots(instance: dg.DagsterInstance, dagster_run_id: str) -> None:
    """Free every concurrency-pool slot the (ended) Dagster run still holds."""
    instance.event_log_storage.free_concurrency_slots_for_run(dagster_run_id)
