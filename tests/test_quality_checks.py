"""Automated QA: every check passes on a good film and fails, naming the item, on a crafted bad copy;
the QA switch makes a failed clip check a warning (1) or a stop before assembly (0); the final
cut's loudness, measured on its own with ffmpeg's ebur128, is on target."""

import json
import re
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from film_checks import ffmpeg, sparkle, use_state

LANTERN = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "lantern_walk.json"


@pytest.fixture(scope="module")
def good_film(tmp_path_factory):
    """One lantern_walk film at 160x90 with every check evaluated (QA_AUTOMATION_REMOVED=1)."""
    folder = tmp_path_factory.mktemp("good_film")
    with pytest.MonkeyPatch.context() as patch:
        use_state(patch, folder / "state")
        patch.delenv("QA_AUTOMATION_REMOVED", raising=False)
        patch.delenv("SPARKLE_LOUDNESS_LUFS", raising=False)
        result = sparkle("run", "--plan", LANTERN, "--size", "160x90")
        assert result.code == 0, result.stdout + result.stderr
    return folder / "state", result.run_id


@pytest.fixture
def copied_film(good_film, tmp_path, monkeypatch):
    """A private copy of the good film's state (files and Dagster instance) to break things in."""
    state, run_id = good_film
    copy = tmp_path / "state"
    shutil.copytree(state, copy)
    use_state(monkeypatch, copy)
    monkeypatch.delenv("QA_AUTOMATION_REMOVED", raising=False)
    monkeypatch.delenv("SPARKLE_LOUDNESS_LUFS", raising=False)
    from sparkle_motion_dagster.store.storage import ArtifactStore

    return ArtifactStore(copy / "artifacts"), run_id


def run_folder(store, run_id: str) -> Path:
    return store.run_dir(run_id)


def evaluate(store, run_id: str, asset: str):
    from sparkle_motion_dagster.film.quality import CHECKS, evaluate

    name = next(check_name for key, check_name, _ in CHECKS if key == asset)
    return evaluate(asset, name, store, run_id)


def reencode(clip: Path, video_filter: str) -> None:
    """Re-encode a clip in place with ``video_filter`` (frame count and rate kept)."""
    temp = clip.with_name("reencoded.mp4")
    subprocess.run([ffmpeg(), "-y", "-v", "error", "-i", str(clip), "-vf", video_filter, "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(temp)], check=True)
    temp.replace(clip)


def as_rendered(item: Path) -> None:
    """Record ``item`` as the file its stage made (a model that returned a bad clip), so that it is
    reused as it is instead of being rendered again for not matching its record."""
    from sparkle_motion_dagster.store import integrity

    sidecar = integrity.sidecar_path(item)
    record = json.loads(sidecar.read_text())
    integrity.atomic_write_json(sidecar, {**record, integrity.FILE_KEY: integrity.file_record(item)})


def rewrite_wav(path: Path, change) -> None:
    with wave.open(str(path), "rb") as wav:
        rate, samples = wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), np.int16).copy()
    samples = change(samples, rate)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype(np.int16).tobytes())


def line(store, run_id: str, line_id: str) -> dict:
    manifest = json.loads((run_folder(store, run_id) / "dialogue_audio" / "dialogue_timeline_audio.json").read_text())
    return next(entry for entry in manifest["line_artifacts"] if entry["line_id"] == line_id)


# ---------------------------------------------------------------------- the good film


def test_every_check_passes_on_a_good_film_and_status_lists_them_with_values(good_film, monkeypatch):
    state, run_id = good_film
    use_state(monkeypatch, state)
    payload = json.loads(sparkle("status", run_id, "--json").stdout)
    checks = {(c["asset"], c["name"]): c for c in payload["checks"]}
    from sparkle_motion_dagster.film.quality import CHECKS

    assert set(checks) == {(asset, name) for asset, name, _ in CHECKS}
    for check in checks.values():
        assert check["passed"], check
        assert check["severity"] == "WARN"  # QA_AUTOMATION_REMOVED=1: warnings
    clips = checks[("video_clips", "clips_sound")]["metadata"]["clips"]
    assert [c["shot_id"] for c in clips] == ["shot_001", "shot_002"]
    assert all(c["continuity_verified"] and c["frames"] == 72 and c["start_ssim"] >= 0.9 for c in clips)
    assert checks[("dialogue_audio", "dialogue_sound")]["metadata"]["samples"] == 6 * 22050
    stage_rows = {s["asset"]: s for s in payload["stages"]}
    assert stage_rows["video_clips"]["checks"][0]["passed"]
    report = json.loads((state / "artifacts" / "runs" / run_id / "finalize" / "qa_report.json").read_text())
    assert report["qa_mode"] == "automated" and report["passed"] is True and len(report["checks"]) == len(CHECKS)


