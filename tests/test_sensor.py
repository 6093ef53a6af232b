"""The plan drop folder, tick by tick, with dg.build_sensor_context."""

import json
import os

import dagster as dg
import pytest

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
from sparkle_motion_dagster.resources.keyframes.storyboard import StoryboardKeyframes
from sparkle_motion_dagster.resources.lipsync.passthrough import PassthroughLipsync
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
    # Said as the drop folder's fix (a field of the file), not as the command line's flag.
    assert "wan-2.1" in errors[0] and '"preview": true' in errors[0] and "--preview" not in errors[0]


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
                 "speech": EspeakSpeech(), "keyframes": StoryboardKeyframes(), "lipsync": PassthroughLipsync()}
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


def rejection(inbox, name: str) -> list[str]:
    return json.loads((inbox / "rejected" / f"{name}.error.json").read_text())["errors"]


def test_no_file_stops_the_drop_folder(inbox, instance, sample_envelope, monkeypatch):
    """Whatever a file holds, it is rejected with a reason; the good plan beside it is filmed."""
    monkeypatch.setenv("SPARKLE_INBOX_BATCH", "20")
    sample_envelope["preview"] = True
    (inbox / "good.json").write_text(json.dumps(sample_envelope))
    (inbox / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (inbox / "deepish.json").write_text('{"shots": ' * 300 + "1" + "}" * 300)
    (inbox / "huge_number.json").write_text('{"title": "x", "prompt": "y", "seed": ' + "9" * 5000 + "}")
    (inbox / "big_seed.json").write_text('{"title": "x", "prompt": "y", "seed": ' + "9" * 400 + "}")
    (inbox / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (inbox / "unreadable.json").write_text(json.dumps(sample_envelope))
    (inbox / "unreadable.json").chmod(0)
    os.mkfifo(inbox / "pipe.json")
    long_name = "n" * 240 + ".json"
    (inbox / long_name).write_text("[]")
    if os.geteuid() == 0:  # root reads anything: make the refusal happen as it would for a user
        from sparkle_motion_dagster.lifecycle import inbox as inbox_module
        real_open = inbox_module._open_no_follow

        def refuse_unreadable(path):
            if path.name == "unreadable.json":
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path)

        monkeypatch.setattr(inbox_module, "_open_no_follow", refuse_unreadable)

    first, second, _ = two_ticks(instance)
    assert not first.run_requests
    [request] = second.run_requests
    assert (inbox / "accepted" / f"{request.partition_key}.json").exists()
    assert "nest deeper than 64 levels" in rejection(inbox, "deep.json")[0]
    assert "nest deeper than 64 levels" in rejection(inbox, "deepish.json")[0]
    assert "a number has more than 4300 digits" in rejection(inbox, "huge_number.json")[0]
    assert "0 <= seed < 2**32" in rejection(inbox, "big_seed.json")[0]
    assert "binary.bin is not UTF-8 text" in rejection(inbox, "binary.bin")[0]
    assert "unreadable.json cannot be opened: Permission denied" in rejection(inbox, "unreadable.json")[0]
    assert "not a regular file" in rejection(inbox, "pipe.json")[0]
    assert (inbox / "rejected" / "binary.bin").read_bytes() == bytes(range(256)) * 4  # kept byte for byte
    kept_long = [p for p in (inbox / "rejected").iterdir() if p.name.startswith("n" * 50)]
    assert len(kept_long) == 2 and any(p.name.endswith(".error.json") for p in kept_long)
    assert [p.name for p in inbox.iterdir() if not p.is_dir()] == []


def test_a_tick_survives_a_broken_cursor_and_an_odd_accepted_folder(inbox, instance):
    (inbox / "accepted").mkdir()
    (inbox / "accepted" / "run_nothex.json").write_text("{}")
    (inbox / "idea.json").write_text(json.dumps({"title": "Keeper", "prompt": "A keeper and a storm."}))
    _, cursor = tick(instance, cursor="not json")
    result, _ = tick(instance, cursor)
    assert len(result.run_requests) == 1


def test_a_symlink_is_rejected_as_a_link_and_its_target_never_read(inbox, instance, sample_envelope, tmp_path,
                                                                    monkeypatch):
    from sparkle_motion_dagster.lifecycle import inbox as inbox_module

    sample_envelope["preview"] = True
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(sample_envelope))  # a valid plan: filmed, were the link followed
    (inbox / "link.json").symlink_to(target)
    (inbox / "dangling.json").symlink_to(tmp_path / "nothing-here.json")
    opened = []
    real_open = inbox_module._open_no_follow
    monkeypatch.setattr(inbox_module, "_open_no_follow", lambda path: opened.append(path) or real_open(path))

    _, second, _ = two_ticks(instance)
    assert not second.run_requests
    kept = inbox / "rejected" / "link.json"
    assert kept.is_symlink() and os.readlink(kept) == str(target)  # moved as a link
    assert "symbolic link" in rejection(inbox, "link.json")[0]
    assert (inbox / "rejected" / "dangling.json").is_symlink()
    assert opened == [] and target.read_text() == json.dumps(sample_envelope)
    assert not (inbox / "accepted").exists() or not any(p.is_symlink() for p in (inbox / "accepted").iterdir())


def test_a_file_swapped_for_a_link_after_the_scan_is_never_followed(inbox, tmp_path, sample_envelope):
    from sparkle_motion_dagster.lifecycle import inbox as inbox_module

    target = tmp_path / "secret.json"
    target.write_text(json.dumps(sample_envelope))
    path = inbox / "swap.json"
    path.write_text("{}")
    [drop] = inbox_module.scan(inbox)
    path.unlink()
    path.symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        inbox_module.load_drop(drop)


def test_accepted_never_keeps_a_link_swapped_in_after_the_read(inbox, tmp_path):
    from sparkle_motion_dagster.lifecycle import inbox as inbox_module

    path = inbox / "plan.json"
    path.write_text('{"title": "T", "prompt": "P"}')
    [drop] = inbox_module.scan(inbox)
    loaded = inbox_module.load_drop(drop)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.json")
    accepted = inbox_module.accept(inbox, drop, "run_0123abcd", loaded)
    assert not accepted.is_symlink() and accepted.read_bytes() == loaded.raw
    assert (inbox / "rejected" / "plan.json").is_symlink()
    assert "replaced while it was being accepted" in rejection(inbox, "plan.json")[0]


def test_a_successful_new_film_run_requests_the_film_of_the_partition_it_registered(tmp_path, monkeypatch,
                                                                                        instance, sample_plan):
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    sensor = defs.resolve_sensor_def("new_film_launcher")
    assert isinstance(sensor, dg.RunStatusSensorDefinition) and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    new_film = defs.resolve_job_def("new_film").execute_in_process(
        instance=instance, run_config={"ops": {"submit_new_film": {"config": {
            "plan_text": json.dumps(sample_plan), "preview": True}}}})
    run_id = new_film.output_for_node("submit_new_film")
    context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                 dagster_run=instance.get_run_by_id(new_film.run_id),
                                                 dagster_event=new_film.get_run_success_event())
    request = sensor(context)
    assert isinstance(request, dg.RunRequest)
    assert (request.partition_key, request.run_key) == (run_id, f"new_film:{run_id}")
    assert request.tags["sparkle/new_film_dagster_run"] == new_film.run_id
    assert [job.name for job in sensor.jobs] == ["film"]
