"""Neural speech: VITS in process (a tiny random model, loaded through the adapter's from_pretrained
code, offline), the out-of-process speech worker with the project's own engines behind it, and
Chatterbox itself when its environment and weights are configured."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # busy-waiting OpenMP threads crawl on a shared CPU

import json
import signal
import subprocess
import sys
import wave

import numpy as np
import pytest

pytest.importorskip("transformers")

from sparkle_motion_dagster.film import visemes  # noqa: E402
from sparkle_motion_dagster.film.plan import VoiceProfile  # noqa: E402
from sparkle_motion_dagster.resources.selection import describe, speech_from_env  # noqa: E402
from sparkle_motion_dagster.resources.speech import chatterbox, vits  # noqa: E402
from sparkle_motion_dagster.resources.speech.chatterbox import (
    ChatterboxSpeech,
    SpeechWorkerError,
    WorkerSpeech,
    chatterbox_voice_for,
)
from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech  # noqa: E402
from sparkle_motion_dagster.resources.speech.vits import VitsSpeech, build_tiny_vits  # noqa: E402

LINE = "I was scared of losing us, but the map was right."
WORKER_THREADS = 1


@pytest.fixture(scope="module", autouse=True)
def release_models(one_torch_thread):
    yield
    vits.release()
    chatterbox.release()


@pytest.fixture(scope="module")
def vits_dir(tmp_path_factory):
    return build_tiny_vits(tmp_path_factory.mktemp("models") / "vits")


@pytest.fixture(scope="module")
def multi_speaker_dir(tmp_path_factory):
    return build_tiny_vits(tmp_path_factory.mktemp("models") / "vits-3", num_speakers=3)


@pytest.fixture
def speech(vits_dir):
    return VitsSpeech(model=str(vits_dir), device="cpu")


def check_stream(stream, duration):
    times = [entry["t"] for entry in stream]
    assert times[0] == 0.0 and times == sorted(times) and len(set(times)) == len(times)
    assert times[-1] <= duration + 1e-3 and stream[-1]["viseme"] == "sil"
    assert {entry["viseme"] for entry in stream} <= set(visemes.VISEMES)


# --------------------------------------------------------------------------- VITS in process


def test_tiny_model_folder_is_a_real_vits_checkpoint(vits_dir):
    names = {p.name for p in vits_dir.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "tokenizer_config.json"} <= names
    assert json.loads((vits_dir / "config.json").read_text())["model_type"] == "vits"
    assert vits.resolve_model_source(str(vits_dir)) == str(vits_dir.resolve())
    assert vits.resolve_model_source("facebook/mms-tts-eng") == "facebook/mms-tts-eng"


def test_model_source_errors_name_the_variable(tmp_path):
    with pytest.raises(ValueError, match="TTS_VITS_MODEL.*does not exist"):
        vits.resolve_model_source(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="TTS_VITS_MODEL.*'bert' model, not a VITS one"):
        vits.resolve_model_source(str(tmp_path))


def test_vits_speaks_through_from_pretrained_deterministically(speech, vits_dir):
    ava = VoiceProfile(gender="female")
    first = speech.synthesize_line(LINE, character_id="ava", voice_profile=ava)
    assert vits.loaded_key() == (str(vits_dir.resolve()), "cpu")
    assert first.sample_rate == 16000 and first.samples.dtype == np.int16 and first.chunks == 1
    # The audio is exactly the predicted frames x 256 samples: its length is the measured duration.
    assert len(first.samples) == first.voice["frames"] * 256 and first.duration_s > 0.5
    assert np.abs(first.samples.astype(np.int32)).max() > 100
    speech.synthesize_line("Something else entirely.", character_id="miko", voice_profile=ava)
    again = speech.synthesize_line(LINE, character_id="ava", voice_profile=ava)
    assert np.array_equal(first.samples, again.samples) and first.visemes == again.visemes


def test_characters_get_their_own_seed_and_explicit_values_win(speech):
    ava = speech.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile())
    miko = speech.synthesize_line(LINE, character_id="miko", voice_profile=VoiceProfile())
    assert ava.voice["seed"] != miko.voice["seed"]
    assert not np.array_equal(ava.samples[:2000], miko.samples[:2000])
    same = VoiceProfile(seed=7)
    assert np.array_equal(speech.synthesize_line(LINE, character_id="ava", voice_profile=same).samples,
                          speech.synthesize_line(LINE, character_id="miko", voice_profile=same).samples)


def test_speaking_rate_and_noise_scale_shape_the_audio(speech):
    normal = speech.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(seed=3))
    slow = speech.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(seed=3, speaking_rate=0.5))
    assert slow.voice["speaking_rate"] == 0.5 and len(slow.samples) > 1.6 * len(normal.samples)
    by_wpm = speech.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(seed=3, rate=330))
    assert by_wpm.voice["speaking_rate"] == 2.0 and len(by_wpm.samples) < len(normal.samples)
    calm = speech.voice_for("ava", VoiceProfile(style="calm"))
    assert calm.speaking_rate == pytest.approx(150 / 165, abs=1e-6)
    quiet = speech.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(seed=3, noise_scale=0.0))
    assert len(quiet.samples) == len(normal.samples) and not np.array_equal(quiet.samples, normal.samples)
    with pytest.raises(ValueError, match="voice_profile.noise_scale = 'loud'"):
        speech.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(noise_scale="loud"))


def test_long_lines_are_chunked_and_joined(speech):
    text = "The map was right. We went up to the roof. The rain stopped at last."
    chunked = VitsSpeech(model=speech.model, device="cpu", max_chunk_chars=30)
    line = chunked.synthesize_line(text, character_id="ava", voice_profile=VoiceProfile())
    parts = [speech.synthesize_line(chunk, character_id="ava", voice_profile=VoiceProfile())
             for chunk in chunked.split_text(text)]
    assert line.chunks == len(parts) == 3
    pause = int(chunked.chunk_pause_sec * 16000)
    assert len(line.samples) == sum(len(p.samples) for p in parts) + 2 * pause
    assert np.array_equal(line.samples[:len(parts[0].samples)], parts[0].samples)
    check_stream(line.visemes, line.duration_s)


def test_vits_visemes_follow_the_models_own_word_timing(speech, vits_dir):
    voice = speech.voice_for("ava", VoiceProfile())
    audio = vits.generate(str(vits_dir.resolve()), "cpu", LINE, voice)
    words = LINE.replace(",", "").replace(".", "").split()
    assert [LINE[a:b].strip(",.") for a, b, _, _ in audio.word_spans] == words
    times = [t for _, _, t0, t1 in audio.word_spans for t in (t0, t1)]
    assert times == sorted(times) and times[-1] <= len(audio.samples) / audio.sample_rate + 1e-6
    result = speech.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile())
    assert result.viseme_source == "espeak-phonemes-word-anchored"
    check_stream(result.visemes, result.duration_s)
    # "map" is spoken inside the model's span for "map": its PP starts where that word starts.
    start = next(t0 for a, b, t0, _ in audio.word_spans if LINE[a:b] == "map")
    assert any(e["viseme"] == "PP" and abs(e["t"] - start) < 0.002 for e in result.visemes)


def test_nothing_speakable_becomes_a_short_silence(speech):
    result = speech.synthesize_line("...", character_id="ava", voice_profile=VoiceProfile())
    assert len(result.samples) == 1600 and not result.samples.any()
    assert [e["viseme"] for e in result.visemes] == ["sil"]


def test_multi_speaker_models_take_a_speaker_per_character(multi_speaker_dir):
    engine = VitsSpeech(model=str(multi_speaker_dir), device="cpu")
    zero = engine.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(seed=1, speaker_id=0))
    one = engine.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(seed=1, speaker_id=1))
    assert zero.voice["speaker_id"] == 0 and one.voice["speaker_id"] == 1
    assert not np.array_equal(zero.samples[:2000], one.samples[:2000])
    assert engine.synthesize_line("Hi.", character_id="ava", voice_profile=VoiceProfile()).voice["speaker_id"] in (0, 1, 2)
    with pytest.raises(ValueError, match="voice_profile.speaker_id = 3: the model has 3 speaker"):
        engine.synthesize_line(LINE, character_id="ava", voice_profile=VoiceProfile(speaker_id=3))


def test_fingerprint_names_the_weights_and_release_frees_them(speech, vits_dir):
    speech.synthesize_line("Hi.", character_id="ava", voice_profile=VoiceProfile())
    fingerprint = speech.fingerprint()
    assert fingerprint["backend"] == "vits" and fingerprint["resolved"]["model_files"].startswith("folder:")
    vits.release()
    assert vits.loaded_key() is None


# --------------------------------------------------------------------------- configuration


def test_engines_are_selected_by_the_environment(tmp_path, vits_dir):
    assert speech_from_env({}) is None
    chosen = speech_from_env({"TTS_VITS_MODEL": str(vits_dir), "TTS_VITS_DEVICE": "cpu"})
    assert isinstance(chosen, VitsSpeech) and chosen.device == "cpu"
    with pytest.raises(ValueError, match="TTS_VITS_DEVICE"):
        speech_from_env({"TTS_VITS_MODEL": str(vits_dir), "TTS_VITS_DEVICE": "tpu"})
    both = speech_from_env({"TTS_VITS_MODEL": str(vits_dir), "TTS_CHATTERBOX_PYTHON": sys.executable,
                            "TTS_CHATTERBOX_DEVICE": "cpu"})
    assert isinstance(both, ChatterboxSpeech) and both.model == "ResembleAI/chatterbox"
    with pytest.raises(ValueError, match="TTS_CHATTERBOX_MODEL.*is set but TTS_CHATTERBOX_PYTHON is not"):
        speech_from_env({"TTS_CHATTERBOX_MODEL": str(tmp_path)})
    with pytest.raises(ValueError, match="TTS_CHATTERBOX_PYTHON.*no such interpreter"):
        speech_from_env({"TTS_CHATTERBOX_PYTHON": str(tmp_path / "python")})


def test_describe_reports_for_the_doctor(tmp_path, vits_dir):
    assert describe({})["backend"] == "espeak-ng" and describe({})["ok"]
    good = describe({"TTS_VITS_MODEL": str(vits_dir), "TTS_VITS_DEVICE": "cpu"})
    assert good["ok"] and good["backend"] == "vits" and good["device"] == "cpu"
    bad = describe({"TTS_VITS_MODEL": str(tmp_path / "nowhere")})
    assert not bad["ok"] and "does not exist" in bad["problem"]
    no_chatterbox = describe({"TTS_CHATTERBOX_PYTHON": sys.executable})
    assert not no_chatterbox["ok"] and "chatterbox-tts is not installed" in no_chatterbox["problem"]


# --------------------------------------------------------------------------- the speech worker


@pytest.fixture(scope="module")
def espeak_worker_speech():
    return WorkerSpeech(engine="espeak")


def test_worker_with_espeak_matches_in_process_speech_and_stays_up(espeak_worker_speech):
    engine, local = espeak_worker_speech, EspeakSpeech()
    profile = VoiceProfile(gender="male", style="calm")
    remote = engine.synthesize_line(LINE, character_id="miko", voice_profile=profile)
    pid = remote.voice["worker_pid"]
    for text in ("A second line.", "And a third one, at length, to be sure."):
        theirs = engine.synthesize_line(text, character_id="ava", voice_profile=VoiceProfile())
        ours = local.synthesize_line(text, character_id="ava", voice_profile=VoiceProfile())
        assert np.array_equal(theirs.samples, ours.samples) and theirs.visemes == ours.visemes
        assert theirs.voice["worker_pid"] == pid  # one worker, kept across lines
    ours = local.synthesize_line(LINE, character_id="miko", voice_profile=profile)
    assert np.array_equal(remote.samples, ours.samples) and remote.sample_rate == ours.sample_rate
    assert remote.visemes == ours.visemes and remote.viseme_source == "espeak-events"


def test_a_dead_worker_is_restarted(espeak_worker_speech):
    engine = espeak_worker_speech
    first = engine.synthesize_line("Still here?", character_id="ava", voice_profile=VoiceProfile())
    worker = engine.worker()
    starts = worker.starts
    os.kill(first.voice["worker_pid"], signal.SIGKILL)  # the worker this test's process started
    worker.proc.wait()
    again = engine.synthesize_line("Still here?", character_id="ava", voice_profile=VoiceProfile())
    assert again.voice["worker_pid"] != first.voice["worker_pid"] and worker.starts == starts + 1
    assert np.array_equal(first.samples, again.samples)


def test_a_stuck_worker_times_out_and_the_next_request_gets_a_fresh_one(espeak_worker_speech):
    worker = espeak_worker_speech.worker()
    worker.start()
    stuck_pid = worker.pid
    with pytest.raises(SpeechWorkerError, match="no answer after 0.5 s"):
        worker.request({"op": "sleep", "seconds": 120}, timeout=0.5)
    assert not worker.alive()
    result = espeak_worker_speech.synthesize_line("Back again.", character_id="ava", voice_profile=VoiceProfile())
    assert result.voice["worker_pid"] != stuck_pid and len(result.samples) > 0


def test_worker_errors_are_messages_and_deaths_are_reported(espeak_worker_speech):
    worker = espeak_worker_speech.worker()
    worker.start()
    pid = worker.pid
    with pytest.raises(SpeechWorkerError, match="espeak voice needs name"):
        worker.request({"op": "synthesize", "text": "hi", "voice": {}}, timeout=30)
    with pytest.raises(SpeechWorkerError, match="ValueError.*no voice 'xx\\+nothing'|no voice"):
        worker.synthesize("hi", {"name": "xx+nothing", "rate_wpm": 160, "pitch": 50}, timeout=30)
    assert worker.pid == pid and worker.alive()  # refused requests leave it running
    with pytest.raises(SpeechWorkerError, match="exited with status 3"):
        worker.request({"op": "exit", "code": 3}, timeout=30, retry_on_death=False)


def test_worker_that_cannot_load_its_engine_says_why():
    engine = ChatterboxSpeech(python=sys.executable, device="cpu")
    with pytest.raises(SpeechWorkerError, match="chatterbox-tts is not importable.*make chatterbox-env"):
        engine.synthesize_line("Hello.", character_id="ava", voice_profile=VoiceProfile())


def test_worker_check_exits_non_zero_when_it_finds_a_problem(tmp_path):
    """make chatterbox-env relies on this exit status to fail when the environment cannot run the engine."""
    def check(engine: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(chatterbox.WORKER_SCRIPT), "--engine", engine, "--check"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    missing = check("chatterbox")  # chatterbox-tts is not installed in the project's environment
    report = json.loads(missing.stdout.strip().splitlines()[-1])
    assert missing.returncode == 1 and report["ok"] is False
    assert any("chatterbox-tts is not installed" in problem for problem in report["problems"])

    fine = check("espeak")  # the project itself is importable here, without any sys.path edits
    assert fine.returncode == 0 and json.loads(fine.stdout.strip().splitlines()[-1])["ok"] is True


def test_worker_protocol_on_the_wire(tmp_path):
    """The script itself, driven by hand: hello, ready, a WAV per request, errors as messages, shutdown."""
    proc = subprocess.Popen([sys.executable, str(chatterbox.WORKER_SCRIPT), "--engine", "espeak"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        read = lambda: json.loads(proc.stdout.readline())  # noqa: E731

        def send(message):
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()

        hello, ready = read(), read()
        assert hello["type"] == "hello" and hello["protocol"] == 1 and hello["pid"] == proc.pid
        assert ready["type"] == "ready" and ready["sample_rate"] == 22050
        out = tmp_path / "line.wav"
        send({"id": "a", "op": "synthesize", "text": "Hello there.", "out": str(out),
              "voice": {"name": "en-us+sm_f1", "rate_wpm": 165, "pitch": 50}})
        result = read()
        assert result["id"] == "a" and result["type"] == "result" and result["wav"] == str(out)
        with wave.open(str(out)) as handle:
            assert handle.getframerate() == 22050 and handle.getnframes() == result["num_samples"] > 5000
        assert any(event[0] == "phoneme" for event in result["info"]["events"])
        proc.stdin.write("this is not json\n")
        proc.stdin.flush()
        assert read()["type"] == "error"
        send({"id": "b", "op": "synthesize", "text": "  "})
        assert read() == {"id": "b", "type": "error", "message": "RequestError: text must be a non-empty string"}
        send({"id": "c", "op": "shutdown"})
        assert read() == {"id": "c", "type": "bye"}
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_worker_with_vits_matches_in_process_vits(vits_dir):
    remote = WorkerSpeech(engine="vits", model=str(vits_dir), device="cpu", threads=WORKER_THREADS)
    local = VitsSpeech(model=str(vits_dir), device="cpu")
    for character in ("ava", "miko"):
        theirs = remote.synthesize_line(LINE, character_id=character, voice_profile=VoiceProfile())
        ours = local.synthesize_line(LINE, character_id=character, voice_profile=VoiceProfile())
        assert np.array_equal(theirs.samples, ours.samples) and theirs.sample_rate == 16000
        assert theirs.visemes == ours.visemes and theirs.viseme_source == "espeak-phonemes-word-anchored"
    assert remote.worker().starts == 1


# --------------------------------------------------------------------------- Chatterbox voices and chunks


def test_chatterbox_voices_map_the_profile(tmp_path):
    reference = tmp_path / "ava.wav"
    reference.write_bytes(b"RIFF0000WAVE")
    voice = chatterbox_voice_for("ava", VoiceProfile(style="excited", reference_audio=str(reference)))
    assert voice["reference_audio"] == str(reference.resolve()) and voice["exaggeration"] == 0.7
    assert voice == chatterbox_voice_for("ava", VoiceProfile(style="excited", reference_audio=str(reference)))
    assert voice["seed"] != chatterbox_voice_for("miko", VoiceProfile())["seed"]
    explicit = chatterbox_voice_for("ava", VoiceProfile(style="calm", exaggeration=1.2, cfg_weight=0.3, seed=5))
    assert (explicit["exaggeration"], explicit["cfg_weight"], explicit["seed"]) == (1.2, 0.3, 5)
    assert explicit["reference_audio"] is None
    with pytest.raises(ValueError, match="voice_profile.reference_audio = .*no such file"):
        chatterbox_voice_for("ava", VoiceProfile(reference_audio=str(tmp_path / "missing.wav")))
    with pytest.raises(ValueError, match="voice_profile.cfg_weight = 3: expected 0.0 to 1.0"):
        chatterbox_voice_for("ava", VoiceProfile(cfg_weight=3))
    engine = ChatterboxSpeech(python=sys.executable)
    first = engine.voice_fingerprint("ava", VoiceProfile(reference_audio=str(reference)))
    reference.write_bytes(b"RIFF1111WAVE")
    assert engine.voice_fingerprint("ava", VoiceProfile(reference_audio=str(reference))) != first
    assert engine.voice_fingerprint("ava", VoiceProfile()) == {}


def test_chatterbox_generations_stay_under_300_chars_and_30_seconds():
    engine = ChatterboxSpeech(python=sys.executable)
    text = " ".join(["This sentence goes on and on without a single stop"] * 30)
    chunks = engine.split_text(text)
    assert " ".join(chunks).split() == text.split()
    assert all(len(c) <= 300 and len(c.split()) / 2.6 <= 30 for c in chunks)
    short = ChatterboxSpeech(python=sys.executable, max_chunk_sec=5.0).split_text("one two three four five " * 6)
    assert len(short) == 3 and all(len(c.split()) / 2.6 <= 5 for c in short)


# --------------------------------------------------------------------------- Chatterbox itself


def _chatterbox_unavailable() -> str | None:
    python = os.environ.get("TTS_CHATTERBOX_PYTHON", "").strip()
    if not python:
        return "TTS_CHATTERBOX_PYTHON is not set (make chatterbox-env builds .venv-chatterbox)"
    try:
        report = chatterbox.run_check(python, "chatterbox", os.environ.get("TTS_CHATTERBOX_MODEL", ""))
    except SpeechWorkerError as error:
        return str(error)
    return None if report.get("ok") else "; ".join(report.get("problems", ["not usable"]))


@pytest.mark.slow
def test_chatterbox_speaks_through_its_worker():
    reason = _chatterbox_unavailable()
    if reason:
        pytest.skip(f"Chatterbox is not available: {reason}")
    engine = ChatterboxSpeech.from_env()
    first = engine.synthesize_line("The rain stopped at last.", character_id="ava", voice_profile=VoiceProfile())
    assert first.sample_rate == 24000 and 0.5 < first.duration_s < 15
    assert np.abs(first.samples.astype(np.int32)).max() > 1000
    check_stream(first.visemes, first.duration_s)
    assert first.viseme_source == "espeak-phonemes-scaled"
    again = engine.synthesize_line("The rain stopped at last.", character_id="ava", voice_profile=VoiceProfile())
    assert again.voice["worker_pid"] == first.voice["worker_pid"]  # the model stayed loaded
    assert np.array_equal(first.samples, again.samples)  # same seed, same audio
