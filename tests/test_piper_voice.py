"""Piper speech on its real weights (the en_US-joe-medium voice from the ``voices`` extra)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from film_checks import audio_seconds, small_plan
from test_provenance import cli, run_id_of
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.resources.selection import speech_from_env
from sparkle_motion_dagster.resources.speech.piper import PACKAGED_VOICE, PiperSpeech, pick_speaker
from sparkle_motion_dagster.resources.settings import SettingsError

LINE = "Is it far? I have walked since dawn, and the lantern is nearly out."


@pytest.fixture(scope="module")
def piper():
    engine = PiperSpeech(voice=PACKAGED_VOICE)
    yield engine
    engine.release()


def wav_samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16), wav.getframerate()


def voiced_fraction(samples: np.ndarray, rate: int, *, floor_dbfs: float = -45.0) -> float:
    """The share of 20 ms windows whose level is above ``floor_dbfs``."""
    window = rate // 50
    frames = samples[: len(samples) // window * window].astype(np.float64).reshape(-1, window) / 32768
    levels = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1e-12)
    return float((levels > floor_dbfs).mean())


def test_the_voice_is_chosen_by_the_environment_and_bad_settings_name_the_variable(tmp_path):
    assert isinstance(speech_from_env({"TTS_PIPER_VOICE": PACKAGED_VOICE}), PiperSpeech)
    with pytest.raises(SettingsError, match="TTS_PIPER_VARIATION"):
        speech_from_env({"TTS_PIPER_VOICE": PACKAGED_VOICE, "TTS_PIPER_VARIATION": "2"})
    with pytest.raises(ValueError, match=r"TTS_PIPER_VOICE \(PiperSpeech.voice\) = 'voice.wav': expected a .onnx"):
        PiperSpeech(voice="voice.wav").runtime()
    orphan = tmp_path / "orphan.onnx"
    orphan.write_bytes(b"\0")
    with pytest.raises(FileNotFoundError, match="orphan.onnx.json is missing"):
        PiperSpeech(voice=str(orphan)).runtime()
    entry = PiperSpeech(voice=str(tmp_path / "gone.onnx")).describe()
    assert entry["ok"] is False and "no such voice file" in entry["problem"]


def test_a_line_is_real_speech_spoken_the_same_way_every_time(piper):
    profile = VoiceProfile()
    first = piper.synthesize_line(LINE, character_id="ava", voice_profile=profile)
    piper.release()  # nothing kept: the second line is spoken again by a freshly loaded voice
    second = piper.synthesize_line(LINE, character_id="ava", voice_profile=profile)
    assert first.sample_rate == 22050 and first.voice["deterministic"] is True
    assert np.array_equal(first.samples, second.samples)
    # English read aloud runs at 10 to 20 characters a second; the level says it is speech, not noise or silence
    assert len(LINE) / 20 < first.duration_s < len(LINE) / 10
    assert voiced_fraction(first.samples, first.sample_rate) > 0.6
    assert first.visemes and first.visemes[-1]["t"] <= first.duration_s


def test_pace_and_variation_come_from_the_voice_profile(piper):
    plain = piper.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile())
    slow = piper.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(rate=110))
    assert slow.duration_s > plain.duration_s * 1.3
    varied = piper.voice_for("ava", VoiceProfile(variation=0.5), speakers={})
    assert varied.variation == 0.5 and varied.deterministic is False


def test_measured_lines_are_what_the_film_speaks(piper):
    """The dry run measures a line by speaking it; the film speaks the same samples."""
    measured = piper.measure_seconds(LINE, character_id="ava", voice_profile=VoiceProfile())
    piper.release()
    spoken = piper.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile())
    assert measured == spoken.duration_s


def test_multi_speaker_voices_take_a_speaker_per_character():
    speakers = {"amy": 0, "joe": 1, "kim": 2}
    assert pick_speaker("ava", VoiceProfile(speaker="kim"), speakers=speakers, num_speakers=3) == 2
    assert pick_speaker("ava", VoiceProfile(speaker=1), speakers=speakers, num_speakers=3) == 1
    picks = {pick_speaker(f"char_{i}", VoiceProfile(), speakers=speakers, num_speakers=3) for i in range(12)}
    assert picks == {0, 1, 2}
    assert pick_speaker("ava", VoiceProfile(), speakers={}, num_speakers=1) is None
    with pytest.raises(ValueError, match=r"voice_profile.speaker = 'bob': the voice has 3 speakers"):
        pick_speaker("ava", VoiceProfile(speaker="bob"), speakers=speakers, num_speakers=3)


def test_a_film_with_the_piper_voice_fits_its_slots_and_rerenders_byte_identically(tmp_path, monkeypatch):
    # The command line in a process of its own: this process's definitions were loaded without the variable.
    monkeypatch.setenv("TTS_PIPER_VOICE", PACKAGED_VOICE)
    plan = small_plan(tmp_path, shots=2, seconds=2.0, dialogue_timeline=[
        {"type": "dialogue", "character_id": "ava", "text": "The boats are back.", "start_time_sec": 0.2,
         "duration_sec": 1.6},
        {"type": "dialogue", "character_id": "ava", "text": "Every one of them, and the fog is lifting at last.",
         "start_time_sec": 2.0, "duration_sec": 1.0}])
    run_id = run_id_of(cli("run", "--plan", str(plan), cwd=tmp_path))
    run = tmp_path / "state" / "artifacts" / "runs" / run_id
    audio = run / "dialogue_audio"
    timeline = json.loads((audio / "dialogue_timeline_audio.json").read_text())
    assert timeline["backend"] == "piper"
    samples, rate = wav_samples(audio / "tts_timeline.wav")
    assert len(samples) == round(4.0 * rate)  # the film's runtime, to the sample
    assert audio_seconds(run / "finalize" / "video_final.mp4") == pytest.approx(4.0, abs=0.05)
    second = timeline["timeline_offsets"]["line_001"]
    assert second["tempo"] > 1.0  # longer than its 1 s window before the film's end: sped up to fit
    first_line, line_rate = wav_samples(audio / "line_000.wav")
    assert voiced_fraction(first_line, line_rate) > 0.5
    records = list((run / ".provenance" / "dialogue_audio").glob("line_000*.json"))
    assert records, "no provenance record for the line"
    record = json.loads(records[0].read_text())
    from sparkle_motion_dagster.resources.speech.piper import file_sha256, resolve_voice

    voice_file, _ = resolve_voice(PACKAGED_VOICE, where="TTS_PIPER_VOICE")
    assert file_sha256(voice_file) in json.dumps(record)
    before = {path.name: path.read_bytes() for path in audio.glob("line_*.wav")} | {
        "tts_timeline.wav": (audio / "tts_timeline.wav").read_bytes()}
    cli("rerun", run_id, "--from", "dialogue_audio", cwd=tmp_path)  # every line spoken again
    after = {path.name: path.read_bytes() for path in audio.glob("line_*.wav")} | {
        "tts_timeline.wav": (audio / "tts_timeline.wav").read_bytes()}
    assert after == before