def test_the_final_cut_is_normalised_to_the_target_measured_independently(good_film):
    state, run_id = good_film
    run_dir = state / "artifacts" / "runs" / run_id
    result = subprocess.run([ffmpeg(), "-hide_banner", "-nostdin", "-i", str(run_dir / "finalize" / "video_final.mp4"),
                             "-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"], capture_output=True)
    summary = result.stderr.decode()[result.stderr.decode().rfind("Summary:"):]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    assert abs(integrated - -16.0) <= 1.0
    alignment = json.loads((run_dir / "finalize" / "alignment_map.json").read_text())
    assert alignment["loudness"]["target_lufs"] == -16.0
    # the stitched track stays as synthesised: quieter than the film plays it
    original = subprocess.run([ffmpeg(), "-hide_banner", "-nostdin", "-i", str(run_dir / "dialogue_audio" /
                               "tts_timeline.wav"), "-af", "ebur128", "-f", "null", "-"], capture_output=True)
    text = original.stderr.decode()
    assert float(re.search(r"I:\s+(-?[\d.]+) LUFS", text[text.rfind("Summary:"):]).group(1)) < integrated - 2


# ---------------------------------------------------------------------- crafted bad copies


def test_a_clip_with_frames_replaced_by_black_fails_naming_the_shot(copied_film, capsys):
    store, run_id = copied_film
    reencode(run_folder(store, run_id) / "video_clips" / "shot_002.mp4", "drawbox=c=black:t=fill:enable='gte(n,12)'")
    outcome = evaluate(store, run_id, "video_clips")
    assert not outcome.passed
    assert any(f.startswith("shot_002: black for") for f in outcome.failures), outcome.failures
    assert not any(f.startswith("shot_001") for f in outcome.failures)
    shot = {c["shot_id"]: c for c in outcome.metadata["clips"]}["shot_002"]
    assert shot["longest_black_s"] > 2.0 and not shot["continuity_verified"]  # its last frame is black too

    result = sparkle("check", run_id)  # through Dagster, on the files as they are
    assert result.code == 1
    assert "FAILED video_clips/clips_sound: shot_002: black for" in result.stderr


def test_a_clip_whose_frames_are_shifted_fails_its_start_continuity(copied_film):
    store, run_id = copied_film
    # the first 36 frames dropped and the last one held: a clip that starts mid-dissolve
    reencode(run_folder(store, run_id) / "video_clips" / "shot_001.mp4", "trim=start_frame=36,setpts=PTS-STARTPTS,"
             "tpad=stop=36:stop_mode=clone")
    outcome = evaluate(store, run_id, "video_clips")
    assert any(f.startswith("shot_001: first frame does not match its start keyframe") for f in outcome.failures)


def test_a_clip_whose_last_frame_is_not_its_end_keyframe_fails(copied_film):
    store, run_id = copied_film
    run_dir = run_folder(store, run_id)
    # the last 12 frames show the shot's start keyframe instead of its end keyframe
    start = run_dir / "base_images" / "frame_001.png"
    clip = run_dir / "video_clips" / "shot_002.mp4"
    temp = clip.with_name("spliced.mp4")
    subprocess.run([ffmpeg(), "-y", "-v", "error", "-i", str(clip), "-loop", "1", "-i", str(start), "-filter_complex",
                    "[1:v]scale=160:90,format=yuv420p[still];[0:v][still]overlay=enable='gte(n,60)':shortest=1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-frames:v", "72", str(temp)], check=True)
    temp.replace(clip)
    outcome = evaluate(store, run_id, "video_clips")
    assert any(f.startswith("shot_002: last frame does not match its end keyframe") for f in outcome.failures), \
        outcome.failures
    assert not any(f.startswith("shot_001") for f in outcome.failures)


