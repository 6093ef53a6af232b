"""Viseme streams: espeak-ng phoneme events, the phoneme -> viseme table, and timing phonemes to other audio."""

import itertools
import json

import numpy as np
import pytest

from sparkle_motion_dagster.film import visemes
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.media import espeak
from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech

VOWELS = {"aa", "E", "ih", "oh", "ou"}
TEXT = "Bob made a fine map of the moon, and we went to see it."


def check_stream(stream, duration):
    """The invariants every stream keeps."""
    times = [entry["t"] for entry in stream]
    assert times[0] == 0.0 and times == sorted(times) and len(set(times)) == len(times)
    assert times[-1] <= duration + 1e-3
    assert stream[-1]["viseme"] == "sil"
    assert {entry["viseme"] for entry in stream} <= set(visemes.VISEMES)
    assert all(a["viseme"] != "sil" or b["viseme"] != "sil" for a, b in itertools.pairwise(stream))


def rms(samples, rate, start, end):
    part = samples[int(start * rate):int(end * rate)].astype(np.float64)
    return float(np.sqrt(np.mean(part ** 2))) if len(part) else 0.0


def segments(stream, duration):
    """(start, end, viseme) for each entry."""
    ends = [entry["t"] for entry in stream[1:]] + [duration]
    return [(entry["t"], end, entry["viseme"]) for entry, end in zip(stream, ends)]


# --------------------------------------------------------------------------- phonemes -> visemes


@pytest.mark.parametrize(("phoneme", "expected"), [
    ("p", ["PP"]), ("m", ["PP"]), ("f", ["FF"]), ("ð", ["TH"]), ("t", ["DD"]), ("k", ["kk"]), ("tʃ", ["CH"]),
    ("dʒ", ["CH"]), ("ʃ", ["CH"]), ("z", ["SS"]), ("n", ["nn"]), ("l", ["nn"]), ("ɹ", ["RR"]),
    ("ˈɑː", ["aa"]), ("ɛ", ["E"]), ("ˈiː", ["ih"]), ("ɔ", ["oh"]), ("ʊ", ["ou"]), ("w", ["ou"]),
    ("aɪ", ["aa", "ih"]), ("ˈoʊ", ["oh", "ou"]), ("ˈɛɹ", ["E", "RR"]), ("kʰ", ["kk"]), ("", ["sil"]),
])
def test_phonemes_map_to_oculus_visemes(phoneme, expected):
    assert visemes.phoneme_visemes(phoneme) == expected
    assert visemes.viseme_for(phoneme) == expected[0]


def test_h_takes_the_shape_of_the_sound_after_it():
    spans = [visemes.PhonemeSpan(0.0, 0.1, "h"), visemes.PhonemeSpan(0.1, 0.3, "ˈuː"), visemes.PhonemeSpan(0.3, 0.5, "")]
    stream = visemes.stream_from_spans(spans)
    assert [(e["t"], e["viseme"], e["phoneme"]) for e in stream] == [
        (0.0, "ou", "h"), (0.1, "ou", "ˈuː"), (0.3, "sil", "")]


def test_every_oculus_viseme_folds_onto_preston_blair():
    assert set(visemes.PRESTON_BLAIR) == set(visemes.VISEMES)
    stream = [{"t": 0.0, "viseme": "sil", "phoneme": ""}, {"t": 0.1, "viseme": "PP", "phoneme": "b"},
              {"t": 0.2, "viseme": "aa", "phoneme": "ɑ"}, {"t": 0.3, "viseme": "aa", "phoneme": "a"}]
    assert [e["viseme"] for e in visemes.to_preston_blair(stream)] == ["rest", "MBP", "AI"]


# --------------------------------------------------------------------------- espeak-ng events


def test_espeak_events_do_not_change_the_audio_and_follow_the_text():
    engine = espeak.engine()
    voice = espeak.EspeakVoice("en-us+sm_m2", 165, 50)
    samples, events = engine.synthesize_events(TEXT, voice)
    assert np.array_equal(samples, engine.synthesize(TEXT, voice))
    duration = len(samples) / engine.sample_rate
    words = [e for e in events if e.kind == "word"]
    phonemes = [e for e in events if e.kind == "phoneme"]
    # WORD events point at the words of the text, in order (espeak-ng may fold a short
    # unstressed word such as "the" into its neighbour).
    spoken = [TEXT[w.text_position - 1:w.text_position - 1 + w.length] for w in words]
    remaining = iter(word.strip(",.") for word in TEXT.split())
    assert all(word in remaining for word in spoken) and len(spoken) >= len(TEXT.split()) - 2
    times = [e.t for e in phonemes]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= duration + 0.01
    assert [p.phoneme for p in phonemes[:4]] == ["b", "ˈɑː", "b", "m"]


def test_espeak_visemes_are_timed_to_its_own_audio():
    engine = EspeakSpeech()
    result = engine.synthesize_line(TEXT, character_id="ava", voice_profile=VoiceProfile(gender="female"))
    assert result.viseme_source == "espeak-events"
    check_stream(result.visemes, result.duration_s)
    spoken = [e["viseme"] for e in result.visemes if e["viseme"] != "sil"]
    assert spoken[:3] == ["PP", "aa", "PP"]  # "Bob"
    # Mouth open where the sound is loud, closed where it is quiet.
    rate, pieces = result.sample_rate, segments(result.visemes, result.duration_s)
    vowel_level = np.median([rms(result.samples, rate, s, e) for s, e, v in pieces if v in VOWELS and e - s > 0.03])
    silence = [(s, e) for s, e, v in pieces if v == "sil" and e - s > 0.05]
    assert silence and all(rms(result.samples, rate, s + 0.01, e - 0.01) < vowel_level / 10 for s, e in silence)
    again = engine.synthesize_line(TEXT, character_id="ava", voice_profile=VoiceProfile(gender="female"))
    assert again.visemes == result.visemes


