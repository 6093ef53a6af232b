import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkle_motion_dagster.film.plan import (
    DialogueEntry,
    PlanInputError,
    PlanValidationError,
    SilenceEntry,
    parse_plan_document,
    plan_json_schema,
    read_json_file,
    validate_plan,
    with_video_size,
)


def issues_of(data) -> dict[str, str]:
    with pytest.raises(PlanValidationError) as info:
        validate_plan(data)
    return {issue.path: issue.reason for issue in info.value.issues}


def test_seed_sample_is_valid_and_normalized(sample_plan):
    plan = validate_plan(sample_plan)
    assert plan.runtime_sec == 17.5
    timeline = [(type(e).__name__, e.start_time_sec, round(e.end_time_sec, 6)) for e in plan.dialogue_timeline]
    assert timeline == [
        ("SilenceEntry", 0.0, 8.4),
        ("DialogueEntry", 8.4, 11.0),
        ("SilenceEntry", 11.0, 11.2),
        ("DialogueEntry", 11.2, 13.4),
        ("SilenceEntry", 13.4, 17.5),
    ]
    assert sum(e.duration_sec for e in plan.dialogue_timeline) == pytest.approx(17.5)
    assert [line_id for line_id, _ in plan.dialogue_lines()] == ["line_000", "line_001"]
    # extra keys in render_profile and metadata survive
    assert plan.render_profile.video.model_extra == {"runtime": "wan_v2.1_default"}
    assert plan.metadata["seed"] == "12345"


def test_envelope_and_bare_plan_give_the_same_plan(sample_envelope, sample_plan):
    from_envelope = parse_plan_document(sample_envelope)
    bare = parse_plan_document(sample_plan)
    assert from_envelope.plan == bare.plan
    assert from_envelope.request == {"title": "Rooftop Revelations",
                                     "prompt": "Two friends on a neon rooftop reconcile before sunrise."}
    assert bare.request is None


def test_normalization_is_idempotent(sample_plan):
    once = validate_plan(sample_plan)
    twice = validate_plan(once.model_dump(mode="json"))
    assert once == twice
    assert once.plan_id() == twice.plan_id()


def test_base_image_count_must_be_shots_plus_one(sample_plan):
    sample_plan["base_images"].pop()
    sample_plan["shots"][1]["end_base_image_id"] = "frame_001"
    found = issues_of(sample_plan)
    assert "expected len(shots) + 1 = 3 base images, got 2" in found["base_images"]


def test_shot_must_start_and_end_on_neighbouring_base_images(sample_plan):
    sample_plan["shots"][1]["start_base_image_id"] = "frame_000"
    sample_plan["shots"][0]["end_base_image_id"] = "frame_002"
    found = issues_of(sample_plan)
    assert found["shots[1].start_base_image_id"] == "must be base_images[1].id 'frame_001', got 'frame_000'"
    assert found["shots[0].end_base_image_id"] == "must be base_images[1].id 'frame_001', got 'frame_002'"


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "..", ".", "", "x" * 129, "a b", "evil\\name", "shot..1"])
def test_ids_must_be_safe_path_components(sample_plan, bad_id):
    sample_plan["shots"][0]["id"] = bad_id
    found = issues_of(sample_plan)
    assert "shots[0].id" in found


def test_duplicate_ids_are_rejected(sample_plan):
    sample_plan["characters"][1]["id"] = "ava"
    sample_plan["dialogue_timeline"][1]["character_id"] = "ava"
    assert issues_of(sample_plan)["characters[1].id"] == "duplicate id 'ava'"


def test_unknown_dialogue_character(sample_plan):
    sample_plan["dialogue_timeline"][1]["character_id"] = "nobody"
    assert "unknown character 'nobody'" in issues_of(sample_plan)["dialogue_timeline[1].character_id"]


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), "long"])
def test_durations_must_be_positive_numbers(sample_plan, value):
    sample_plan["shots"][0]["duration_sec"] = value
    assert "shots[0].duration_sec" in issues_of(sample_plan)


def test_overlapping_timeline_entries(sample_plan):
    sample_plan["dialogue_timeline"][1]["start_time_sec"] = 10.0
    reason = issues_of(sample_plan)["dialogue_timeline[1].start_time_sec"]
    assert "overlapping dialogue_timeline[0]" in reason and "11.0" in reason


def test_timeline_must_end_within_the_runtime(sample_plan):
    sample_plan["dialogue_timeline"][2]["duration_sec"] = 5.0
    assert "after the total shot runtime 17.5s" in issues_of(sample_plan)["dialogue_timeline[2].duration_sec"]


def test_render_profile_model_id_is_required(sample_plan):
    del sample_plan["render_profile"]["video"]["model_id"]
    assert issues_of(sample_plan)["render_profile.video.model_id"] == "Field required"
    del sample_plan["render_profile"]
    assert issues_of(sample_plan)["render_profile"] == "Field required"