def test_a_timeline_shortened_by_one_sample_fails(copied_film):
    store, run_id = copied_film
    rewrite_wav(run_folder(store, run_id) / "dialogue_audio" / "tts_timeline.wav", lambda s, rate: s[:-1])
    outcome = evaluate(store, run_id, "dialogue_audio")
    assert outcome.failures == ["tts_timeline.wav: 132299 samples, expected 132300 (6.0s at 22050 Hz)"]


def test_a_muted_line_fails_naming_it(copied_film):
    store, run_id = copied_film
    spoken = line(store, run_id, "line_001")

    def mute(samples, rate):
        samples[int(spoken["start_time_actual_s"] * rate):int(spoken["end_time_actual_s"] * rate)] = 0
        return samples

    rewrite_wav(run_folder(store, run_id) / "dialogue_audio" / "tts_timeline.wav", mute)
    outcome = evaluate(store, run_id, "dialogue_audio")
    assert len(outcome.failures) == 1 and outcome.failures[0].startswith("line_001: speech in 0% of its window")


def test_a_clipped_line_fails_naming_it(copied_film):
    store, run_id = copied_film
    spoken = line(store, run_id, "line_000")

    def boost(samples, rate):
        window = slice(int(spoken["start_time_actual_s"] * rate), int(spoken["end_time_actual_s"] * rate))
        samples[window] = np.clip(samples[window].astype(np.int32) * 8, -32768, 32767)
        return samples

    rewrite_wav(run_folder(store, run_id) / "dialogue_audio" / "tts_timeline.wav", boost)
    outcome = evaluate(store, run_id, "dialogue_audio")
    assert [f.split(":")[0] for f in outcome.failures] == ["line_000"]
    assert "clip at full scale" in outcome.failures[0]


