import numpy as np
import pytest

from sparkle_motion_dagster.film.dialogue import chunk_text, espeak_voice_for
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.film.speech_fit import FitPolicy
from sparkle_motion_dagster.film.stitching import LineAudio, stitch
from sparkle_motion_dagster.media.wav import read_wav, wav_bytes
from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech

RATE = 1000


def tone(seconds: float) -> np.ndarray:
    return np.full(int(seconds * RATE), 1000, dtype=np.int16)


def test_stitched_track_is_the_runtime_to_the_sample():
    track, placed = stitch([LineAudio("line_000", 1.0, 2.0, tone(1.5))], runtime_sec=17.5, sample_rate=RATE)
    assert len(track) == 17_500
    assert (track[1000:2500] == 1000).all() and not track[:1000].any() and not track[2500:].any()
    line = placed[0]
    assert (line.start_time_actual_s, line.end_time_actual_s) == (1.0, 2.5)
    assert line.timeline_padding_s == 0.5 and line.timeline_trimmed_s == 0 and line.timeline_overrun_s == 0


def test_overlong_speech_runs_into_silence_then_is_trimmed_at_the_next_line_when_no_speed_up_is_allowed():
    lines = [
        LineAudio("line_000", 0.0, 1.0, tone(1.5)),  # 0.5 s into the silence before line_001: kept
        LineAudio("line_001", 2.0, 1.0, tone(2.0)),  # would cross line_002's start at 3.5 s: trimmed
        LineAudio("line_002", 3.5, 0.5, tone(1.0)),  # would pass the film's end at 4.0 s: trimmed
    ]
    track, placed = stitch(lines, runtime_sec=4.0, sample_rate=RATE, policy=FitPolicy(max_tempo=1.0))
    assert len(track) == 4000
    first, second, third = placed
    assert first.timeline_overrun_s == 0.5 and first.timeline_trimmed_s == 0 and first.end_time_actual_s == 1.5
    assert second.end_time_actual_s == 3.5 and second.timeline_trimmed_s == 0.5 and second.timeline_overrun_s == 0.5
    assert third.end_time_actual_s == 4.0 and third.timeline_trimmed_s == 0.5
    assert {line.tempo for line in placed} == {1.0}
    # the trimmed end fades out instead of clicking
    assert track[3499] < 1000 and track[3000] == 1000


def test_wav_round_trip_keeps_every_sample(tmp_path):
    samples = (np.sin(np.linspace(0, 20, 2205)) * 20000).astype(np.int16)
    samples[:3] = (-32768, 32767, 0)  # the extremes survive too
    path = tmp_path / "x.wav"
    path.write_bytes(wav_bytes(samples, 22050))
    decoded, rate = read_wav(path)
    assert rate == 22050 and decoded.dtype == np.int16
    assert np.array_equal(decoded, samples)


def test_float_samples_are_written_to_within_one_step_of_int16(tmp_path):
    samples = np.sin(np.linspace(0, 50, 4000)) * 0.9
    samples[:2] = (1.7, -1.7)  # out of range: clipped to full scale
    path = tmp_path / "float.wav"
    path.write_bytes(wav_bytes(samples, 16000))
    decoded, _ = read_wav(path)
    expected = np.clip(samples, -1.0, 1.0) * 32767
    assert np.abs(decoded - expected).max() < 1.0
    assert tuple(decoded[:2]) == (32767, -32767)


def test_wav_reader_averages_channels_and_refuses_other_sample_widths(tmp_path):
    import wave

    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(np.array([[1000, 3000], [-2000, -4000]], dtype=np.int16).tobytes())
    samples, rate = read_wav(stereo)
    assert rate == RATE and samples.tolist() == [2000, -3000]
    eight_bit = tmp_path / "u8.wav"
    with wave.open(str(eight_bit), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(RATE)
        wav.writeframes(bytes(10))
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(eight_bit)


def test_wav_reader(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(wav_bytes(tone(0.25), RATE))
    samples, rate = read_wav(path)
    assert rate == RATE and np.array_equal(samples, tone(0.25))


def test_chunking_respects_the_limit_and_keeps_every_word():
    text = "First sentence here. " * 30 + "a" * 50 + " " + "word " * 200
    chunks = chunk_text(text, 120)
    assert all(0 < len(c) <= 120 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_each_character_gets_a_distinct_stable_voice():
    profile = VoiceProfile(style="calm", language="en-US")
    ava = espeak_voice_for("ava", profile, language="en-us")
    miko = espeak_voice_for("miko", profile, language="en-us")
    assert ava != miko
    assert ava == espeak_voice_for("ava", profile, language="en-us")
    explicit = espeak_voice_for("ava", VoiceProfile(variant="m3", pitch=20, rate=200), language="en-us")
    assert (explicit.name, explicit.pitch, explicit.rate_wpm) == ("en-us+sm_m3", 20, 200)
    with pytest.raises(ValueError, match="voice_profile.variant"):
        espeak_voice_for("ava", VoiceProfile(variant="robot9"), language="en-us")


def test_espeak_speaks_deterministically_whatever_came_before():
    engine = EspeakSpeech()
    ava, miko = VoiceProfile(gender="female"), VoiceProfile(gender="male")
    first = engine.synthesize_line("I was scared of losing us.", character_id="ava", voice_profile=ava)
    engine.synthesize_line("Something else entirely, at length.", character_id="miko", voice_profile=miko)
    again = engine.synthesize_line("I was scared of losing us.", character_id="ava", voice_profile=ava)
    assert first.sample_rate == 22050
    assert 0.8 < len(first.samples) / first.sample_rate < 4.0
    assert np.abs(first.samples).max() > 1000  # real speech, not silence
    assert np.array_equal(first.samples, again.samples)


def test_long_lines_are_spoken_in_chunks():
    engine = EspeakSpeech(max_chunk_chars=45)
    result = engine.synthesize_line("This is a long line. " * 6, character_id="ava", voice_profile=VoiceProfile())
    assert result.chunks == 3
    short = engine.synthesize_line("This is a long line.", character_id="ava", voice_profile=VoiceProfile())
    assert len(result.samples) > 5 * len(short.samples)


def test_unknown_language_falls_back_to_a_known_one():
    engine = EspeakSpeech()
    result = engine.synthesize_line("Bonjour", character_id="x", voice_profile=VoiceProfile(language="fr-FR"))
    assert result.voice["voice"].startswith("fr+")
    result = engine.synthesize_line("Hello", character_id="x", voice_profile=VoiceProfile(language="xx-YY"))
    assert result.voice["voice"].startswith("en+")
