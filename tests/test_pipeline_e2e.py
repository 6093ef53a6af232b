"""The whole graph on the embedded backends, checked on the real files."""

import json
import wave

import dagster as dg
import pytest
from PIL import Image

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.film.intake import ModelNotConfiguredError
from sparkle_motion_dagster.media.ffmpeg import count_video_frames, decoded_audio_seconds, probe
from sparkle_motion_dagster.orchestration.runner import film_run, submit_run
from sparkle_motion_dagster.store.run_files import submit_request
from sparkle_motion_dagster.store.storage import sha256_file
from sparkle_motion_dagster.stages import STAGE_KEYS

pytestmark = pytest.mark.slow


def submit(store, instance, document, preview=True):
    return submit_run(store, instance, document, source="test", preview=preview,
                      clip_model_ids=("animatic",), clip_backend="animatic")


def materializations(instance, asset: str, run_id: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[run_id]), limit=10
    ).records
    return [r.asset_materialization.metadata for r in records]


def test_seed_sample_becomes_a_film(store, instance, sample_envelope):
    run_id = submit(store, instance, sample_envelope)
    stages = []
    result = film_run(defs, instance, run_id, store=store, on_stage=lambda s, status, _: stages.append((s, status)))
    assert result.success, result.error
    assert sorted(stages) == sorted((s, "succeeded") for s in STAGE_KEYS)
    run = store.run_dir(run_id)
    final = run / "finalize" / "video_final.mp4"
    assert result.final_video == str(final)
    # In process each rendering stage renders every item in one step (side by side), between its
    # groups and manifest steps: the graph every executor has.
    starts = instance.get_records_for_run(result.dagster_run_id, of_type=dg.DagsterEventType.STEP_START).records
    clip_steps = sorted(r.event_log_entry.step_key for r in starts
                        if r.event_log_entry.step_key.startswith("video_clips."))  # not its quality check
    assert clip_steps == ["video_clips.video_clips_groups", "video_clips.video_clips_manifest",
                          "video_clips.video_clips_render[shot_001]"]

    # The final cut: H.264 at the plan's frame count, one AAC track as long as the film.
    info = probe(final)
    assert (info["video_codec"], info["audio_codec"], info["width"], info["height"]) == ("h264", "aac", 1280, 720)
    fps, runtime = 24, 17.5
    assert abs(count_video_frames(final) - runtime * fps) <= 1
    assert abs(decoded_audio_seconds(final) - runtime) <= 1 / fps

    # Each clip: duration x fps frames; the silent master has no audio.
    assert count_video_frames(run / "video_clips" / "shot_001.mp4") == 192
    assert count_video_frames(run / "video_clips" / "shot_002.mp4") == 228
    assert probe(run / "assembly" / "video_raw_concat.mp4")["audio_codec"] is None

    # Dialogue: a WAV per line, the stitched track to the sample, offsets as planned.
    with wave.open(str(run / "dialogue_audio" / "tts_timeline.wav")) as wav:
        assert wav.getnframes() == round(runtime * wav.getframerate())
    offsets = json.loads((run / "dialogue_audio" / "dialogue_timeline_audio.json").read_text())
    assert set(offsets["timeline_offsets"]) == {"line_000", "line_001"}
    planned = {"line_000": (8.4, 2.6), "line_001": (11.2, 2.2)}
    for line_id, (start, slot) in planned.items():
        placed = offsets["timeline_offsets"][line_id]
        assert placed["start_time_actual_s"] == start
        assert placed["end_time_actual_s"] == pytest.approx(start + placed["duration_audio_raw_s"] - placed["timeline_trimmed_s"], abs=1e-4)
        assert placed["timeline_padding_s"] == pytest.approx(max(slot - placed["duration_audio_raw_s"], 0), abs=1e-4)
        assert (run / "dialogue_audio" / f"{line_id}.wav").exists()
    assert "Ava: I was scared of losing us." in (run / "dialogue_audio" / "dialogue.srt").read_text()
    assert (run / "dialogue_audio" / "dialogue.vtt").read_text().startswith("WEBVTT")

    # Keyframes: one PNG per base image at the output size.
    for frame in ("frame_000", "frame_001", "frame_002"):
        assert Image.open(run / "base_images" / f"{frame}.png").size == (1280, 720)

    # The substitution is recorded, and the UI metadata carries thumbnails.
    plan_meta = materializations(instance, "movie_plan", run_id)[0]
    assert plan_meta["declared_model_id"].value == "wan-2.1"
    assert plan_meta["substituted"].value is True
    assert "data:image/jpeg;base64," in materializations(instance, "video_final", run_id)[0]["preview"].value
    assert "data:image/jpeg;base64," in materializations(instance, "base_images", run_id)[0]["preview"].value
    alignment = json.loads((run / "finalize" / "alignment_map.json").read_text())
    assert alignment["lipsync_applied"] is False
    assert [w["shot_id"] for w in alignment["windows"]] == ["shot_002", "shot_002"]

    # Filming the same run again reuses every finished item and changes no file.
    before = {p: sha256_file(p) for p in run.rglob("*") if p.is_file() and p.suffix in {".png", ".wav", ".mp4"}}
    again = film_run(defs, instance, run_id, store=store)
    assert again.success
    meta = materializations(instance, "video_clips", run_id)
    assert meta[0]["reused"].value == 2 and meta[0]["rendered"].value == 0
    for path, digest in before.items():
        if "finalize" not in path.parts and "assembly" not in path.parts:
            assert sha256_file(path) == digest, path


