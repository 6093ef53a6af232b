"""Characters that stay themselves: who is in each keyframe, their reference portraits, and keyframes
drawn from them (the embedded storyboard here; SDXL's IP-Adapter in test_characters_ip_adapter.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from film_checks import sparkle, use_state
from sparkle_motion_dagster.film.cast import mentioned
from sparkle_motion_dagster.film.plan import PlanValidationError, load_plan_document, validate_plan


class Person:
    def __init__(self, id: str, name: str):
        self.id, self.name = id, name


CAST = [Person("ava", "Ava Kowalski"), Person("zoe", "Zoë"), Person("old_tom", "Tom")]


@pytest.mark.parametrize(("prompt", "expected"), [
    ("Ava turns to the window", ["ava"]),
    ("AVA and zoe on the pier", ["ava", "zoe"]),
    ("Zoe waves; Ava Kowalski does not", ["ava", "zoe"]),
    ("Zoë, alone", ["zoe"]),
    ("A walk through Avalon at dawn", []),  # never inside a longer word
    ("The savant and the tomcat", []),
    ("old tom lights the lamp", ["old_tom"]),
    ("Tom's lantern", ["old_tom"]),
])
def test_the_cast_of_a_keyframe_is_read_from_its_prompt(prompt, expected):
    assert mentioned(prompt, CAST) == expected


def plan_with(frames: list[dict], **changes) -> dict:
    """A plan on the embedded animatic with one shot between each pair of ``frames``."""
    plan = {
        "title": "Pier",
        "characters": [{"id": "ava", "name": "Ava", "description": "a woman in a red coat"},
                       {"id": "bo", "name": "Bo", "description": "a boy with black hair in a yellow raincoat"}],
        "base_images": [{"id": f"frame_{i:03d}", "metadata": {"seed": 10 + i}, **frame} for i, frame in enumerate(frames)],
        "shots": [{"id": f"shot_{i + 1:03d}", "duration_sec": 1.0, "start_base_image_id": f"frame_{i:03d}",
                   "end_base_image_id": f"frame_{i + 1:03d}"} for i in range(len(frames) - 1)],
        "dialogue_timeline": [{"type": "dialogue", "character_id": "ava", "text": "The boats are back.",
                               "start_time_sec": 0.2, "duration_sec": 1.5}],
        "render_profile": {"video": {"model_id": "animatic", "max_fps": 12, "width": 160, "height": 96}},
    }
    plan.update(changes)
    return plan


FRAMES = [{"prompt": "Ava on the pier at dusk"}, {"prompt": "Gulls over empty water"},
          {"prompt": "Rain on the harbour wall"}, {"prompt": "Bo runs along the wall"},
          {"prompt": "The last boat docks", "characters": []}]


def test_listed_characters_are_checked_and_absent_ones_inferred():
    plan = validate_plan(plan_with(FRAMES))
    assert [image.characters for image in plan.base_images] == [["ava"], [], [], ["bo"], []]
    with pytest.raises(PlanValidationError) as error:
        validate_plan(plan_with([{"prompt": "x", "characters": ["ava", "ava"]}, {"prompt": "y", "characters": ["cy"]}]))
    messages = [str(issue) for issue in error.value.issues]
    assert "base_images[0].characters[1]: 'ava' is listed twice" in messages
    assert "base_images[1].characters[0]: 'cy' is not a character of this plan; characters: ava, bo" in messages


def test_a_reference_image_is_read_relative_to_the_plan_file(tmp_path):
    (tmp_path / "refs").mkdir()
    Image.new("RGB", (40, 60), (200, 10, 10)).save(tmp_path / "refs" / "ava.png")
    plan = plan_with(FRAMES)
    plan["characters"][0]["reference_image"] = "refs/ava.png"
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    document = load_plan_document(tmp_path / "plan.json")
    assert document.plan.characters[0].reference_image == str((tmp_path / "refs" / "ava.png").resolve())


def film(tmp_path: Path, plan: dict, name: str) -> tuple[str, Path]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(plan))
    result = sparkle("run", "--plan", path)
    assert result.code == 0, result.stdout + result.stderr
    return result.run_id, tmp_path / "state" / "artifacts" / "runs" / result.run_id


def keyframes(run: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((run / "base_images").glob("frame_*.png"))}


def clips(run: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((run / "video_clips").glob("shot_*.mp4"))}


@pytest.fixture(scope="module")
def two_films(tmp_path_factory):
    """One plan filmed twice: Ava's reference image red, then blue."""
    folder = tmp_path_factory.mktemp("characters")
    Image.new("RGB", (48, 64), (210, 30, 30)).save(folder / "ava_red.png")
    Image.new("RGB", (64, 48), (30, 60, 210)).save(folder / "ava_blue.png")
    with pytest.MonkeyPatch.context() as patch:
        use_state(patch, folder / "state")
        runs = {}
        for colour in ("red", "blue"):
            plan = plan_with(FRAMES)
            plan["characters"][0]["reference_image"] = f"ava_{colour}.png"
            runs[colour] = film(folder, plan, f"plan_{colour}")
        yield folder, runs


