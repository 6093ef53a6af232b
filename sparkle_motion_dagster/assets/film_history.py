"""Every finished film adds its stage times to the estimates' history, whoever launched it (the CLI,
the UI, a sensor, the panel, a Celery cluster), measured where each step ran.

Each one-step stage measures itself in the process that runs it (its time, less any pause, and its
peak resident and CUDA memory there) and records the figures in its materialization's metadata
(``step_seconds``, ``peak_rss_bytes``, ``peak_cuda_bytes``); a stage rendered in several steps
(keyframes, clips) adds up its render steps' times and takes the highest of their peaks. When the
film's last stage finishes, it
reads the other stages' figures from the Dagster instance and, when every stage of the film ran in
this Dagster run and rendered every item (nothing reused), adds the film to the history
(``insight/estimates.py``).
"""

from __future__ import annotations

import time
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.insight import estimates

MEASURES = ("step_seconds", "peak_rss_bytes", "peak_cuda_bytes")


class StepMeasure:
    """A stage's own time and peak memory, measured in the step's process."""

    def __init__(self) -> None:
        self.watch = estimates.MemoryWatch()
        self.watch.reset()
        self.started = time.monotonic()

    def metadata(self, held_seconds: float = 0.0) -> dict[str, Any]:
        peak = self.watch.peak()
        return {"step_seconds": round(max(0.0, time.monotonic() - self.started - held_seconds), 4),
                "peak_rss_bytes": peak["rss"] or 0, "peak_cuda_bytes": peak["cuda"] or 0}


def combined(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """One stage's figures from those of its render steps: their times added up, their highest peaks."""
    if not measured:
        return {}
    return {"step_seconds": round(sum(m["step_seconds"] for m in measured), 4),
            "peak_rss_bytes": max(m["peak_rss_bytes"] for m in measured),
            "peak_cuda_bytes": max(m["peak_cuda_bytes"] for m in measured)}


def _latest(instance: dg.DagsterInstance, key: str, run_id: str):
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(key),
                                                                    asset_partitions=[run_id]), limit=1).records
    return records[0] if records else None


def record_if_whole_film(context, store, run_id: str, last_stage: dict[str, Any]) -> dict[str, Any] | None:
    """From the film's last stage (its own figures in ``last_stage``): add the film to the history when
    every stage ran in this Dagster run and rendered everything. Never fails the stage."""
    try:
        seconds, peaks, starts = {}, {}, []
        for key in stages.STAGE_KEYS[:-1]:
            record = _latest(context.instance, key, run_id)
            if record is None or record.event_log_entry.run_id != context.run_id:
                return None
            metadata = {name: value.value for name, value in
                        record.asset_materialization.metadata.items()}
            if any(metadata.get(name) for name in ("reused", "reused_lines")) or "step_seconds" not in metadata:
                return None
            seconds[key] = float(metadata["step_seconds"])
            peaks[key] = {"rss": metadata.get("peak_rss_bytes") or None, "cuda": metadata.get("peak_cuda_bytes") or None}
            starts.append(record.event_log_entry.timestamp - seconds[key])
        last = stages.STAGE_KEYS[-1]
        seconds[last] = last_stage["step_seconds"]
        peaks[last] = {"rss": last_stage["peak_rss_bytes"] or None, "cuda": last_stage["peak_cuda_bytes"] or None}
        film_seconds = time.time() - min(starts) if starts else sum(seconds.values())
        from sparkle_motion_dagster.resources.selection import configured_resources
        from sparkle_motion_dagster.store.run_files import load_run_plan

        return estimates.record_film(store.root, run_id=run_id, plan=load_run_plan(store, run_id),
                                     backends=estimates.backends_of(configured_resources()), stage_seconds=seconds,
                                     peaks=peaks, film_seconds=film_seconds)
    except Exception as error:  # noqa: BLE001 - the film is made; its timing is a nicety
        context.log.warning(f"could not record the film's timings: {error}")
        return None
