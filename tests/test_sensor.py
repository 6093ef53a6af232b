"""The plan drop folder, tick by tick, with dg.build_sensor_context."""

import json
import os

import dagster as dg
import pytest

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
from sparkle_motion_dagster.resources.planning.template import TemplatePlanner
from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    folder = tmp_path / "inbox"
    monkeypatch.setenv("SPARKLE_PLAN_INBOX", str(folder))
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    folder.mkdir()
    return folder


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def tick(instance, cursor=None):
    sensor = defs.resolve_sensor_def("plan_inbox")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={
        "artifact_store": ArtifactStoreResource(), "planner": TemplatePlanner(), "clips": AnimaticClips()})
    result = sensor(context)
    for request in result.dynamic_partitions_requests or []:  # what the daemon does with the result
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result, result.cursor


def two_ticks(instance):
    first, cursor = tick(instance)
    second, cursor = tick(instance, cursor)
    return first, second, cursor


def test_sensor_is_on_by_default():
    assert defs.resolve_sensor_def("plan_inbox").default_status == dg.DefaultSensorStatus.RUNNING


def test_a_valid_plan_becomes_a_run_once_it_is_stable(inbox, instance, sample_envelope):
    sample_envelope["preview"] = True
    (inbox / "rooftop.json").write_text(json.dumps(sample_envelope))
    raw = (inbox / "rooftop.json").read_bytes()
    first, second, _ = two_ticks(instance)
    assert not first.run_requests and "waiting until it stops changing" in first.skip_reason.skip_message
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    run_id = request.partition_key
    assert second.dynamic_partitions_requests[0].partition_keys == [run_id]
    assert run_id in request.run_key  # content hash in the run key
    accepted = inbox / "accepted" / f"{run_id}.json"
    assert accepted.read_bytes() == raw and not (inbox / "rooftop.json").exists()
    submitted = json.loads((inbox.parent / "artifacts" / "runs" / run_id / "request" / "plan_request.json").read_text())
    assert submitted["preview"] is True and submitted["source"] == "inbox:rooftop.json"


def test_a_file_still_changing_is_not_read(inbox, instance):
    path = inbox / "growing.json"
    path.write_text('{"title": "x", ')
    _, cursor = tick(instance)
    path.write_text('{"title": "Storm", "prompt": "A keeper and a storm."}')
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    result, cursor = tick(instance, cursor)
    assert not result.run_requests and path.exists()
    result, _ = tick(instance, cursor)
    assert len(result.run_requests) == 1


def test_invalid_files_are_rejected_with_every_problem(inbox, instance, sample_plan):
    sample_plan["shots"][1]["start_base_image_id"] = "frame_000"
    sample_plan["dialogue_timeline"][0]["character_id"] = "ghost"
    (inbox / "bad_plan.json").write_text(json.dumps(sample_plan))
    (inbox / "garbage.json").write_text("{nope")
    (inbox / "notes.txt").write_text("hello")
    _, second, _ = two_ticks(instance)
    assert not second.run_requests
    errors = json.loads((inbox / "rejected" / "bad_plan.json.error.json").read_text())["errors"]
    assert any("shots[1].start_base_image_id" in e for e in errors)
    assert any("dialogue_timeline[0].character_id" in e for e in errors)
    assert "not valid JSON" in json.loads((inbox / "rejected" / "garbage.json.error.json").read_text())["errors"][0]
    assert (inbox / "rejected" / "notes.txt").read_text() == "hello"  # kept, with the reason beside it
    assert (inbox / "rejected" / "bad_plan.json").read_text() == json.dumps(sample_plan)


def test_an_unconfigured_model_is_rejected_unless_previewing(inbox, instance, sample_envelope):
    (inbox / "wan.json").write_text(json.dumps(sample_envelope))
    _, second, _ = two_ticks(instance)
    assert not second.run_requests
    errors = json.loads((inbox / "rejected" / "wan.json.error.json").read_text())["errors"]
    assert "wan-2.1" in errors[0] and "preview" in errors[0]


