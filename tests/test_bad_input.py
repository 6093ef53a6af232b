"""Bad input, hostile or unlucky, costs little and says what is wrong: forged subtitle cues, malformed
service requests, colliding inbox ids, damaged files, out-of-range seeds, nested plans, odd file names."""

import json
import re
from collections import Counter

import pytest

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import film_run, submit_run

TIMING = re.compile(r"^(\d\d:\d\d:\d\d[,.]\d\d\d) --> (\d\d:\d\d:\d\d[,.]\d\d\d)$", re.M)


def two_shot_plan(first_line: str = "Is it far?") -> dict:
    return {
        "title": "Lantern Steps",
        "characters": [{"id": "noor", "name": "Noor"}, {"id": "tomas", "name": "Tomas"}],
        "base_images": [{"id": f"frame_{i:03d}", "prompt": f"A coastal path at dusk, view {i}"} for i in range(3)],
        "shots": [{"id": f"shot_{i + 1:03d}", "duration_sec": 2.0, "start_base_image_id": f"frame_{i:03d}",
                   "end_base_image_id": f"frame_{i + 1:03d}"} for i in range(2)],
        "dialogue_timeline": [
            {"type": "dialogue", "character_id": "tomas", "text": first_line, "start_time_sec": 0.3,
             "duration_sec": 1.2},
            {"type": "dialogue", "character_id": "noor", "text": "Not far now.", "start_time_sec": 2.2,
             "duration_sec": 1.2},
        ],
        "render_profile": {"video": {"model_id": "animatic", "max_fps": 12, "width": 160, "height": 90}},
    }


def submit(store, instance, document):
    return submit_run(store, instance, document, source="test", preview=False,
                      clip_model_ids=("animatic",), clip_backend="animatic")


# --------------------------------------------------------------------------- the cost of a plan


def speaking_plan(lines: int, text: str) -> dict:
    """A plan of ``lines`` lines of ``text``, one every 30 s, over nine hour-long shots."""
    plan = two_shot_plan()
    plan["base_images"] = [{"id": f"frame_{i:03d}", "prompt": f"A harbour at dusk, view {i}"} for i in range(10)]
    plan["shots"] = [{"id": f"shot_{i + 1:03d}", "duration_sec": 3600, "start_base_image_id": f"frame_{i:03d}",
                      "end_base_image_id": f"frame_{i + 1:03d}"} for i in range(9)]
    plan["dialogue_timeline"] = [{"type": "dialogue", "character_id": "noor", "text": text,
                                  "start_time_sec": 30 * i, "duration_sec": 20} for i in range(lines)]
    return plan


def test_a_plans_size_and_its_lines_are_limited_naming_the_field(tmp_path, monkeypatch):
    from film_checks import sparkle, use_state

    use_state(monkeypatch, tmp_path / "state")
    long_line = tmp_path / "long_line.json"
    long_line.write_text(json.dumps(speaking_plan(1, "word " * 200_000)))
    result = sparkle("run", "--plan", long_line, "--mode", "dry")
    assert result.code == 2
    assert ("dialogue_timeline[0].text: is 1000000 characters; a line is at most 2000 (about two minutes of "
            "speech): split it into several lines") in result.stderr

    many_shots = two_shot_plan()
    many_shots["shots"] = [{**many_shots["shots"][0], "id": f"s{i}"} for i in range(5001)]
    path = tmp_path / "many_shots.json"
    path.write_text(json.dumps(many_shots))
    result = sparkle("run", "--plan", path, "--mode", "dry")
    assert result.code == 2 and "  - shots: has 5001 shots; a plan holds at most 5000" in result.stderr

    huge = tmp_path / "huge.json"  # 1,000 lines of 9 KB each: 9 MB
    huge.write_text(json.dumps(speaking_plan(1000, "word " * 1800)))
    result = sparkle("run", "--plan", huge, "--mode", "dry")
    size = huge.stat().st_size
    assert result.code == 2
    assert f"error: {huge} is {size} bytes; a plan is at most 4194304 bytes (4 MiB)" in result.stderr
    assert not (tmp_path / "state" / "artifacts" / "runs").exists()  # nothing submitted