def test_every_problem_is_reported_at_once(sample_plan):
    sample_plan["shots"][0]["end_base_image_id"] = "frame_009"
    sample_plan["dialogue_timeline"][0]["character_id"] = "ghost"
    sample_plan["base_images"][2]["id"] = "frame_001"
    found = issues_of(sample_plan)
    assert {"shots[0].end_base_image_id", "dialogue_timeline[0].character_id", "base_images[2].id"} <= set(found)


def test_unknown_fields_are_named(sample_plan):
    sample_plan["shots"][0]["is_talking_closup"] = True
    assert issues_of(sample_plan)["shots[0].is_talking_closup"] == "Extra inputs are not permitted"


def test_envelope_errors_are_prefixed(sample_envelope):
    sample_envelope["validated_plan"]["shots"][0]["duration_sec"] = -1
    with pytest.raises(PlanValidationError) as info:
        parse_plan_document(sample_envelope)
    assert info.value.issues[0].path == "validated_plan.shots[0].duration_sec"


def test_json_schema_names_the_plan_fields():
    schema = plan_json_schema()
    assert set(schema["required"]) == {"title", "base_images", "shots", "render_profile"}
    assert "dialogue_timeline" in schema["properties"]


def test_gap_at_the_end_is_filled(sample_plan):
    sample_plan["dialogue_timeline"].pop()  # drop the trailing silence
    plan = validate_plan(sample_plan)
    last = plan.dialogue_timeline[-1]
    assert isinstance(last, SilenceEntry) and last.start_time_sec == 13.4 and last.duration_sec == pytest.approx(4.1)


def test_unsorted_timeline_is_sorted(sample_plan):
    sample_plan["dialogue_timeline"].reverse()
    plan = validate_plan(sample_plan)
    starts = [e.start_time_sec for e in plan.dialogue_timeline]
    assert starts == sorted(starts)
    assert isinstance(plan.dialogue_timeline[1], DialogueEntry)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
PLAN_PATHS = [
    ("title",), ("shots",), ("base_images",), ("render_profile",), ("dialogue_timeline",),
    ("shots", 0, "duration_sec"), ("shots", 1, "start_base_image_id"), ("shots", 0, "id"),
    ("base_images", 2, "id"), ("base_images", 0, "prompt"), ("dialogue_timeline", 0, "start_time_sec"),
    ("dialogue_timeline", 1, "type"), ("dialogue_timeline", 0, "character_id"), ("render_profile", "video"),
    ("render_profile", "video", "model_id"), ("render_profile", "video", "max_fps"), ("characters", 0, "id"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PLAN_PATHS), value=json_values)
def test_corrupted_plans_fail_only_with_validation_errors(sample_plan, path, value):
    data = copy.deepcopy(sample_plan)
    target = data
    for key in path[:-1]:
        target = target[key]
    if target[path[-1]] == value:
        return
    target[path[-1]] = value
    try:
        plan = validate_plan(data)
    except PlanValidationError as exc:
        assert exc.issues and all(issue.reason for issue in exc.issues)
        return
    # Anything accepted must be a coherent plan again.
    assert len(plan.base_images) == len(plan.shots) + 1
    json.dumps(plan.model_dump(mode="json"))


@settings(max_examples=100, deadline=None)
@given(st.one_of(json_values, st.lists(json_values), st.text()))
def test_arbitrary_json_never_raises_anything_else(value):
    with pytest.raises(PlanValidationError):
        validate_plan(value)


@pytest.mark.parametrize("field,index", [("shots", 0), ("base_images", 1), ("characters", 0)])
def test_ids_with_a_trailing_newline_are_refused(sample_plan, field, index):
    sample_plan[field][index]["id"] += "\n"
    assert "must be 1-128 characters" in issues_of(sample_plan)[f"{field}[{index}].id"]


def test_a_field_error_does_not_hide_the_cross_reference_errors(sample_plan):
    sample_plan["shots"][0]["duration_sec"] = -1
    sample_plan["shots"][1]["start_base_image_id"] = "frame_000"
    sample_plan["dialogue_timeline"][0]["character_id"] = "ghost"
    found = issues_of(sample_plan)
    assert found["shots[0].duration_sec"] == "Input should be greater than 0"
    assert found["shots[1].start_base_image_id"] == "must be base_images[1].id 'frame_001', got 'frame_000'"
    assert found["dialogue_timeline[0].character_id"].startswith("unknown character 'ghost'")
    # the runtime is unknown while a duration is bad: no guess about where the film ends
    assert not any(path.endswith(".duration_sec") and path.startswith("dialogue") for path in found)


def test_an_item_that_is_not_an_object_hides_nothing_else(sample_plan):
    sample_plan["characters"][1] = "miko"
    sample_plan["base_images"][2]["prompt"] = ""
    sample_plan["shots"][0]["end_base_image_id"] = "frame_009"
    found = issues_of(sample_plan)
    assert {"characters[1]", "base_images[2].prompt", "shots[0].end_base_image_id"} <= set(found)
    # with a character unparsed, "unknown character" would be a guess: it is not reported
    assert not any(path.endswith("character_id") for path in found)


