"""The loaded definitions against the stored snapshot: an asset, dependency, job, sensor, check or
resource that appears, disappears or changes shows as a diff. Regenerate after a deliberate change:
`make snapshot` (or `SPARKLE_UPDATE_SNAPSHOTS=1 make test`)."""

import difflib
import json
import os

import pytest
from definitions_snapshot import SNAPSHOT, current, flat_lines, write


def test_the_definitions_match_the_stored_snapshot():
    snapshot = current()
    if os.environ.get("SPARKLE_UPDATE_SNAPSHOTS") == "1":
        write(snapshot)
    assert SNAPSHOT.exists(), f"no stored snapshot: create it with `make snapshot` ({SNAPSHOT})"
    stored = json.loads(SNAPSHOT.read_text())
    if stored != snapshot:
        diff = "".join(difflib.unified_diff(flat_lines(stored), flat_lines(snapshot), n=0,
                                            fromfile="tests/snapshots/definitions.json (stored)",
                                            tofile="the definitions as loaded now"))
        pytest.fail("the loaded definitions differ from the stored snapshot; if the change is deliberate, "
                    f"run `make snapshot` and commit the file\n{diff}", pytrace=False)


def test_the_snapshot_sees_what_it_promises_to_guard():
    """The snapshot is not vacuous: it holds the graph the README describes."""
    snapshot = current()
    assert snapshot["assets"]["video_final"]["deps"] == ["dialogue_audio", "video_raw_concat"]
    assert snapshot["assets"]["video_clips"]["pools"] == ["gpu"]
    # The film job runs the automated quality checks, not the manual review gate (that runs on its own).
    assert "video_clips:clips_sound" in snapshot["jobs"]["film"]["checks"]
    assert "video_final:approved_by_reviewer" not in snapshot["jobs"]["film"]["checks"]
    assert "review_gate" not in snapshot["jobs"]
    assert snapshot["asset_checks"]["video_clips:clips_sound"]["blocking"] is True
    assert snapshot["jobs"]["plan_dry_run"]["assets"] == ["movie_plan"]
    assert snapshot["sensors"]["plan_inbox"]["jobs"] == ["film"]
    assert snapshot["asset_checks"]["video_final:approved_by_reviewer"]["blocking"] is True
    assert snapshot["asset_checks"]["video_final:approved_by_reviewer"]["partitions"]["name"] == "run_id"
    assert {"artifact_store", "keyframes", "clips", "speech", "lipsync", "planner"} <= set(snapshot["resources"])


SHAPE = """
import json, sys
sys.path.insert(0, "tests")
from definitions_snapshot import current
from sparkle_motion_dagster.definitions import defs

snapshot = current()
executors = {snapshot.pop("executor")} | {job.pop("executor") for job in snapshot["jobs"].values()}
snapshot["ops"] = {job.name: sorted([op.name, dict(op.tags), op.pool] for node in job.graph.node_defs
                                    for op in getattr(node, "node_defs", [node]))
                   for job in defs.resolve_all_job_defs()}
print(json.dumps({"executors": sorted(executors), "definitions": snapshot}, sort_keys=True))
"""


@pytest.mark.slow
def test_every_executor_gets_the_same_graph():
    """SPARKLE_EXECUTOR picks how steps run, never what they are: assets, checks, jobs, sensors,
    resources, and every op with its tags and pool are the same under each executor."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    shapes = {}
    for executor in ("in_process", "multiprocess", "celery"):
        env = {**os.environ, "PYTHONPATH": str(root), "SPARKLE_EXECUTOR": executor,
               "SPARKLE_CELERY_BROKER": "redis://127.0.0.1:9/0"}
        result = subprocess.run([sys.executable, "-c", SHAPE], env=env, capture_output=True, text=True, cwd=root)
        assert result.returncode == 0, result.stderr[-2000:]
        shapes[executor] = json.loads(result.stdout)
    assert [shapes[e]["executors"] for e in shapes] == [["in_process"], ["multiprocess"], ["celery"]]
    assert shapes["in_process"]["definitions"]["ops"]["film"], "no ops seen: the comparison would be vacuous"
    for executor in ("multiprocess", "celery"):
        assert shapes[executor]["definitions"] == shapes["in_process"]["definitions"], executor