def test_the_drop_folder_refuses_a_file_over_the_plan_size_limit(inbox, instance):
    content = json.dumps({**speaking_plan(1000, "word " * 1000), "preview": True})
    assert len(content) > 4 * 1024 * 1024
    result = drop_and_take(inbox, instance, "big.json", content)
    assert not result.run_requests
    errors = json.loads((inbox / "rejected" / "big.json.error.json").read_text())["errors"]
    assert errors == [f"big.json is {len(content)} bytes; a plan is at most 4194304 bytes (4 MiB)"]


def test_sigterm_stops_a_dry_run_measuring_many_long_lines(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import dagster as dg
    from helpers import wait_for

    plan = tmp_path / "many_lines.json"
    plan.write_text(json.dumps(speaking_plan(1000, ("Stay close to the lantern and count the steps. " * 50)[:2000])))
    state = tmp_path / "state"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home")}
    env.pop("ARTIFACTS_FS_ROOT", None)
    proc = subprocess.Popen([sys.executable, "-m", "sparkle_motion_dagster.cli", "run", "--plan", str(plan),
                             "--mode", "dry"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().split()[1]  # "run_id: RUN_ID (dry run)", printed before filming

        def measuring():
            with dg.DagsterInstance.from_config(str(state / "dagster_home")) as instance:
                runs = instance.get_runs(limit=1)
                if not runs:
                    return False
                starts = instance.get_records_for_run(runs[0].run_id, of_type=dg.DagsterEventType.STEP_START)
                return any(record.event_log_entry.dagster_event.step_key == "movie_plan" for record in starts.records)

        wait_for(measuring, "the dry run's movie_plan step to start")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)  # a guard only: measuring every line takes far longer
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert f"stopped {run_id} (SIGTERM) at movie_plan; continue it with: sparkle-motion resume {run_id}" in out + err


# --------------------------------------------------------------------------- subtitles


def test_a_line_cannot_forge_a_subtitle_cue(store, instance):
    forged = "Is it far?\n\n2\n00:00:00,000 --> 99:00:00,000\nINJECTED\r\n\u2028<v Ava>x & y"
    run_id = submit(store, instance, two_shot_plan(forged))
    assert film_run(defs, instance, run_id, store=store, stages=["movie_plan", "dialogue_audio"]).success
    folder = store.run_dir(run_id) / "dialogue_audio"
    srt, vtt = (folder / "dialogue.srt").read_text(), (folder / "dialogue.vtt").read_text()
    for captions in (srt, vtt):
        timings = TIMING.findall(captions)
        assert len(timings) == 2, captions  # one cue per line, nothing forged
        assert all(end < "00:00:05" for _, end in timings), captions
    assert srt.count("INJECTED") == 1 and "99:00:00" in srt.split("\n")[2]  # kept as words on the cue's line
    assert srt.split("\n")[2].startswith("Tomas: Is it far? 2 00:00:00,000 -> 99:00:00,000 INJECTED")
    assert "<v Tomas>Is it far?" in vtt and "&lt;v Ava&gt;x &amp; y" in vtt and "<v Ava>" not in vtt


# --------------------------------------------------------------------------- the new_film job


@pytest.mark.parametrize("plan_text, problem", [
    ("[" * 200_000 + "]" * 200_000, "plan_text is not usable JSON: lists and objects nest deeper than 64 levels"),
    ("- " * 5_000 + "x", "plan_text is not usable YAML: lists and objects nest deeper than 64 levels"),
    ("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]", "plan_text is not usable YAML: it uses anchors"),
])
def test_new_film_reads_a_pasted_plan_with_the_bounded_decoder(isolated_state, instance, plan_text, problem):
    job = defs.get_job_def("new_film")
    result = job.execute_in_process(run_config={"ops": {"submit_new_film": {"config": {"plan_text": plan_text}}}},
                                    instance=instance, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error
    assert error.cls_name == "Failure" and problem in error.message


# --------------------------------------------------------------------------- inbox run ids


def inbox_tick(instance, cursor=None):
    import dagster as dg

    from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
    from sparkle_motion_dagster.resources.storage import ArtifactStoreResource

    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={
        "artifact_store": ArtifactStoreResource(), "clips": AnimaticClips()})
    result = defs.resolve_sensor_def("plan_inbox")(context)
    for request in result.dynamic_partitions_requests or []:  # what the daemon does with the result
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def drop_and_take(inbox, instance, name: str, content: str):
    (inbox / name).write_text(content)
    first = inbox_tick(instance)
    return inbox_tick(instance, first.cursor)


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    folder = tmp_path / "inbox"
    folder.mkdir()
    monkeypatch.setenv("SPARKLE_PLAN_INBOX", str(folder))
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    return folder


def test_a_drop_sharing_a_run_id_with_another_plan_is_filmed_under_a_new_id(inbox, instance, tmp_path):
    import hashlib

    from sparkle_motion_dagster.store.run_files import submit_request
    from sparkle_motion_dagster.store.storage import ArtifactStore, check_run_id

    store = ArtifactStore(tmp_path / "artifacts")
    fresh = json.dumps({**two_shot_plan("A fresh plan."), "preview": True})
    (request,) = drop_and_take(inbox, instance, "fresh.json", fresh).run_requests
    assert request.partition_key == f"run_{hashlib.sha256(fresh.encode()).hexdigest()[:16]}"  # 64 bits

    # Another plan already holds the id this content gets (a collision on its first 64 bits).
    content = json.dumps({**two_shot_plan(), "preview": True})
    digest = hashlib.sha256(content.encode()).hexdigest()
    other = {**two_shot_plan("Somebody else's film."), "title": "Another"}
    submit_request(store, f"run_{digest[:16]}", source="inbox:other.json", preview=True, document=other,
                   content_sha256=hashlib.sha256(b"other").hexdigest())
    (request,) = drop_and_take(inbox, instance, "second.json", content).run_requests
    assert request.partition_key == f"run_{digest[:32]}" and check_run_id(request.partition_key)
    assert not (inbox / "duplicates").exists()
    assert (inbox / "accepted" / f"{request.partition_key}.json").read_text() == content
    assert store.read_request(f"run_{digest[:16]}")["document"]["title"] == "Another"  # the other film untouched

    # The same content again is a duplicate of the run that films it.
    assert not drop_and_take(inbox, instance, "third.json", content).run_requests
    kept = json.loads((inbox / "duplicates" / "third.json.duplicate.json").read_text())
    assert kept["run_id"] == request.partition_key


# --------------------------------------------------------------------------- names in logs


def test_a_dropped_files_name_cannot_forge_log_lines(tmp_path, monkeypatch, instance, sample_envelope, capfd):
    import dagster as dg

    from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
    from sparkle_motion_dagster.resources.storage import ArtifactStoreResource

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("SPARKLE_PLAN_INBOX", str(inbox))
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    forged = "\n2026-01-01 00:00:00 +0000 - dagster - INFO - film - RUN_SUCCESS - forged\u2028\x1b[2K"
    sample_envelope["preview"] = True
    (inbox / f"good{forged}.json").write_text(json.dumps(sample_envelope))
    (inbox / f"bad{forged}.json").write_text("{not json")
    sensor, cursor = defs.resolve_sensor_def("plan_inbox"), None
    capfd.readouterr()
    for _ in range(2):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={
            "artifact_store": ArtifactStoreResource(), "clips": AnimaticClips()})
        result = sensor(context)
        cursor = result.cursor
    logged = capfd.readouterr().err  # the dagster log as a terminal shows it
    lines = [line for line in logged.splitlines() if "forged" in line]
    escaped = "\\n2026-01-01 00:00:00 +0000 - dagster - INFO - film - RUN_SUCCESS - forged\\u2028\\x1b[2K.json"
    assert any(line.endswith(f"INFO - good{escaped} accepted as {result.run_requests[0].partition_key}")
               for line in lines), logged
    assert any(f"WARNING - rejected bad{escaped}: bad{escaped} is not valid JSON" in line for line in lines), logged
    assert not any(line.startswith("2026-01-01") for line in logged.splitlines()), logged  # no forged record
    assert "\u2028" not in logged and "\x1b" not in logged
    assert result.run_requests[0].tags["sparkle/inbox_file"] == f"good{escaped}"


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed, shown", [("-1", "got -1"), (str(10**30), "got an integer of 100 bits"),
                                         (str(2**32), "got 4294967296")])
