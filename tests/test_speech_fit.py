"""Speech that fits its slot: sped up before any word is cut, and every overrun known in the dry run.

Real espeak-ng speech, real ffmpeg atempo, the real movie_plan and dialogue_audio stages."""

import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.film.final_cut import lipsync_windows
from sparkle_motion_dagster.film.plan import VoiceProfile, validate_plan
from sparkle_motion_dagster.film.speech_fit import FitPolicy, SpeechOverrunError, fit_speech
from sparkle_motion_dagster.film.stitching import LineAudio, stitch
from sparkle_motion_dagster.media.tempo import stretch
from sparkle_motion_dagster.orchestration.runner import DRY_RUN_CONFIG, film_run, submit_prompt_run, submit_run
from sparkle_motion_dagster.resources.planning.template import template_plan
from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech
from sparkle_motion_dagster.resources.speech.fitting import line_speech
from sparkle_motion_dagster.store.storage import sha256_file

ESPEAK = EspeakSpeech()
LONG_TEXT = "Stay close to the lantern, Tomas, and count the steps with me until the beam comes round."
NOOR = VoiceProfile(style="warm", language="en-US")


def spoken(text: str = LONG_TEXT, profile: VoiceProfile = NOOR):
    result = ESPEAK.synthesize_line(text, character_id="noor", voice_profile=profile)
    return result.samples, result.sample_rate


def lantern_plan(window_s: float) -> dict:
    """Two shots, three lines; line 1 (dialogue_timeline[1]) has ``window_s`` before line 2 starts."""
    start = 1.2
    return {
        "title": "Lantern Steps",
        "characters": [
            {"id": "noor", "name": "Noor", "description": "A lighthouse keeper's daughter",
             "voice_profile": {"style": "warm", "language": "en-US"}},
            {"id": "tomas", "name": "Tomas", "description": "Her younger brother",
             "voice_profile": {"style": "hesitant", "language": "en-US"}},
        ],
        "base_images": [{"id": f"frame_{i:03d}", "prompt": f"A coastal path at dusk, view {i}"} for i in range(3)],
        "shots": [
            {"id": "shot_001", "duration_sec": 4.0, "start_base_image_id": "frame_000",
             "end_base_image_id": "frame_001"},
            {"id": "shot_002", "duration_sec": 5.0, "start_base_image_id": "frame_001",
             "end_base_image_id": "frame_002", "is_talking_closeup": True},
        ],
        "dialogue_timeline": [
            {"type": "dialogue", "character_id": "tomas", "text": "Is it far?", "start_time_sec": 0.3,
             "duration_sec": 0.8},
            {"type": "dialogue", "character_id": "noor", "text": LONG_TEXT, "start_time_sec": start,
             "duration_sec": 3.0},
            {"type": "dialogue", "character_id": "tomas", "text": "I can see the light now.",
             "start_time_sec": round(start + window_s, 3), "duration_sec": 1.6},
        ],
        "render_profile": {"video": {"model_id": "animatic", "max_fps": 24, "width": 320, "height": 180}},
    }


def submit(store, instance, document):
    return submit_run(store, instance, document, source="test", preview=False,
                      clip_model_ids=("animatic",), clip_backend="animatic")


# --------------------------------------------------------------------------- the arithmetic and the stretch


def test_the_smallest_tempo_that_fits_up_to_the_limit_then_the_policy():
    policy = FitPolicy(max_tempo=1.25)
    assert fit_speech(4.0, 5.0, policy).outcome == "fits"
    fitted = fit_speech(6.0, 5.0, policy)
    assert (fitted.outcome, fitted.tempo, fitted.kept, fitted.lost) == ("tempo", 1.2, 5.0, 0)
    trimmed = fit_speech(8.0, 5.0, policy)
    assert (trimmed.outcome, trimmed.tempo, trimmed.fitted, trimmed.lost) == ("trim", 1.25, 6.4, pytest.approx(1.4))
    assert fit_speech(8.0, 5.0, FitPolicy(overrun="fail")).outcome == "fail"


