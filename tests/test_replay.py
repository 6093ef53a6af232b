"""Replay: a new run filmed from a run's recorded plan, seeds and settings makes the same files."""

import hashlib
import json
from pathlib import Path

import pytest
from test_provenance import LANTERN, cli, run_id_of

MEDIA = (".png", ".wav", ".mp4", ".srt", ".vtt")


def contents(run_dir: Path) -> dict[str, bytes]:
    records = [json.loads(p.read_text()) for p in (run_dir / ".provenance").glob("*/*.json")]
    return {r["path"]: (run_dir / r["path"]).read_bytes() for r in records}


def assert_same_film(original: tuple[str, Path], replay: tuple[str, Path]) -> None:
    (old_id, old_dir), (new_id, new_dir) = original, replay
    old, new = contents(old_dir), contents(new_dir)
    assert set(old) == set(new) and len(old) >= 20
    for path, data in old.items():
        if path.endswith(MEDIA):
            assert hashlib.sha256(data).digest() == hashlib.sha256(new[path]).digest(), path
        elif path == "plan_intake/plan_validation.json":  # its cost estimate grows with the history
            old_report, new_report = json.loads(data), json.loads(new[path])
            assert old_report.pop("estimate") != new_report.pop("estimate")
            assert old_report == new_report
        else:  # manifests name their run: identical once the run id is swapped
            assert data.replace(old_id.encode(), new_id.encode()) == new[path], path


@pytest.mark.slow
def test_replay_makes_byte_identical_files_also_after_a_regeneration(tmp_path):
    runs = tmp_path / "state" / "artifacts" / "runs"
    original = run_id_of(cli("run", "--plan", str(LANTERN), "--size", "160x90", cwd=tmp_path))

    out = cli("replay", original, cwd=tmp_path)
    first = run_id_of(out)
    assert first != original and f"replaying {original} as {first}" in out
    assert f"video_final: {runs / first / 'finalize' / 'video_final.mp4'}" in out
    old, new = contents(runs / original), contents(runs / first)
    identical = [path for path, data in old.items() if data.replace(original.encode(), first.encode()) == new.get(path)]
    assert len(identical) == len(old) - 1  # all but the plan intake report, whose estimate differs
    assert f"identical: {len(identical)}/{len(old)} file(s)" in out
    assert "differs only in its cost estimate (the history has grown): plan_intake/plan_validation.json" in out
    assert_same_film((original, runs / original), (first, runs / first))

    cli("regenerate", original, "--shot", "shot_002", "--seed", "77", cwd=tmp_path)
    regenerated = contents(runs / original)["video_clips/shot_002.mp4"]
    assert regenerated != contents(runs / first)["video_clips/shot_002.mp4"]  # the new seed made another clip

    second = run_id_of(cli("replay", original, cwd=tmp_path))
    assert_same_film((original, runs / original), (second, runs / second))
    record = json.loads((runs / second / ".provenance" / "video_clips" / "shot_002.mp4.json").read_text())
    assert record["seed"] == 77 and record["run_id"] == second
    request = json.loads((runs / second / "request" / "plan_request.json").read_text())
    assert request["source"] == f"replay:{original}"
