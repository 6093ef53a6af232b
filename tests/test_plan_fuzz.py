"""Plans mutated from the bundled sample: either rejected with a field path, or they render."""

import copy
import json
import math

import dagster as dg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.film.plan import (
    MAX_FPS,
    MIN_FPS,
    SEED_LIMIT,
    MoviePlan,
    PlanValidationError,
    speakable,
    summarize,
    validate_plan,
)
from sparkle_motion_dagster.film.timeline import shot_frame_counts
from sparkle_motion_dagster.media.ffmpeg import count_video_frames
from sparkle_motion_dagster.orchestration.runner import film_run, submit_run
from sparkle_motion_dagster.store.run_files import image_seed
from sparkle_motion_dagster.store.storage import ArtifactStore

MUTABLE_PATHS = [
    ("title",), ("metadata",), ("metadata", "extra"), ("characters", 0, "id"), ("characters", 1),
    ("characters", 0, "voice_profile", "rate"), ("base_images", 0, "id"), ("base_images", 1, "prompt"),
    ("base_images", 0, "metadata"), ("base_images", 1, "metadata", "seed"), ("base_images", 2, "metadata", "seed"),
    ("shots", 0, "id"), ("shots", 1, "id"), ("shots", 0, "duration_sec"), ("shots", 1, "duration_sec"),
    ("shots", 1, "end_base_image_id"), ("shots", 0, "is_talking_closeup"), ("dialogue_timeline", 0, "text"),
    ("dialogue_timeline", 1, "text"), ("dialogue_timeline", 0, "start_time_sec"),
    ("dialogue_timeline", 1, "duration_sec"), ("dialogue_timeline", 2, "type"),
    ("dialogue_timeline", 0, "character_id"), ("render_profile", "video", "max_fps"),
    ("render_profile", "video", "width"), ("render_profile", "video", "model_id"), ("render_profile", "images"),
]


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


tricky_values = st.one_of(
    st.sampled_from(["", " ", "...", "?!", "\n", "shot_001\n", "frame_001\n", "run_1234abcd\n", "\u00b2", "9" * 5000,
                     "99123", "-5", "ava", "miko", "frame_001", "silence", "dialogue", "Hello there."]),
    st.sampled_from([0, -1, 1, 2**32 - 1, 2**32, 10**400, 1e-9, 0.01, 1 / 24, 0.5, 7.5, 24, 120, 121, 1e308,
                     math.inf, math.nan, True, None, 64, 63, 65, 7680]),
    st.integers(), st.floats(), st.text(max_size=12), st.booleans(),
    st.sampled_from([nested(8), nested(9), nested(32), {"blob": "x" * 70_000}, {"seed": "12"}, [], [1, [2]]]),
)
mutations = st.lists(st.tuples(st.sampled_from(MUTABLE_PATHS), tricky_values), min_size=1, max_size=3)


def mutate(plan: dict, changes) -> dict:
    data = copy.deepcopy(plan)
    for path, value in changes:
        target = data
        for key in path[:-1]:
            target = target[key] if isinstance(target, (dict, list)) and _has(target, key) else None
            if target is None:
                break
        if isinstance(target, (dict, list)) and (isinstance(target, dict) or _has(target, path[-1])):
            target[path[-1]] = value
    return data


def _has(container, key) -> bool:
    return key in container if isinstance(container, dict) else isinstance(key, int) and key < len(container)


def assert_renderable(plan: MoviePlan) -> None:
    """What the stages need of a plan they are given."""
    assert MIN_FPS <= plan.fps <= MAX_FPS
    assert min(shot_frame_counts([shot.duration_sec for shot in plan.shots], plan.fps)) >= 1
    assert all(0 <= image_seed(plan, index) < SEED_LIMIT for index in range(len(plan.base_images)))
    assert all(speakable(entry.text) for _, entry in plan.dialogue_lines())
    assert validate_plan(json.loads(json.dumps(plan.model_dump(mode="json")))) == plan
    summarize(plan)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=mutations)
def test_a_mutated_plan_is_rejected_with_field_paths_or_renderable(sample_plan, changes):
    data = mutate(sample_plan, changes)
    try:
        plan = validate_plan(data)
    except PlanValidationError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.reason
            assert issue.path.split(".")[0].split("[")[0] in MoviePlan.model_fields, issue
        return
    assert_renderable(plan)


# --- a few accepted mutations, filmed for real -------------------------------------------------

def tiny_plan(sample_plan: dict) -> dict:
    """The sample at 64x64 and 1.7 s: a film in a couple of seconds."""
    plan = copy.deepcopy(sample_plan)
    plan["render_profile"]["video"].update(width=64, height=64, max_fps=12)
    plan["shots"][0]["duration_sec"], plan["shots"][1]["duration_sec"] = 0.8, 0.9
    plan["dialogue_timeline"] = [
        {"type": "dialogue", "character_id": "ava", "text": "Hi.", "start_time_sec": 0.1, "duration_sec": 0.6},
        {"type": "dialogue", "character_id": "miko", "text": "Hey.", "start_time_sec": 0.8, "duration_sec": 0.7},
    ]
    return plan


safe_ids = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
render_mutations = st.fixed_dictionaries({
    "fps": st.sampled_from([MIN_FPS, 5, 7.5, 12, 23.976, 30, MAX_FPS]),
    "durations": st.tuples(st.floats(0.6, 1.2), st.floats(0.6, 1.2)),
    "texts": st.tuples(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30)),
    "seeds": st.tuples(st.integers(0, SEED_LIMIT - 1), st.integers(0, SEED_LIMIT - 1).map(str)),
    "shot_ids": st.tuples(safe_ids, safe_ids),
    "closeup": st.booleans(),
    "prompt": st.text(min_size=1, max_size=40),
    "metadata": st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3),
})


def apply_render_mutation(plan: dict, m: dict) -> dict:
    plan = copy.deepcopy(plan)
    plan["render_profile"]["video"]["max_fps"] = m["fps"]
    for shot, duration, shot_id in zip(plan["shots"], m["durations"], m["shot_ids"]):
        shot.update(duration_sec=duration, id=shot_id)
    plan["shots"][1]["is_talking_closeup"] = m["closeup"]
    for entry, text in zip(plan["dialogue_timeline"], m["texts"]):
        entry["text"] = text
    plan["base_images"][0]["metadata"]["seed"], plan["base_images"][1]["metadata"]["seed"] = m["seeds"]
    plan["base_images"][2]["prompt"] = m["prompt"]
    plan["metadata"] = m["metadata"]
    return plan


@pytest.fixture(scope="module")
def filming(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "artifacts"
    with pytest.MonkeyPatch.context() as patch, dg.DagsterInstance.ephemeral() as instance:
        patch.setenv("ARTIFACTS_FS_ROOT", str(root))
        yield ArtifactStore(root), instance


@pytest.mark.slow
@settings(max_examples=3, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(m=render_mutations)
def test_accepted_mutations_film(sample_plan, filming, m):
    store, instance = filming
    data = apply_render_mutation(tiny_plan(sample_plan), m)
    try:
        plan = validate_plan(data)
    except PlanValidationError as exc:
        assert all(issue.path for issue in exc.issues)
        assume(False)
    run_id = submit_run(store, instance, data, source="fuzz", preview=True,
                        clip_model_ids=("animatic",), clip_backend="animatic")
    result = film_run(defs, instance, run_id, store=store)
    assert result.success, result.error
    frames = sum(shot_frame_counts([shot.duration_sec for shot in plan.shots], plan.fps))
    assert count_video_frames(store.run_dir(run_id) / "finalize" / "video_final.mp4") == frames