def test_atempo_speeds_speech_up_keeping_its_pitch_deterministically():
    rate = 22050
    t = np.arange(rate) / rate
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    faster = stretch(tone, rate, 1.2, 18375)
    assert len(faster) == 18375 and np.array_equal(faster, stretch(tone, rate, 1.2, 18375))
    spectrum = np.abs(np.fft.rfft(faster[2000:-2000].astype(float)))
    peak_hz = np.argmax(spectrum) * rate / len(faster[2000:-2000])
    assert abs(peak_hz - 440) < 5, peak_hz  # a resample would have raised it to 528 Hz


# --------------------------------------------------------------------------- the stitcher


def test_a_line_20_percent_too_long_is_sped_up_to_end_where_the_next_line_starts():
    samples, rate = spoken()
    window = round(len(samples) / 1.2)
    next_line = np.full(2000, 1234, dtype=np.int16)
    start_next = round(1.0 * rate) + window
    runtime = 12.0
    lines = [LineAudio("line_000", 1.0, 2.0, samples, "dialogue_timeline[0]"),
             LineAudio("line_001", start_next / rate, 1.0, next_line)]
    track, (first, second) = stitch(lines, runtime_sec=runtime, sample_rate=rate)
    assert len(track) == round(runtime * rate)  # the film's length unchanged
    assert first.tempo == pytest.approx(1.2, abs=1e-3) and first.timeline_trimmed_s == 0
    assert first.end_time_actual_s == second.start_time_actual_s == start_next / rate
    assert first.duration_audio_fitted_s == window / rate
    # the next line starts at its planned sample, untouched
    assert np.array_equal(track[start_next:start_next + 2000], next_line) and track[start_next - 1] != 1234
    # what is placed is the whole line sped up, not its beginning
    start = round(1.0 * rate)
    assert np.array_equal(track[start:start_next], stretch(samples, rate, len(samples) / window, window))


def test_beyond_the_limit_trim_keeps_time_and_fail_names_the_field():
    samples, rate = spoken()
    window = round(len(samples) / 1.6)
    lines = [LineAudio("line_000", 0.0, 1.0, samples, "dialogue_timeline[2]"),
             LineAudio("line_001", window / rate, 1.0, np.ones(100, dtype=np.int16))]
    _, (first, _) = stitch(lines, runtime_sec=10.0, sample_rate=rate)
    assert first.tempo == 1.25 and first.end_time_actual_s == window / rate
    assert first.timeline_trimmed_s == pytest.approx(len(samples) / rate / 1.25 - window / rate, abs=1e-3)
    with pytest.raises(SpeechOverrunError, match=r"dialogue_timeline\[2\]: .* needs tempo 1\.60"):
        stitch(lines, runtime_sec=10.0, sample_rate=rate, policy=FitPolicy(overrun="fail"))


# --------------------------------------------------------------------------- the stages


