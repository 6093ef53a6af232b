"""The loaded Dagster definitions as plain JSON: what `tests/test_definitions_snapshot.py` compares
against `tests/snapshots/definitions.json`.

Regenerate the stored snapshot after a deliberate change with ``make snapshot`` (this script) or
``SPARKLE_UPDATE_SNAPSHOTS=1 make test``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "definitions.json"


def _partitions(partitions_def) -> dict[str, Any] | None:
    if partitions_def is None:
        return None
    return {"type": type(partitions_def).__name__, "name": getattr(partitions_def, "name", None)}


def _retry(policy) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {"max_retries": policy.max_retries, "delay": policy.delay,
            "backoff": policy.backoff.value if policy.backoff else None}


def _retries(assets_def) -> Any:
    """The asset's retry policy; for an asset backed by a graph of ops, each op's."""
    node = assets_def.node_def
    ops = getattr(node, "node_defs", None)
    if ops is None:
        return _retry(node.retry_policy)
    return {op.name: _retry(op.retry_policy) for op in ops}


def _job_config(defs, job) -> Any:
    """The run config a job is defined with (the UI's launchpad default), if any."""
    declared = next((j for j in defs.jobs or [] if getattr(j, "name", None) == job.name), None)
    config = getattr(declared, "config", None) if declared is not None else None
    return config if config is not None else job.run_config


def describe(defs) -> dict[str, Any]:
    """Asset keys with their deps, group, kinds, partitions, pool and retries; jobs with what they select;
    sensors; asset checks; resource keys; the executor."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": _partitions(node.partitions_def),
            "pools": sorted(node.pools or []),
            "retry_policy": _retries(node.assets_def),
            "resources": sorted(node.assets_def.required_resource_keys),
            "checks": sorted(check.name for check in node.check_keys),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        node = graph.get(check_key)
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {
            "asset": check_key.asset_key.to_user_string(),
            "blocking": bool(node.blocking),
            "partitions": _partitions(node.partitions_def),
        }
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit job of every asset
            continue
        layer = job.asset_layer
        jobs[job.name] = {
            "assets": sorted(key.to_user_string() for key in layer.selected_asset_keys),
            "checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in layer.asset_graph.asset_check_keys),
            "partitions": _partitions(job.partitions_def),
            "config": _job_config(defs, job),
            "executor": job.executor_def.name,
        }
    sensors = {}
    for sensor in sorted(defs.sensors or [], key=lambda s: s.name):
        sensors[sensor.name] = {
            "jobs": sorted(job.name for job in sensor.jobs) if sensor.has_jobs else [],
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
        }
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "sensors": sensors,
        "resources": sorted(defs.resources or {}),
        "executor": defs.executor.name if defs.executor is not None else None,
    }


def render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True) + "\n"


def flat_lines(value: Any, path: str = "") -> list[str]:
    """One line per leaf, named by its full path (``assets.video_clips.pools = ["gpu"]``): a diff of
    these says what changed where without needing the surrounding JSON."""
    if isinstance(value, dict) and value:
        return [line for key in sorted(value) for line in flat_lines(value[key], f"{path}.{key}" if path else key)]
    return [f"{path} = {json.dumps(value, sort_keys=True)}\n"]


def current() -> dict[str, Any]:
    from sparkle_motion_dagster.definitions import defs

    return describe(defs)


def write(snapshot: dict[str, Any] | None = None) -> Path:
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(render(current() if snapshot is None else snapshot))
    return SNAPSHOT


if __name__ == "__main__":
    print(f"wrote {write().relative_to(Path.cwd()) if Path.cwd() in SNAPSHOT.parents else SNAPSHOT}")
    sys.exit(0)