def test_seeds_on_the_command_line_follow_the_plans_rule(tmp_path, monkeypatch, seed, shown):
    from film_checks import small_plan, sparkle, use_state

    use_state(monkeypatch, tmp_path / "state")
    run_id = sparkle("submit", "--plan", small_plan(tmp_path)).run_id
    rule = "must be an integer with 0 <= seed < 2**32 (4294967296)"
    result = sparkle("regenerate", run_id, "--shot", "shot_001", "--seed", seed)
    assert result.code == 2 and f"Invalid value for '--seed': {rule}, {shown}" in result.stderr
    assert not (tmp_path / "state" / "artifacts" / "runs" / run_id / "overrides").exists()  # nothing recorded
    for command in (["run", "--prompt", "A fox", "--title", "Fox"], ["submit", "--prompt", "A fox", "--title", "Fox"],
                    ["plan", "--prompt", "A fox", "--title", "Fox"]):
        result = sparkle(*command, "--seed", seed)
        assert result.code == 2 and f"Invalid value for '--seed': {rule}, {shown}" in result.stderr, command


def test_a_prompt_runs_seed_is_checked_however_it_is_submitted(store, instance):
    from sparkle_motion_dagster.orchestration.runner import submit_prompt_run

    with pytest.raises(ValueError, match=r"^seed: must be an integer with 0 <= seed < 2\*\*32 .*got an integer of 71"):
        submit_prompt_run(store, instance, prompt="A fox", title="Fox", seed=2**70, preview=False)
    assert store.run_ids() == []


