"""Following a Dagster run's events as its steps store them, from the process that started it.

The run is found by a tag of its own (an executor's run gets its id when it is created); its
step events are read from the instance's event log with a cursor, whichever process or box ran
the step, so the same reader serves the in-process, multiprocess and Celery executors.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import dagster as dg

ATTEMPT_TAG = "sparkle/attempt"
"""A tag unique to one execution of a film job: how its reader finds the run."""

WATCHED = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
           dg.DagsterEventType.ASSET_MATERIALIZATION}
POLL_SECONDS = 0.1
"""How often the reading thread wakes (to call ``on_tick``, which must be cheap)."""
READ_SECONDS = 0.5
"""How often it reads the event log. A read takes the storage's lock, which the executing thread's
event writes wait on: reading ten times a second slowed a film by a fifth."""


def new_attempt() -> str:
    return uuid.uuid4().hex


class RunEventReader:
    """Hands each watched event of the run tagged ``attempt`` to ``on_event(event, timestamp)``,
    in the order the instance stored them, once each."""

    def __init__(self, instance: dg.DagsterInstance, attempt: str,
                 on_event: Callable[[dg.DagsterEvent, float], None]):
        self.instance, self.attempt, self.on_event = instance, attempt, on_event
        self.run_id: str | None = None
        self.cursor: str | None = None

    def find_run(self) -> str | None:
        if self.run_id is None:
            records = self.instance.get_run_records(filters=dg.RunsFilter(tags={ATTEMPT_TAG: self.attempt}), limit=1)
            if records:
                self.run_id = records[0].dagster_run.run_id
        return self.run_id

    def read(self) -> None:
        """Hand over the events stored since the last read."""
        if self.find_run() is None:
            return
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, of_type=WATCHED, limit=500)
            for record in page.records:
                entry = record.event_log_entry
                if entry.dagster_event is not None:
                    self.on_event(entry.dagster_event, entry.timestamp)
            self.cursor = page.cursor
            if not page.has_more:
                return

    def step_failures(self) -> list[dg.DagsterEvent]:
        """The run's step failures, first first."""
        if self.find_run() is None:
            return []
        page = self.instance.get_records_for_run(self.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        return [r.event_log_entry.dagster_event for r in page.records if r.event_log_entry.dagster_event]


def execute_reading(execute: Callable[[], Any], reader: RunEventReader,
                    on_tick: Callable[[], None] | None = None, *, before: Callable[[], None] | None = None) -> Any:
    """Run ``execute`` in a thread of its own while this thread reads the run's events twice a
    second (and calls ``on_tick`` ten times a second), and once more at the end; returns what ``execute`` returned, or raises what it raised.
    ``before`` runs first in the executing thread (to block signals there, say)."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        if before:
            before()
        try:
            outcome["result"] = execute()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            outcome["error"] = exc

    # An ephemeral instance's in-memory storage is not made for a second thread reading while the
    # run writes ("table is locked"): its events are read once the run has ended.
    live = not reader.instance.is_ephemeral
    worker = threading.Thread(target=work, name=f"film-{reader.attempt[:8]}", daemon=True)
    worker.start()
    next_read = time.monotonic() + READ_SECONDS
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        if live and time.monotonic() >= next_read:
            reader.read()
            next_read = time.monotonic() + READ_SECONDS
        if on_tick:
            on_tick()
    reader.read()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