def test_each_character_gets_a_portrait_and_keyframes_change_only_where_it_is(two_films):
    _, runs = two_films
    (_, red), (_, blue) = runs["red"], runs["blue"]
    for run in (red, blue):
        assert sorted(p.name for p in (run / "character_refs").glob("*.png")) == ["ava.png", "bo.png"]
        assert Image.open(run / "character_refs" / "ava.png").size == (96, 96)  # cover-fitted to a square
    manifest = json.loads((red / "character_refs" / "character_refs_manifest.json").read_text())
    sources = {e["character_id"]: e["source"] for e in manifest["characters"]}
    assert sources == {"ava": "reference_image", "bo": "rendered"}
    assert (red / "character_refs" / "bo.png").read_bytes() == (blue / "character_refs" / "bo.png").read_bytes()
    before, after = keyframes(red), keyframes(blue)
    assert [frame for frame in before if before[frame] != after[frame]] == ["frame_000"]  # Ava is only there
    validation = json.loads((red / "plan_intake" / "plan_validation.json").read_text())
    assert validation["cast"]["inferred_from_prompts"] == {"frame_000": ["ava"], "frame_001": [], "frame_002": [],
                                                           "frame_003": ["bo"]}


def test_a_keyframes_provenance_lists_the_portraits_it_used(two_films):
    _, runs = two_films
    _, red = runs["red"]
    record = json.loads((red / ".provenance" / "base_images" / "frame_003.png.json").read_text())
    portrait = red / "character_refs" / "bo.png"
    from sparkle_motion_dagster.store.storage import sha256_file

    assert {"path": "character_refs/bo.png", "sha256": sha256_file(portrait)} in record["inputs"]
    assert [r["character_id"] for r in record["settings"]["references"]] == ["bo"]
    nobody = json.loads((red / ".provenance" / "base_images" / "frame_001.png.json").read_text())
    assert "references" not in nobody["settings"]


def test_regenerating_a_character_redraws_exactly_what_it_is_in(two_films):
    folder, runs = two_films
    run_id, run = runs["blue"]
    frames, shots = keyframes(run), clips(run)
    final = (run / "finalize" / "video_final.mp4").read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        use_state(patch, folder / "state")
        result = sparkle("regenerate", run_id, "--character", "bo", "--seed", "77")
    assert result.code == 0, result.stdout + result.stderr
    assert "bo: regenerating the reference portrait with seed 77, then the keyframes it is in (frame_003)" \
        in result.stdout
    changed_frames = [f for f, data in keyframes(run).items() if data != frames[f]]
    changed_clips = [s for s, data in clips(run).items() if data != shots[s]]
    assert changed_frames == ["frame_003"]
    assert changed_clips == ["shot_003", "shot_004"]  # the two shots that start or end on it
    assert (run / "finalize" / "video_final.mp4").read_bytes() != final
    with pytest.MonkeyPatch.context() as patch:
        use_state(patch, folder / "state")
        refused = sparkle("regenerate", run_id, "--character", "cy")
    assert refused.code != 0 and "--character: 'cy' is not a character" in refused.stdout + refused.stderr


def test_bad_reference_images_are_refused_naming_the_field(tmp_path, monkeypatch):
    use_state(monkeypatch, tmp_path / "state")
    (tmp_path / "not_a_picture.png").write_text("hello")
    plan = plan_with(FRAMES[:3])
    plan["characters"][0]["reference_image"] = "not_a_picture.png"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    result = sparkle("run", "--plan", path)
    assert result.code != 0
    assert "characters[0].reference_image" in result.stdout + result.stderr
    assert "is not a picture" in result.stdout + result.stderr
    plan["characters"][0]["reference_image"] = "portraits/missing.png"
    path.write_text(json.dumps(plan))
    missing = sparkle("run", "--plan", path)
    assert missing.code != 0
    assert "characters[0].reference_image: no such file" in missing.stdout + missing.stderr
    # A path that is not beside the plan file is an artifact path, and must stay under the artifact root
    from sparkle_motion_dagster.film.characters import reference_file
    from sparkle_motion_dagster.store.storage import UnsafeIdError

    with pytest.raises(UnsafeIdError, match="characters\\[0\\].reference_image: '../outside.png' leaves the artifact root"):
        reference_file("../outside.png", artifact_root=tmp_path / "state" / "artifacts",
                       field="characters[0].reference_image")


def test_a_talking_closeup_without_characters_is_warned_about(tmp_path, monkeypatch):
    use_state(monkeypatch, tmp_path / "state")
    plan = plan_with([{"prompt": "Gulls", "characters": []}, {"prompt": "Water", "characters": []},
                      {"prompt": "Sky", "characters": []}])
    plan["shots"][0]["is_talking_closeup"] = True
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    result = sparkle("run", "--mode", "dry", "--plan", path)
    assert result.code == 0, result.stdout + result.stderr
    assert "shots[0] (shot_001) is a talking close-up, but neither of its keyframes" in result.stdout + result.stderr