def test_a_fitted_line_through_the_stages_subtitles_visemes_and_lipsync_follow_it(store, instance):
    samples, rate = spoken()
    plan = lantern_plan(window_s=round(len(samples) / rate / 1.2, 3))
    run_id = submit(store, instance, plan)
    result = film_run(defs, instance, run_id, store=store, stages=["movie_plan", "dialogue_audio"])
    assert result.success, result.error
    run = store.run_dir(run_id)

    report = json.loads((run / "plan_intake" / "plan_validation.json").read_text())
    (warning,) = [w for w in report["warnings"] if w["kind"] == "overrun"]
    assert warning["field"] == "dialogue_timeline[1]" and warning["lost_s"] == 0
    assert warning["tempo"] == pytest.approx(1.2, abs=0.01) and "fits at tempo 1.20" in warning["message"]

    manifest = json.loads((run / "dialogue_audio" / "dialogue_timeline_audio.json").read_text())
    assert manifest["speech_fit"] == {"max_tempo": 1.25, "overrun": "trim"}
    fitted = manifest["timeline_offsets"]["line_001"]
    assert fitted["tempo"] == pytest.approx(1.2, abs=1e-3) and fitted["timeline_trimmed_s"] == 0
    assert fitted["overrun_policy"] == "trim"
    next_start = plan["dialogue_timeline"][2]["start_time_sec"]
    assert fitted["end_time_actual_s"] == pytest.approx(next_start, abs=1 / rate)
    assert manifest["timeline_offsets"]["line_002"]["start_time_actual_s"] == round(round(next_start * rate) / rate, 6)
    with wave.open(str(run / "dialogue_audio" / "tts_timeline.wav")) as wav:
        assert wav.getnframes() == round(9.0 * wav.getframerate())

    srt = (run / "dialogue_audio" / "dialogue.srt").read_text()
    vtt = (run / "dialogue_audio" / "dialogue.vtt").read_text()
    end = f"{int(next_start // 60):02d}:{next_start % 60:06.3f}"
    assert f"00:00:01,200 --> 00:{end.replace('.', ',')}\nNoor:" in srt
    assert f"00:00:01.200 --> 00:{end}\n<v Noor>" in vtt

    line = next(a for a in manifest["line_artifacts"] if a["line_id"] == "line_001")
    stream = json.loads(open(line["viseme_stream_uri"]).read())
    raw = json.loads(open(line["viseme_stream_raw_uri"]).read())
    placed = fitted["end_time_actual_s"] - fitted["start_time_actual_s"]
    assert stream["tempo"] == fitted["tempo"] and stream["duration_s"] == pytest.approx(placed, abs=1e-6)
    assert stream["visemes"][-1]["viseme"] == "sil" and stream["visemes"][-1]["t"] <= placed + 1e-3
    assert raw["visemes"][-1]["t"] > placed + 0.5  # the spoken line's own stream is the raw clip's
    assert len(stream["visemes"]) == len(raw["visemes"])  # sped up, nothing cut

    from sparkle_motion_dagster.store.run_files import load_run_plan

    windows = lipsync_windows(load_run_plan(store, run_id), manifest["line_artifacts"])
    assert max(w["end_s"] for w in windows if w["line_id"] == "line_001") == pytest.approx(next_start, abs=1 / rate)

    # Resume (lines reused) and regeneration (forced) stitch the very same samples.
    first = sha256_file(run / "dialogue_audio" / "tts_timeline.wav")
    again = film_run(defs, instance, run_id, store=store, stages=["dialogue_audio"])
    forced = {"ops": {"dialogue_audio": {"config": {"force": True}}}}
    assert again.success and sha256_file(run / "dialogue_audio" / "tts_timeline.wav") == first
    regenerated = film_run(defs, instance, run_id, store=store, stages=["dialogue_audio"], run_config=forced)
    assert regenerated.success and sha256_file(run / "dialogue_audio" / "tts_timeline.wav") == first


def test_a_line_60_percent_too_long_is_trimmed_reported_beforehand_and_refused_under_fail(
        store, instance, monkeypatch):
    samples, rate = spoken()
    plan = lantern_plan(window_s=round(len(samples) / rate / 1.6, 3))
    dry = submit(store, instance, plan)
    assert film_run(defs, instance, dry, store=store, stages=["movie_plan"], run_config=DRY_RUN_CONFIG).success
    report = json.loads((store.run_dir(dry) / "plan_intake" / "plan_validation.json").read_text())
    (warning,) = [w for w in report["warnings"] if w["kind"] == "overrun"]
    speech = len(samples) / rate
    assert set(warning) == {"field", "kind", "message", "speech_s", "window_s", "tempo", "lost_s"}
    assert warning["field"] == "dialogue_timeline[1]" and warning["tempo"] == 1.25
    assert warning["lost_s"] == pytest.approx(speech / 1.25 - warning["window_s"], abs=2e-3)
    assert f"will lose {warning['lost_s']:.2f} s" in warning["message"]

    # The run keeps time by trimming just what the dry run said.
    run_id = submit(store, instance, plan)
    assert film_run(defs, instance, run_id, store=store, stages=["movie_plan", "dialogue_audio"]).success
    manifest = json.loads((store.run_dir(run_id) / "dialogue_audio" / "dialogue_timeline_audio.json").read_text())
    trimmed = manifest["timeline_offsets"]["line_001"]
    assert trimmed["tempo"] == 1.25 and trimmed["timeline_trimmed_s"] == pytest.approx(warning["lost_s"], abs=2e-3)

    monkeypatch.setenv("SPARKLE_SPEECH_OVERRUN", "fail")
    for config in (DRY_RUN_CONFIG, None):
        refused = submit(store, instance, plan)
        result = film_run(defs, instance, refused, store=store, stages=["movie_plan", "dialogue_audio"],
                          run_config=config)
        assert not result.success and result.failed_stage == "movie_plan"
        assert "dialogue_timeline[1]: " in result.error and "SPARKLE_SPEECH_OVERRUN=fail" in result.error
        assert not (store.run_dir(refused) / "dialogue_audio").exists()
    # The dialogue stage refuses it too (for engines whose speech is only estimated beforehand).
    result = film_run(defs, instance, run_id, store=store, stages=["dialogue_audio"])
    assert not result.success and "dialogue_timeline[1]: " in result.error
    monkeypatch.setenv("SPARKLE_SPEECH_MAX_TEMPO", "2.5")
    result = film_run(defs, instance, run_id, store=store, stages=["dialogue_audio"])
    assert not result.success and "SPARKLE_SPEECH_MAX_TEMPO" in result.error and "at most 2" in result.error