def test_sound_in_a_planned_silence_fails(copied_film):
    store, run_id = copied_film

    def hum(samples, rate):
        at = int(2.5 * rate)
        samples[at:at + rate // 4] = (3000 * np.sin(np.arange(rate // 4) * 0.1)).astype(np.int16)
        return samples

    rewrite_wav(run_folder(store, run_id) / "dialogue_audio" / "tts_timeline.wav", hum)
    outcome = evaluate(store, run_id, "dialogue_audio")
    assert any(f.startswith("silence at 2.00s") for f in outcome.failures), outcome.failures


def remux_final(store, run_id: str, audio_filter: str) -> None:
    final = run_folder(store, run_id) / "finalize" / "video_final.mp4"
    temp = final.with_name("remuxed.mp4")
    subprocess.run([ffmpeg(), "-y", "-v", "error", "-i", str(final), "-map", "0:v", "-map", "0:a", "-c:v", "copy",
                    "-af", audio_filter, "-c:a", "aac", str(temp)], check=True)
    temp.replace(final)


def test_a_final_whose_audio_is_shifted_fails(copied_film):
    store, run_id = copied_film
    remux_final(store, run_id, "adelay=250,atrim=end=6")
    outcome = evaluate(store, run_id, "video_final")
    assert any("audio is not the dialogue track in time (offset +250 ms" in f for f in outcome.failures), \
        outcome.failures


def test_a_final_10_lu_too_quiet_fails_its_loudness(copied_film):
    store, run_id = copied_film
    remux_final(store, run_id, "volume=-10dB")
    outcome = evaluate(store, run_id, "video_final")
    assert len(outcome.failures) == 1 and "integrated loudness -2" in outcome.failures[0], outcome.failures
    assert abs(outcome.metadata["integrated_lufs"] - -26.0) <= 1.0


def test_a_plan_edited_on_disk_fails_its_invariants(copied_film):
    store, run_id = copied_film
    path = run_folder(store, run_id) / "plan_intake" / "movie_plan.json"
    plan = json.loads(path.read_text())
    plan["shots"][1]["start_base_image_id"] = "frame_000"
    path.write_text(json.dumps(plan))
    outcome = evaluate(store, run_id, "movie_plan")
    assert not outcome.passed and "shots[1].start_base_image_id" in outcome.description


def test_a_flat_keyframe_fails_naming_it(copied_film):
    store, run_id = copied_film
    from PIL import Image

    Image.new("RGB", (160, 90), (40, 40, 40)).save(run_folder(store, run_id) / "base_images" / "frame_001.png")
    outcome = evaluate(store, run_id, "base_images")
    assert outcome.failures == ["frame_001: blank or flat (luma spread 0.0 < 4.0)"]


# ---------------------------------------------------------------------- the switch


@pytest.mark.parametrize("removed", ["0", "1"])
def test_a_failed_clip_check_blocks_assembly_only_when_checks_are_blocking(copied_film, monkeypatch, removed):
    store, run_id = copied_film
    monkeypatch.setenv("QA_AUTOMATION_REMOVED", removed)
    assembly = run_folder(store, run_id) / "assembly" / "video_raw_concat.mp4"
    before = assembly.stat().st_mtime_ns
    clip = run_folder(store, run_id) / "video_clips" / "shot_002.mp4"
    reencode(clip, "drawbox=c=black:t=fill:enable='gte(n,12)'")
    as_rendered(clip)
    result = sparkle("rerun", run_id, "--from", "video_raw_concat")
    report = json.loads((run_folder(store, run_id) / "finalize" / "qa_report.json").read_text())
    assert "video_clips/clips_sound" in report["failed"]
    from sparkle_motion_dagster.lifecycle.review import record_review, review_state

    if removed == "0":
        assert result.code == 1
        assert "video_clips/clips_sound: shot_002:" in result.stderr and "shot_002: black for" in result.stderr
        assert assembly.stat().st_mtime_ns == before  # video_raw_concat did not run
        assert report["checks_blocking"] and next(
            c for c in report["checks"] if c["name"] == "clips_sound")["severity"] == "ERROR"
        record_review(store, run_id, "approve", "Ava")
        state = review_state(store, run_id)
        assert not state["ready_to_share"] and "shot_002" in state["failed_checks"][0]
        record_review(store, run_id, "approve", "Ava", qa_override=True)
        state = review_state(store, run_id)
        assert state["ready_to_share"] and state["qa_override"]
    else:
        assert result.code == 0, result.stdout + result.stderr
        assert "warning: check video_clips/clips_sound failed: shot_002:" in result.stderr
        assert assembly.stat().st_mtime_ns != before  # a warning: assembly went on
        assert next(c for c in report["checks"] if c["name"] == "clips_sound")["severity"] == "WARN"


def test_the_panel_stage_rows_show_what_a_check_measured(good_film, monkeypatch):
    state, run_id = good_film
    use_state(monkeypatch, state)
    from sparkle_motion_dagster.panel.previews import stage_table_html

    status = json.loads(sparkle("status", run_id, "--json").stdout)
    assert html_row(stage_table_html(status, {}), "video_clips").count('data-checks="passed"') == 1
    clips = next(s for s in status["stages"] if s["asset"] == "video_clips")
    clips["checks"] = [{"name": "clips_sound", "passed": False, "severity": "ERROR",
                        "description": "shot_002: black for 2.46s (> 0.5s)"}]
    row = html_row(stage_table_html(status, {}), "video_clips")
    assert 'data-checks="failed"' in row and "shot_002: black for 2.46s (&gt; 0.5s)" in row


def html_row(table: str, asset: str) -> str:
    start = table.index(f'data-stage="{asset}"')
    return table[start:table.index("</tr>", start)]


def test_the_dialogue_mix_is_normalised_again_only_when_its_track_or_target_changes(tmp_path, monkeypatch):
    from sparkle_motion_dagster.film import final_cut
    from sparkle_motion_dagster.media.wav import wav_bytes

    made = []
    real = final_cut.normalise_loudness
    monkeypatch.setattr(final_cut, "normalise_loudness", lambda *a, **k: made.append(1) or real(*a, **k))
    monkeypatch.delenv("SPARKLE_LOUDNESS_LUFS", raising=False)
    rate = 24000
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)
    track, mix = tmp_path / "tts_timeline.wav", tmp_path / "dialogue_mix.wav"
    track.write_bytes(wav_bytes(tone, rate))

    first = final_cut.normalised_dialogue_once(track, mix, sample_rate=rate)
    assert final_cut.normalised_dialogue_once(track, mix, sample_rate=rate) == first and len(made) == 1
    monkeypatch.setenv("SPARKLE_LOUDNESS_LUFS", "-20")  # another target: made again
    assert final_cut.normalised_dialogue_once(track, mix, sample_rate=rate)["target_lufs"] == -20 and len(made) == 2
    track.write_bytes(wav_bytes(tone / 2, rate))  # another track: made again
    final_cut.normalised_dialogue_once(track, mix, sample_rate=rate)
    mix.write_bytes(mix.read_bytes())  # the mix touched by anything else: made again
    final_cut.normalised_dialogue_once(track, mix, sample_rate=rate)
    assert len(made) == 4