# --------------------------------------------------------------------------- damaged inputs


def _latest_attempts(state, step: str) -> tuple[str, int]:
    """(status, attempts) of ``step`` in the latest Dagster run of the project's instance: the
    attempts of the most tried of its steps (a stage may run as several)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(state / "dagster_home")) as instance:
        run = instance.get_runs(limit=1)[0]
        events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
    attempts = Counter(e.step_key for e in events if e.event_type_value in ("STEP_START", "STEP_RESTARTED")
                       and e.step_key.startswith(step))
    return run.status.value, max(attempts.values(), default=0)


def test_damaged_inputs_fail_at_once_naming_the_file(tmp_path, monkeypatch):
    from film_checks import small_plan, sparkle, use_state

    state = tmp_path / "state"
    use_state(monkeypatch, state)
    run_id = sparkle("run", "--plan", small_plan(tmp_path, shots=2)).run_id
    run = state / "artifacts" / "runs" / run_id

    # A sidecar holding [] is a damaged record: the item is rendered again, nothing breaks.
    clip = run / "video_clips" / "shot_001.mp4"
    (clip.parent / ".meta" / "shot_001.mp4.json").write_text("[]")
    before = clip.stat().st_ino
    result = sparkle("regenerate", run_id, "--shot", "shot_002")
    assert result.code == 0, result.stderr
    assert clip.stat().st_ino != before  # rendered again, not trusted
    assert json.loads((clip.parent / ".meta" / "shot_001.mp4.json").read_text())["fingerprint"]

    # A truncated keyframe that its record says is what the renderer made (a model that wrote a broken
    # PNG; a keyframe damaged after the fact no longer matches its record and is simply rendered
    # again): the clips stage fails once, naming the file.
    from sparkle_motion_dagster.store import integrity

    keyframe = run / "base_images" / "frame_001.png"
    good = keyframe.read_bytes()
    good_record = json.loads(integrity.sidecar_path(keyframe).read_text())
    keyframe.write_bytes(good[:len(good) // 2])
    integrity.atomic_write_json(integrity.sidecar_path(keyframe),
                                {**good_record, integrity.FILE_KEY: integrity.file_record(keyframe)})
    result = sparkle("rerun", run_id, "--from", "video_clips")
    assert result.code == 1
    assert f"{keyframe}: the end keyframe is damaged and cannot be decoded" in result.stderr, result.stderr
    assert _latest_attempts(state, "video_clips") == ("FAILURE", 1)
    keyframe.write_bytes(good)

    # A clip cut short inside its header ("reached eof, corrupted STSD atom"): ffmpeg refuses it, no retry.
    data = clip.read_bytes()
    clip_record = json.loads(integrity.sidecar_path(clip).read_text())
    clip.write_bytes(data[:data.find(b"stsd") + 20])
    integrity.atomic_write_json(integrity.sidecar_path(clip),
                                {**clip_record, integrity.FILE_KEY: integrity.file_record(clip)})
    result = sparkle("rerun", run_id, "--from", "video_raw_concat")
    assert result.code == 1 and "corrupted STSD atom" in result.stderr and str(clip) in result.stderr
    assert _latest_attempts(state, "video_raw_concat") == ("FAILURE", 1)