def test_a_planner_request_is_planned_by_the_run_not_by_the_tick(inbox, instance):
    (inbox / "idea.json").write_text(json.dumps({"title": "Keeper", "prompt": "A lighthouse keeper meets a storm."}))
    _, second, _ = two_ticks(instance)
    run_id = second.run_requests[0].partition_key
    run_dir = inbox.parent / "artifacts" / "runs" / run_id
    request = json.loads((run_dir / "request" / "plan_request.json").read_text())
    # The tick only records the prompt: a slow language model must not overrun the sensor's timeout.
    assert "document" not in request
    assert request["prompt"] == {"prompt": "A lighthouse keeper meets a storm.", "title": "Keeper", "seed": 0}

    resources = {"artifact_store": ArtifactStoreResource(), "planner": TemplatePlanner(), "clips": AnimaticClips(),
                 "speech": EspeakSpeech()}
    from sparkle_motion_dagster.assets.movie_plan import movie_plan
    first = dg.materialize([movie_plan], partition_key=run_id, instance=instance, resources=resources)
    artifact = run_dir / "plan_intake" / "plan_artifact.json"
    planned = json.loads(artifact.read_text())
    assert planned["validated_plan"]["metadata"]["planner"] == "template"
    assert json.loads((run_dir / "plan_intake" / "movie_plan.json").read_text())["title"] == "Keeper"
    assert first.success

    # Materializing again reuses the plan instead of asking the planner again.
    stamp = artifact.stat().st_mtime_ns
    dg.materialize([movie_plan], partition_key=run_id, instance=instance, resources=resources)
    assert artifact.stat().st_mtime_ns == stamp


def test_the_same_content_twice_starts_one_run(inbox, instance, sample_envelope):
    sample_envelope["preview"] = True
    content = json.dumps(sample_envelope)
    (inbox / "a.json").write_text(content)
    _, second, cursor = two_ticks(instance)
    assert len(second.run_requests) == 1
    run_id = second.run_requests[0].partition_key
    (inbox / "b.json").write_text(content)
    result, cursor = tick(instance, cursor)
    result, _ = tick(instance, cursor)
    assert not result.run_requests
    assert json.loads((inbox / "duplicates" / "b.json.duplicate.json").read_text())["run_id"] == run_id
    assert (inbox / "duplicates" / "b.json").read_text() == content


def test_batch_cap_and_files_being_written(inbox, instance, monkeypatch):
    monkeypatch.setenv("SPARKLE_INBOX_BATCH", "2")
    for n in range(3):
        (inbox / f"idea{n}.json").write_text(json.dumps({"title": f"T{n}", "prompt": f"Story number {n}."}))
    (inbox / "half.json.part").write_text("{")
    (inbox / ".hidden.json").write_text("{")
    _, second, cursor = two_ticks(instance)
    assert len(second.run_requests) == 2
    third, _ = tick(instance, cursor)
    assert len(third.run_requests) == 1
    assert (inbox / "half.json.part").exists() and (inbox / ".hidden.json").exists()


def test_an_accepted_plan_whose_partition_was_never_added_is_requested_again(inbox, instance, sample_envelope):
    """The daemon stopped between moving the file and adding the partition."""
    sample_envelope["preview"] = True
    (inbox / "a.json").write_text(json.dumps(sample_envelope))
    sensor = defs.resolve_sensor_def("plan_inbox")
    resources = {"artifact_store": ArtifactStoreResource(), "planner": TemplatePlanner(), "clips": AnimaticClips()}
    first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    lost = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
    run_id = lost.run_requests[0].partition_key  # ...and its result was never applied
    again, _ = tick(instance, lost.cursor)
    assert [r.partition_key for r in again.run_requests] == [run_id]
    assert instance.has_dynamic_partition("run_id", run_id)