def test_a_shot_shorter_than_one_frame_is_refused(sample_plan):
    sample_plan["shots"][0]["duration_sec"] = 0.01
    sample_plan["dialogue_timeline"] = []
    reason = issues_of(sample_plan)["shots[0].duration_sec"]
    assert "no frames at 24 fps" in reason and "0.0416667 s" in reason


def test_a_shot_of_one_frame_is_accepted(sample_plan):
    sample_plan["shots"][0]["duration_sec"] = 1 / 24
    sample_plan["dialogue_timeline"] = []
    validate_plan(sample_plan)


@pytest.mark.parametrize("fps", [1e-9, 0.5, 120.5, 1000])
def test_fps_outside_what_the_encoder_accepts_is_refused(sample_plan, fps):
    sample_plan["render_profile"]["video"]["max_fps"] = fps
    reason = issues_of(sample_plan)["render_profile.video.max_fps"]
    assert reason.startswith("must be between 1 and 120 frames per second")


def test_fps_bounds_are_in_the_schema():
    video = plan_json_schema()["$defs"]["VideoProfile"]["properties"]["max_fps"]
    assert (video["minimum"], video["maximum"]) == (1, 120)


@pytest.mark.parametrize("seed", ["\u00b2", "9" * 5000, 10**400, -1, 2**32, 1.5, True, "12a", " 5", [1]])
def test_seeds_the_renderers_cannot_take_are_refused(sample_plan, seed):
    sample_plan["base_images"][1]["metadata"]["seed"] = seed
    assert "0 <= seed < 2**32" in issues_of(sample_plan)["base_images[1].metadata.seed"]


@pytest.mark.parametrize("seed,expected", [(0, 0), (2**32 - 1, 2**32 - 1), ("99123", 99123), (None, None)])
def test_seeds_in_range_are_accepted(sample_plan, seed, expected):
    sample_plan["base_images"][1]["metadata"]["seed"] = seed
    assert validate_plan(sample_plan).base_images[1].seed == expected


@pytest.mark.parametrize("text", [" ", "\t\n", "...", "?! -- !", "\u00a0\u2026"])
def test_dialogue_with_nothing_to_speak_is_refused(sample_plan, text):
    sample_plan["dialogue_timeline"][1]["text"] = text
    assert "has nothing to speak" in issues_of(sample_plan)["dialogue_timeline[1].text"]


@pytest.mark.parametrize("text", ["Oui.", "42!", "\u4f60\u597d"])
def test_short_dialogue_in_any_script_is_accepted(sample_plan, text):
    sample_plan["dialogue_timeline"][1]["text"] = text
    validate_plan(sample_plan)


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_metadata_beyond_a_sane_depth_or_size_is_refused(sample_plan):
    sample_plan["metadata"] = nested(32)
    sample_plan["base_images"][0]["metadata"] = {"notes": "x" * 64 * 1024}
    found = issues_of(sample_plan)
    assert "more than 8 levels deep" in found["metadata"]
    assert "at most 16384" in found["base_images[0].metadata"]


def test_metadata_json_cannot_carry_is_refused(sample_plan):
    """Infinity and NaN parse from Python but do not survive the manifests' JSON round trip."""
    sample_plan["metadata"]["extra"] = float("inf")
    sample_plan["base_images"][0]["metadata"] = {"weight": float("nan")}
    found = issues_of(sample_plan)
    assert "infinity or NaN" in found["metadata"]
    assert "infinity or NaN" in found["base_images[0].metadata"]


def test_metadata_of_a_sane_depth_and_size_is_kept(sample_plan):
    sample_plan["metadata"]["tree"] = nested(7)
    sample_plan["metadata"]["notes"] = "x" * 8 * 1024
    assert validate_plan(sample_plan).metadata["tree"] == nested(7)


@pytest.mark.parametrize("content,expected", [
    ('{"title": ' + "7" * 5000 + "}", "a number has more than 4300 digits"),
    ("[" * 100_000, "nest deeper than 64 levels"),
    ('{"a": ' * 200 + "1" + "}" * 200, "nest deeper than 64 levels"),
    (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
])
def test_json_reading_errors_name_the_file_and_the_problem(tmp_path, content, expected):
    path = tmp_path / "plan.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PlanInputError) as info:
        read_json_file(path)
    assert str(path) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("document", [[1, 2], "plan", {"render_profile": "big"}, {"render_profile": {"video": 5}},
                                      {"validated_plan": [1]}, {"validated_plan": {"render_profile": None}}])
def test_frame_size_on_a_malformed_plan_leaves_it_for_validation(document):
    sized = with_video_size(document, 64, 64)
    assert sized == document
    with pytest.raises(PlanValidationError):
        parse_plan_document(sized)


def test_frame_size_is_set_on_the_plan_of_an_envelope(sample_envelope):
    sized = with_video_size(sample_envelope, 64, 96)
    assert parse_plan_document(sized).plan.render_profile.video.width == 64
    assert "width" not in sample_envelope["validated_plan"]["render_profile"]["video"]