def test_the_dry_run_prints_overruns_as_json_from_the_command_line(tmp_path):
    samples, rate = spoken()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(lantern_plan(window_s=round(len(samples) / rate / 1.6, 3))))
    env = {**os.environ, "SPARKLE_STATE_DIR": str(tmp_path / "state")}
    env.pop("ARTIFACTS_FS_ROOT", None)
    env.pop("DAGSTER_HOME", None)
    command = [sys.executable, "-m", "sparkle_motion_dagster.cli.main", "run", "--mode", "dry", "--plan", str(path)]
    result = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # nothing but the report on stdout
    (warning,) = [w for w in report["warnings"] if w["kind"] == "overrun"]
    assert warning["field"] == "dialogue_timeline[1]" and warning["lost_s"] > 0.5


def test_a_template_planned_film_from_a_prompt_has_no_overrun(store, instance):
    run_id = submit_prompt_run(store, instance, prompt="A lighthouse keeper finds a message in a bottle on a "
                               "stormy night, and the sea answers.", title="Keeper", preview=False)
    result = film_run(defs, instance, run_id, store=store, stages=["movie_plan"], run_config=DRY_RUN_CONFIG)
    assert result.success, result.error
    report = json.loads((store.run_dir(run_id) / "plan_intake" / "plan_validation.json").read_text())
    assert report["warnings"] == [] and report["speech_fit"]["basis"] == ["measured"]
    # Many prompts and seeds: every line measured by the engine fits before the next one starts,
    # and the shots still cover the timeline.
    timing = ESPEAK.timing(FitPolicy())
    for prompt in ("Two friends argue about the last train home", "Rain.",
                   "Grandmother tells the story of the great flood while the kettle boils and the rain drums on "
                   "the tin roof of the old farmhouse at the edge of the valley"):
        for seed in range(3):
            plan = validate_plan(template_plan(prompt, "The Long Way Round", seed, timing))
            lines = line_speech(plan, ESPEAK)
            assert all(line.speech_s <= line.window.window_s for line in lines), [
                (line.window.field, line.speech_s, line.window.window_s) for line in lines]
            assert plan.dialogue_lines()[-1][1].end_time_sec <= plan.runtime_sec
    # A slower voice gets longer lines: timed by its pace they still fit, where the words-per-second
    # guess would overrun.
    slow = EspeakSpeech(words_per_minute=120)
    prompt = "Two friends argue about the last train home"
    paced = validate_plan(template_plan(prompt, "Late", 0, slow.timing(FitPolicy())))
    assert all(line.speech_s <= line.window.window_s for line in line_speech(paced, slow))
    guessed = validate_plan(template_plan(prompt, "Late", 0))
    assert any(line.speech_s > line.window.window_s for line in line_speech(guessed, slow))