def test_declared_model_without_a_backend_fails_at_intake(store, instance, sample_envelope):
    with pytest.raises(ModelNotConfiguredError, match="VIDEOS_WAN_MODEL.*--preview"):
        submit(store, instance, sample_envelope, preview=False)
    assert not (store.root / "runs").exists()

    # The same plan reaching the graph another way (the UI, a sensor) fails in movie_plan.
    run_id = "run_00000001"
    submit_request(store, run_id, document=sample_envelope, source="test", preview=False)
    instance.add_dynamic_partitions("run_id", [run_id])
    result = film_run(defs, instance, run_id, store=store)
    assert not result.success
    assert result.failed_stage == "movie_plan"
    assert "wan-2.1" in result.error and "--preview" in result.error
    assert not store.path(run_id, "video_clips", "shot_001.mp4").exists()


def test_unknown_run_id_is_refused(store, instance):
    with pytest.raises(LookupError, match="never submitted"):
        film_run(defs, instance, "run_0badc0de", store=store)


def test_launchpad_config_submits_a_plan_file(store, instance, sample_plan, tmp_path):
    """From the UI: add a partition, then materialize with plan_path in the run config."""
    sample_plan["render_profile"]["video"].update(model_id="animatic", width=160, height=90)  # the size is not at stake
    sample_plan["shots"][0]["duration_sec"] = 2.0
    sample_plan["shots"][1]["duration_sec"] = 2.0
    sample_plan["dialogue_timeline"] = [{"type": "dialogue", "character_id": "ava", "text": "Hi.",
                                         "start_time_sec": 0.5, "duration_sec": 1.0}]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(sample_plan))
    run_id = "run_00000002"
    instance.add_dynamic_partitions("run_id", [run_id])
    result = defs.resolve_job_def("film").execute_in_process(
        instance=instance, partition_key=run_id,
        run_config={"ops": {"movie_plan": {"config": {"plan_path": str(plan_file)}}}},
    )
    assert result.success
    assert count_video_frames(store.path(run_id, "finalize", "video_final.mp4")) == 96


def test_a_progress_reporter_that_breaks_does_not_fail_the_film(store, instance, sample_envelope):
    run_id = submit(store, instance, sample_envelope)
    calls = []

    def closed_pipe(stage, status, seconds):
        calls.append(stage)
        raise BrokenPipeError("the reader went away")

    result = film_run(defs, instance, run_id, store=store, on_stage=closed_pipe, stages=["movie_plan"])
    assert result.success, result.error
    assert calls == ["movie_plan"] and "movie_plan" in result.stage_seconds
