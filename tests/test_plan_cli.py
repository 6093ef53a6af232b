"""`validate`, `run --size` and `submit --size` on plans that cannot be read or do not fit the schema."""

import json

import pytest

from sparkle_motion_dagster.cli.main import main


def write(tmp_path, content: str, name: str = "plan.json"):
    path = tmp_path / name
    path.write_text(content)
    return path


@pytest.mark.parametrize("content,expected", [
    ('{"title": ' + "1" * 5000 + "}", "a number has more than 4300 digits"),
    ("[" * 50_000 + "]" * 50_000, "nest deeper than 64 levels"),
])
def test_validate_names_the_file_and_the_problem(tmp_path, capsys, content, expected):
    path = write(tmp_path, content)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path} is not usable JSON" in err and expected in err and "Traceback" not in err


def test_validate_json_prints_every_problem_as_json(tmp_path, capsys, sample_plan):
    sample_plan["shots"][0]["duration_sec"] = "long"
    sample_plan["shots"][1]["start_base_image_id"] = "frame_000"
    sample_plan["dialogue_timeline"][0]["character_id"] = "ghost"
    path = write(tmp_path, json.dumps(sample_plan))
    assert main(["validate", "--json", str(path)]) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["valid"] is False and answer["file"] == str(path)
    assert {p["path"] for p in answer["problems"]} == {
        "shots[0].duration_sec", "shots[1].start_base_image_id", "dialogue_timeline[0].character_id"}
    assert all(p["reason"] for p in answer["problems"])


def test_validate_json_prints_a_file_it_cannot_read_as_json(tmp_path, capsys):
    path = write(tmp_path, "{nope")
    assert main(["validate", "--json", str(path)]) == 2
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    assert problem["path"] == "" and "is not valid JSON" in problem["reason"]


@pytest.mark.parametrize("command", ["run", "submit"])
@pytest.mark.parametrize("document,expected", [
    ([1, 2], "a plan must be a JSON object, got list"),
    ({"validated_plan": {"render_profile": "big"}}, "validated_plan.render_profile"),
    ({"validated_plan": {"render_profile": {"video": 7}}}, "validated_plan.render_profile.video"),
])
def test_size_on_a_malformed_plan_is_a_validation_error(tmp_path, capsys, isolated_state, command, document,
                                                        expected):
    path = write(tmp_path, json.dumps(document))
    assert main([command, "--plan", str(path), "--size", "64x64"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "AttributeError" not in err
    assert not (isolated_state / "artifacts" / "runs").exists()
