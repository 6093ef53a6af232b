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
    assert snapshot["jobs"]["review_gate"]["assets"] == []
    assert snapshot["asset_checks"]["video_clips:clips_sound"]["blocking"] is True
    assert snapshot["jobs"]["plan_dry_run"]["assets"] == ["movie_plan"]
    assert snapshot["sensors"]["plan_inbox"]["jobs"] == ["film"]
    assert snapshot["asset_checks"]["video_final:approved_by_reviewer"]["blocking"] is True
    assert {"artifact_store", "keyframes", "clips", "speech", "lipsync", "planner"} <= set(snapshot["resources"])