def test_chunked_lines_carry_each_chunk_at_its_offset():
    engine = EspeakSpeech(max_chunk_chars=40)
    text = "Bob made a fine map. We went to the moon to see it."
    line = engine.synthesize_line(text, character_id="x", voice_profile=VoiceProfile())
    first = engine.synthesize_line("Bob made a fine map.", character_id="x", voice_profile=VoiceProfile())
    second = engine.synthesize_line("We went to the moon to see it.", character_id="x", voice_profile=VoiceProfile())
    assert line.chunks == 2
    check_stream(line.visemes, line.duration_s)
    offset = first.duration_s + engine.chunk_pause_sec
    shifted = [{**e, "t": round(e["t"] + offset, 3)} for e in second.visemes if e["viseme"] != "sil"]
    assert [e for e in line.visemes if e["t"] >= offset and e["viseme"] != "sil"] == shifted


# --------------------------------------------------------------------------- timing phonemes to other audio


def test_speech_bounds_find_the_loud_part():
    rate = 16000
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(8000), rng.normal(0, 3000, 16000), np.full(4800, 20.0)]).astype(np.int16)
    start, end = visemes.speech_bounds(audio, rate)
    assert abs(start - 0.5) <= 0.01 and abs(end - 1.5) <= 0.01
    assert visemes.speech_bounds(np.zeros(16000, np.int16), rate) is None
    assert visemes.speech_bounds(audio.astype(np.float32) / 32767, rate) == (start, end)


def test_scaled_alignment_lands_on_audio_spoken_at_another_pace():
    """espeak-ng at 120 wpm with 0.4 s of leading silence stands in for a neural voice: the phonemes
    timed at 165 wpm and warped onto it land close to where that audio's own events put them."""
    engine = espeak.engine()
    slow, events = engine.synthesize_events(TEXT, espeak.EspeakVoice("en-us+sm_f2", 120, 60))
    rate = engine.sample_rate
    audio = np.concatenate([np.zeros(int(0.4 * rate), np.int16), slow, np.zeros(int(0.3 * rate), np.int16)])
    truth = visemes.espeak_stream([espeak.EspeakEvent(e.kind, e.t + 0.4, e.text_position, e.length, e.phoneme)
                                   for e in events], len(audio) / rate)
    stream, source = visemes.aligned_stream(TEXT, "en-US", audio, rate)
    assert source == "espeak-phonemes-scaled"
    check_stream(stream, len(audio) / rate)
    ours = [e for e in stream if e["viseme"] != "sil"]
    theirs = [e for e in truth if e["viseme"] != "sil"]
    assert [e["viseme"] for e in ours] == [e["viseme"] for e in theirs]
    errors = np.abs(np.array([e["t"] for e in ours]) - np.array([e["t"] for e in theirs]))
    assert np.median(errors) < 0.05 and errors.max() < 0.25
    assert abs(ours[0]["t"] - 0.4) < 0.03  # leading silence trimmed
    assert stream[-1]["t"] <= 0.4 + len(slow) / rate + 0.02  # trailing silence trimmed


def test_word_anchors_put_each_words_phonemes_inside_that_word():
    spans = visemes.espeak_phoneme_spans("hello there", "en-US")
    words = [(0, 5, 1.0, 1.5), (6, 11, 2.0, 2.4)]
    audio = np.zeros(16000 * 3, np.int16)  # silent: the anchors alone time it
    aligned, method = visemes.align_spans(spans, audio, 16000, words)
    assert method == "word-anchored"
    hello = [s for s in aligned if s.phoneme and s.text_position == 1]
    there = [s for s in aligned if s.phoneme and s.text_position == 7]
    assert hello and there
    assert min(s.start for s in hello) == pytest.approx(1.0) and max(s.end for s in hello) == pytest.approx(1.5)
    assert min(s.start for s in there) == pytest.approx(2.0) and max(s.end for s in there) == pytest.approx(2.4)
    stream = visemes.stream_from_spans(aligned)
    check_stream(stream, 3.0)
    assert {"t": 1.5, "viseme": "sil", "phoneme": ""} in stream  # the pause between the words in this audio
    assert next(e["t"] for e in stream if e["viseme"] != "sil") == 1.0
    assert visemes.align_spans(spans, audio, 16000)[1] == "silent-audio"


def test_join_streams_and_the_document():
    part = [{"t": 0.0, "viseme": "sil", "phoneme": ""}, {"t": 0.1, "viseme": "PP", "phoneme": "m"},
            {"t": 0.3, "viseme": "sil", "phoneme": ""}]
    joined = visemes.join_streams([(0.0, part), (0.5, part)])
    assert [(e["t"], e["viseme"]) for e in joined] == [(0.0, "sil"), (0.1, "PP"), (0.3, "sil"), (0.6, "PP"),
                                                       (0.8, "sil")]
    document = visemes.viseme_document(joined, line_id="line_000", character_id="ava", text="mm", backend="x",
                                       source="espeak-events", sample_rate=22050, duration_s=1.0)
    assert json.loads(json.dumps(document))["visemes"] == joined
    assert document["viseme_set"] == "oculus-15" and document["visemes_available"][0] == "sil"