def test_a_keyframe_is_read_once_until_it_changes(tmp_path, monkeypatch):
    from PIL import Image

    from sparkle_motion_dagster.film import quality

    opened = []
    real = quality.Image.open
    monkeypatch.setattr(quality.Image, "open", lambda path, *a: opened.append(Path(path).name) or real(path, *a))
    frame = tmp_path / "frame_000.png"
    Image.effect_noise((64, 36), 40).convert("RGB").save(frame)
    reading = quality._keyframe_reading(frame)
    assert quality._keyframe_reading(frame) == reading and opened == ["frame_000.png"]
    Image.new("RGB", (64, 36)).save(frame)  # replaced by a flat picture: read again, and seen flat
    assert quality._keyframe_reading(frame)["spread"] == 0 and len(opened) == 2


@pytest.mark.parametrize("shift", [0, 160, -320, 15_999, -15_999])
def test_the_audio_offset_is_found_to_the_sample_up_to_a_second_either_way(shift):
    from sparkle_motion_dagster.media.analysis import best_lag

    rate = 16_000
    reference = np.random.default_rng(1).standard_normal(10 * rate)
    candidate = np.roll(reference, shift)
    if shift > 0:
        candidate[:shift] = 0
    elif shift < 0:
        candidate[shift:] = 0
    lag, correlation = best_lag(reference, candidate, rate)
    overlap = 1 - abs(shift) / len(reference)  # what is left of the signal to correlate
    assert round(lag * rate) == shift and correlation > 0.99 * overlap


def test_each_normalising_try_is_one_ffmpeg_run_and_reports_what_a_separate_measure_finds(tmp_path, monkeypatch):
    from sparkle_motion_dagster.media import analysis
    from sparkle_motion_dagster.media.wav import wav_bytes

    rate = 22050
    seconds = np.arange(3 * rate) / rate
    # quiet speech-like bursts with sharp peaks: reaching -16 LUFS needs the limiter, so more than one try
    bursts = (np.sin(2 * np.pi * 2 * seconds) > 0.3) * (0.03 * np.sin(2 * np.pi * 300 * seconds))
    bursts[::rate // 7] = 0.9
    source, out = tmp_path / "track.wav", tmp_path / "mix.wav"
    source.write_bytes(wav_bytes(bursts, rate))
    runs = []
    real = analysis.run_ffmpeg
    monkeypatch.setattr(analysis, "run_ffmpeg", lambda args, **k: runs.append(args) or real(args, **k))

    result = analysis.normalise_loudness(source, out, target_lufs=-16.0, true_peak_db=-2.0, sample_rate=rate)
    assert result["rounds"] >= 2  # the limiter took loudness back
    assert len(runs) == 1 + result["rounds"]  # one measure of the source, then one run per try
    assert abs(result["output_lufs"] + 16.0) <= 0.2
    assert analysis.loudness(out, true_peak=False)["integrated_lufs"] == result["output_lufs"]
