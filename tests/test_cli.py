"""The sparkle-motion command as a user runs it: a real process, a private state folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE
from sparkle_motion_dagster.stages import STAGE_KEYS

from sparkle_motion_dagster.stages import STAGE_KEYS


def cli(*args, cwd: Path, env_extra=None):
    env = {**os.environ, "SPARKLE_STATE_DIR": str(cwd / "state"), **(env_extra or {})}
    env.pop("ARTIFACTS_FS_ROOT", None)
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")} if path.exists() else set()


def test_validate_prints_a_summary(tmp_path):
    result = cli("validate", str(SAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Rooftop Revelations" in result.stdout and "dialogue lines: 2" in result.stdout
    assert "runtime:        17.5 s" in result.stdout
    as_json = json.loads(cli("validate", "--json", str(SAMPLE), cwd=tmp_path).stdout)
    assert as_json["summary"]["shots"] == 2


def test_validate_lists_every_error_without_a_traceback(tmp_path, sample_plan):
    sample_plan["shots"][1]["start_base_image_id"] = "frame_000"
    sample_plan["dialogue_timeline"][0]["character_id"] = "nobody"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sample_plan))
    result = cli("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "shots[1].start_base_image_id" in result.stderr and "dialogue_timeline[0].character_id" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content,expected", [
    (None, "plan file not found"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "a plan must be a JSON object"),
])
def test_unreadable_plans(tmp_path, content, expected):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    for command in (["validate", str(path)], ["run", "--plan", str(path)]):
        result = cli(*command, cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_schema_is_json(tmp_path):
    schema = json.loads(cli("schema", cwd=tmp_path).stdout)
    assert schema["title"] == "MoviePlan"


def test_undeclared_model_fails_before_anything_is_written(tmp_path):
    result = cli("run", "--plan", str(SAMPLE), cwd=tmp_path)
    assert result.returncode == 2
    assert "wan-2.1" in result.stderr and "--preview" in result.stderr and "VIDEOS_WAN_MODEL" in result.stderr
    assert not (tmp_path / "state" / "artifacts" / "runs").exists()


def test_unsafe_ids_are_refused_and_nothing_escapes(tmp_path, sample_plan):
    sample_plan["shots"][0]["id"] = "../../escape"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sample_plan))
    before = files_under(tmp_path)
    result = cli("run", "--plan", str(bad), "--preview", cwd=tmp_path)
    assert result.returncode == 2 and "shots[0].id" in result.stderr
    assert {p for p in files_under(tmp_path) - before if "state" not in p.relative_to(tmp_path).parts} == set()
    assert not (tmp_path / "state" / "artifacts" / "runs").exists()


@pytest.mark.parametrize("run_id,expected", [("run_0badc0de", "never submitted"), ("../../etc", "run_id")])
def test_unknown_or_unsafe_run_ids(tmp_path, run_id, expected):
    result = cli("run", "--run-id", run_id, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_plan_writes_an_envelope_and_never_overwrites(tmp_path):
    out = tmp_path / "my_plan.json"
    first = cli("plan", "--prompt", "A lighthouse keeper meets a storm.", "--title", "Keeper", "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    envelope = json.loads(out.read_text())
    assert set(envelope) == {"request", "validated_plan", "generated_at", "metadata", "schema_uri"}
    assert envelope["validated_plan"]["metadata"]["planner"] == "template"
    out.write_text("precious edits")
    second = cli("plan", "--prompt", "x", "--title", "Keeper", "--out", str(out), cwd=tmp_path)
    assert second.returncode == 2 and "already exists" in second.stderr
    assert out.read_text() == "precious edits"


def test_template_planner_is_deterministic(tmp_path):
    outs = []
    for name in ("a.json", "b.json"):
        cli("plan", "--prompt", "Two rivals share a train cabin.", "--title", "Cabin", "--seed", "7",
            "--out", str(tmp_path / name), cwd=tmp_path)
        outs.append(json.loads((tmp_path / name).read_text())["validated_plan"])
    assert outs[0] == outs[1]
    plan = outs[0]
    assert len(plan["base_images"]) == len(plan["shots"]) + 1 >= 3
    assert any(e["type"] == "silence" for e in plan["dialogue_timeline"])


@pytest.mark.slow
def test_run_from_a_prompt_films_into_the_persistent_instance(tmp_path):
    result = cli("run", "--prompt", "A lighthouse keeper meets a storm.", "--title", "Keeper", "--size", "160x90",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line and not line.startswith(" "))
    final = Path(lines["video_final"])
    assert final.is_absolute() and final.exists()
    assert final.is_relative_to(tmp_path / "state" / "artifacts" / "runs" / lines["run_id"])
    for stage in STAGE_KEYS:
        assert f"  {stage}" in result.stdout
    # The run is recorded in the persistent Dagster home, so the UI shows it later.
    home = tmp_path / "state" / "dagster_home"
    assert (home / "dagster.yaml").exists() and any(home.rglob("*.db"))
