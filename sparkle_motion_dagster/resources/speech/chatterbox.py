"""Chatterbox speech, out of process: a long-lived worker in Chatterbox's own environment.

Why out of process
    ``chatterbox-tts`` pins torch 2.6, transformers 5.2, diffusers 0.29 and
    numpy < 2; the pipeline runs torch 2.13, transformers 5.23, diffusers 0.42
    and numpy 2. They cannot share an environment, so Chatterbox runs under
    the Python of a separate one (``make chatterbox-env`` builds
    ``.venv-chatterbox``) and ``TTS_CHATTERBOX_PYTHON`` points at it.

Why a long-lived worker and not Dagster Pipes
    Pipes launches an external process per asset step and streams its logs
    and materializations back; that process runs to completion. The
    dialogue asset's work (per-line cache, stitching, subtitles, visemes)
    would have to move into the foreign environment, or each launch would
    reload the model (Chatterbox loads 0.5 B + 0.3 B parameters: tens of
    seconds on a CPU). The worker keeps the model loaded across lines, steps,
    runs and re-materializations of single lines for the life of the Dagster
    process, keeps ``SpeechEngine`` the one interface every engine serves
    (the asset does not know which engine runs where), fails per line (a bad
    line is an error message, the worker stays up), and needs nothing in the
    foreign environment beyond the standard library (no ``dagster-pipes``).
    What Pipes would add, the worker's messages carry: engine versions,
    load and generation times (in the line's voice info) and the tail of its
    stderr in every error.

The worker (``sparkle_motion_dagster/resources/speech/worker/speech_worker.py``)
    A stdlib-only script speaking JSON lines (protocol in its docstring). One
    worker per (python, engine, model, device) per process, started on first
    use, restarted when it has died (a request that finds it dead is retried
    once on a fresh worker), killed when a request exceeds its timeout (the
    next request starts a fresh one). ``release()`` stops them; they also
    stop at interpreter exit and on end of input when this process dies.

Voices (``voice_profile`` keys; extra keys are allowed in plans)
    ==================  ===================================================================
    ``reference_audio`` a WAV/FLAC/MP3 of the character's voice (a few seconds to 10 s;
                        a relative path is resolved from the working directory); without
                        it the checkpoint's built-in voice speaks
    ``exaggeration``    emotion intensity, 0.25 - 2 (default 0.5; ``style`` nudges it:
                        excited/angry/urgent 0.7, calm/sad/whisper/confessional 0.35)
    ``cfg_weight``      0 - 1 (default 0.5; lower for fast or very expressive speakers)
    ``temperature``     sampling temperature (default 0.8)
    ``seed``            sampling seed (default: a stable hash of the character id)
    ==================  ===================================================================

    Generations are at most ``max_chunk_chars`` (300) characters and about
    ``max_chunk_sec`` (30 s, estimated at 2.6 words per second) each: the
    model stops at 1000 speech tokens (40 s) and drifts on long inputs.
    Chunks are joined with a short pause.

Configuration (``ChatterboxSpeech.from_env()``; None when ``TTS_CHATTERBOX_PYTHON`` is unset; each field
names its variable, see ``resources/settings.py``)
    ============================  =======================================================
    TTS_CHATTERBOX_PYTHON         the python of Chatterbox's environment (required)
    TTS_CHATTERBOX_MODEL          checkpoint folder, or Hugging Face repo id (default
                                  ``ResembleAI/chatterbox``, read through the worker's HF
                                  cache; ``HF_HUB_OFFLINE=1`` keeps it offline). A folder
                                  with ``t3_mtl23ls_v2.safetensors`` is the multilingual model
    TTS_CHATTERBOX_DEVICE         auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps
    TTS_CHATTERBOX_TIMEOUT_SEC    per-generation timeout (900)
    ============================  =======================================================

The generic :class:`WorkerSpeech` runs any worker engine (``espeak``,
``vits``, ``chatterbox``); the tests and the benchmark run the mechanism
with the project's own engines behind it.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from sparkle_motion_dagster.film.dialogue import (
    _stable_int,
    chunk_text,
    espeak_language,
    espeak_voice_for,
    estimate_speech_seconds,
)
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.resources import model_support
from sparkle_motion_dagster.resources.settings import EnvConfigured, SettingProblem, SettingsError, env_field
from sparkle_motion_dagster.resources.speech import ChunkSpeech, SpeechEngine
from sparkle_motion_dagster.store.storage import sha256_file

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker" / "speech_worker.py"
PROTOCOL = 1
DEFAULT_MODEL = "ResembleAI/chatterbox"
WORKER_DEVICE = r"^(?i:auto|cpu|mps|cuda(:\d+)?)$"
STYLE_EXAGGERATION = {"excited": 0.7, "angry": 0.7, "urgent": 0.7, "calm": 0.35, "sad": 0.35, "whisper": 0.35,
                      "confessional": 0.35}


class SpeechWorkerError(RuntimeError):
    """The worker could not start, died, timed out, or refused a request."""


# --------------------------------------------------------------------------- the worker process


class WorkerProcess:
    """One running ``speech_worker.py`` and its pipes. Thread-safe: requests are serialised."""

    def __init__(self, python: str, engine: str, *, model: str = "", device: str = "auto", threads: int = 0,
                 startup_timeout: float = 900.0) -> None:
        self.python, self.engine, self.model, self.device, self.threads = python, engine, model, device, threads
        self.startup_timeout = startup_timeout
        self.lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.ready: dict[str, Any] = {}
        self.hello: dict[str, Any] = {}
        self.starts = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=60)
        self._ids = itertools.count(1)
        self.scratch = Path(tempfile.mkdtemp(prefix="sparkle-speech-client-"))

    # ------------------------------------------------------------ life cycle

    def command(self) -> list[str]:
        command = [self.python, "-u", str(WORKER_SCRIPT), "--engine", self.engine, "--device", self.device]
        if self.model:
            command += ["--model", self.model]
        if self.threads:
            command += ["--threads", str(self.threads)]
        return command

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> dict[str, Any]:
        """Start the worker (if it is not running) and wait for it to load its model."""
        with self.lock:
            if self.alive() and self.ready:
                return self.ready
            self.stop()
            if not Path(self.python).exists() and shutil.which(self.python) is None:
                raise SpeechWorkerError(f"{self._name()}: the python {self.python!r} does not exist")
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
            env["PYTHONUNBUFFERED"] = "1"
            self._lines, self._stderr = queue.Queue(), collections.deque(maxlen=60)
            try:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, env=env, text=True, encoding="utf-8",
                                             errors="replace", bufsize=1)
            except OSError as error:
                raise SpeechWorkerError(f"{self._name()}: cannot run {self.python!r}: {error}") from None
            self.starts += 1
            threading.Thread(target=self._pump_stdout, args=(self.proc, self._lines), daemon=True,
                             name=f"speech-worker-{self.proc.pid}-out").start()
            threading.Thread(target=self._pump_stderr, args=(self.proc, self._stderr), daemon=True,
                             name=f"speech-worker-{self.proc.pid}-err").start()
            self.hello = self._expect({"hello"}, self.startup_timeout, during="starting")
            if self.hello.get("protocol") != PROTOCOL:
                self.stop()
                raise SpeechWorkerError(f"{self._name()}: speaks protocol {self.hello.get('protocol')!r}, "
                                        f"this client {PROTOCOL}")
            self.ready = self._expect({"ready"}, self.startup_timeout, during="loading its model")
            log.info("speech worker %s ready (pid %s, %.1f s to load)", self.engine, self.pid,
                     self.ready.get("load_seconds", 0))
            return self.ready

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with self.lock:
            proc, self.proc, self.ready = self.proc, None, {}
            if proc is None:
                return
            if proc.poll() is None:
                try:
                    proc.stdin.write(json.dumps({"id": "stop", "op": "shutdown"}) + "\n")
                    proc.stdin.flush()
                    proc.wait(timeout)
                except (OSError, ValueError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass

    def kill(self) -> None:
        with self.lock:
            proc, self.proc, self.ready = self.proc, None, {}
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ------------------------------------------------------------ requests

    def request(self, payload: dict[str, Any], *, timeout: float, retry_on_death: bool = True) -> dict[str, Any]:
        """Send one request and return its ``result``/``pong``; start or restart the worker as needed."""
        with self.lock:
            for attempt in (1, 2):
                self.start()
                ident = str(next(self._ids))
                try:
                    self.proc.stdin.write(json.dumps({**payload, "id": ident}) + "\n")
                    self.proc.stdin.flush()
                    reply = self._expect({"result", "pong", "error", "bye"}, timeout, ident=ident,
                                         during=f"{payload.get('op')} request")
                except _WorkerDied as died:
                    if attempt == 2 or not retry_on_death:
                        raise SpeechWorkerError(str(died)) from None
                    log.warning("%s; restarting it", died)
                    continue
                except BrokenPipeError:
                    if attempt == 2 or not retry_on_death:
                        raise SpeechWorkerError(f"{self._name()}: the worker closed its input{self._tail()}") from None
                    continue
                if reply["type"] == "error":
                    raise SpeechWorkerError(f"{self._name()}: {reply.get('message')}{self._tail()}")
                return reply
        raise AssertionError("unreachable")

    def synthesize(self, text: str, voice: dict[str, Any], *, timeout: float) -> tuple[Any, int, dict[str, Any]]:
        """int16 samples, sample rate and the worker's info for one generation."""
        from sparkle_motion_dagster.media.wav import read_wav

        with self.lock:
            out = self.scratch / f"{os.getpid()}_{next(self._ids)}.wav"
            reply = self.request({"op": "synthesize", "text": text, "voice": voice, "out": str(out)}, timeout=timeout)
            path = Path(reply["wav"])
            try:
                samples, rate = read_wav(path)
            finally:
                path.unlink(missing_ok=True)
        return samples, rate, {**reply.get("info", {}), "seconds": reply.get("seconds")}

    # ------------------------------------------------------------ plumbing

    def _name(self) -> str:
        return f"speech worker {self.engine!r} ({self.python})"

    def _tail(self) -> str:
        lines = [line for line in self._stderr if line.strip()][-15:]
        return ("\n--- worker stderr (last lines) ---\n" + "\n".join(lines)) if lines else ""

    @staticmethod
    def _pump_stdout(proc: subprocess.Popen, lines: queue.Queue) -> None:
        try:
            for line in proc.stdout:
                lines.put(line)
        except (OSError, ValueError):  # closed by stop()
            pass
        lines.put(None)

    @staticmethod
    def _pump_stderr(proc: subprocess.Popen, tail: collections.deque) -> None:
        try:
            for line in proc.stderr:
                tail.append(line.rstrip("\n"))
                log.debug("speech worker %s: %s", proc.pid, line.rstrip("\n"))
        except (OSError, ValueError):  # closed by stop()
            pass

    def _expect(self, kinds: set[str], timeout: float, *, ident: str | None = None, during: str) -> dict[str, Any]:
        """The next message of one of ``kinds`` (for ``ident``); raise on death, timeout or a fatal error."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else self._lines.get_nowait()
            except queue.Empty:
                self.kill()
                raise SpeechWorkerError(f"{self._name()}: no answer after {timeout:g} s while {during}; the worker "
                                        f"was stopped (the next request starts a fresh one){self._tail()}") from None
            if line is None:
                proc = self.proc
                code = proc.wait() if proc is not None else None
                self.proc, self.ready = None, {}
                if during in ("starting", "loading its model"):
                    raise SpeechWorkerError(f"{self._name()}: exited with status {code} while {during}{self._tail()}")
                raise _WorkerDied(f"{self._name()}: exited with status {code} during a {during}{self._tail()}")
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("speech worker %s: not a protocol line: %r", self.pid, line[:200])
                continue
            kind = message.get("type")
            if kind == "fatal":
                proc = self.proc
                if proc is not None:
                    proc.wait(10)
                self.proc, self.ready = None, {}
                raise SpeechWorkerError(f"{self._name()}: {message.get('message')}{self._tail()}")
            if ident is not None and message.get("id") not in (ident, None):
                continue  # a late answer to an abandoned request
            if kind in kinds:
                return message


class _WorkerDied(Exception):
    pass


_WORKERS: dict[tuple, WorkerProcess] = {}
_WORKERS_LOCK = threading.Lock()


def worker_for(python: str, engine: str, *, model: str = "", device: str = "auto", threads: int = 0,
               startup_timeout: float = 900.0) -> WorkerProcess:
    """The process's worker for these settings (created on first use, started on first request)."""
    key = (python, engine, model, device, threads)
    with _WORKERS_LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            worker = _WORKERS[key] = WorkerProcess(python, engine, model=model, device=device, threads=threads,
                                                   startup_timeout=startup_timeout)
        worker.startup_timeout = startup_timeout
        return worker


def release_worker(python: str, engine: str, *, model: str = "", device: str = "auto", threads: int = 0) -> None:
    """Stop the process's worker for these settings, if it runs. Safe to call at any time."""
    with _WORKERS_LOCK:
        worker = _WORKERS.pop((python, engine, model, device, threads), None)
    if worker is not None:
        worker.close()


def release() -> None:
    """Stop every speech worker of this process. Safe to call at any time."""
    with _WORKERS_LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.close()


atexit.register(release)


def release_gpu_workers() -> bool:
    """Stop the workers that may hold a GPU (any device but cpu): a GPU stage wants it. Whether any was."""
    with _WORKERS_LOCK:
        workers = [_WORKERS.pop(key) for key in [k for k in _WORKERS if k[3] != "cpu"]]
    for worker in workers:
        worker.close()
    return bool(workers)


model_support.register_release(__name__, release_gpu_workers)


# --------------------------------------------------------------------------- engines


class WorkerSpeech(SpeechEngine):
    """Speech from a ``speech_worker.py`` process: any of its engines (``espeak``, ``vits``, ``chatterbox``).

    ``python`` is the interpreter that runs the worker ("" = this process's own).
    Voices are mapped here, in the pipeline's process, exactly as the in-process
    engines map them, and sent with each request; visemes are timed here too.
    """

    engine: Literal["espeak", "vits", "chatterbox"] = "espeak"
    python: str = ""
    model: str = ""
    device: str = Field("auto", pattern=WORKER_DEVICE)
    threads: int = Field(0, ge=0)
    startup_timeout_sec: float = Field(900.0, gt=0)
    request_timeout_sec: float = Field(900.0, gt=0)

    @property
    def backend(self) -> str:
        return f"{self.engine} (worker)"

    def release(self) -> None:
        """Stop this engine's worker; the next line starts a fresh one (and loads the model again)."""
        release_worker(self.interpreter(), self.engine, model=self.model, device=self.device, threads=self.threads)

    def fingerprint(self) -> dict[str, Any]:
        settings = self.model_dump(exclude={"python", "threads", "startup_timeout_sec", "request_timeout_sec"})
        return {"backend": self.backend, **settings}

    def interpreter(self) -> str:
        return self.python or sys.executable

    def worker(self) -> WorkerProcess:
        return worker_for(self.interpreter(), self.engine, model=self.model, device=self.device,
                          threads=self.threads, startup_timeout=self.startup_timeout_sec)

    def check(self) -> dict[str, Any]:
        """The worker's ``--check`` report for this engine (runs the interpreter; loads nothing)."""
        return run_check(self.interpreter(), self.engine, self.model)

    def worker_voice(self, character_id: str, voice_profile: VoiceProfile, ready: Mapping[str, Any]) -> dict[str, Any]:
        if self.engine == "espeak":
            from sparkle_motion_dagster.media import espeak

            local = espeak.engine()
            language = espeak_language(voice_profile.language, local.has_voice)
            voice = espeak_voice_for(character_id, voice_profile, language=language)
            return {"name": voice.name, "rate_wpm": voice.rate_wpm, "pitch": voice.pitch,
                    "pitch_range": voice.pitch_range}
        if self.engine == "vits":
            from sparkle_motion_dagster.resources.speech.vits import vits_voice_for

            return vits_voice_for(character_id, voice_profile, num_speakers=int(ready.get("num_speakers", 1))).as_dict()
        return chatterbox_voice_for(character_id, voice_profile)

    def synthesize_chunk_timed(self, text, *, character_id, voice_profile):
        from sparkle_motion_dagster.film import visemes

        worker = self.worker()
        ready = worker.start()
        voice = self.worker_voice(character_id, voice_profile, ready)
        samples, rate, info = worker.synthesize(text, voice, timeout=self.request_timeout_sec)
        events = info.pop("events", None)
        word_spans = [tuple(span) for span in info.pop("word_spans", [])]
        if events is not None:
            from sparkle_motion_dagster.media.espeak import EspeakEvent

            stream = visemes.espeak_stream([EspeakEvent(*event) for event in events], len(samples) / rate)
            source = "espeak-events"
        else:
            stream, source = visemes.aligned_stream(text, voice_profile.language, samples, rate, word_spans=word_spans)
        described = {"engine": self.engine, "worker_pid": worker.pid, "model": ready.get("model"),
                     "device": ready.get("device"), **voice, **info}
        return ChunkSpeech(samples, rate, described, stream, source)

    def synthesize_chunk(self, text, *, character_id, voice_profile):
        spoken = self.synthesize_chunk_timed(text, character_id=character_id, voice_profile=voice_profile)
        return spoken.samples, spoken.sample_rate, spoken.voice

    def describe(self, *, probe: bool = True) -> dict[str, Any]:
        entry: dict[str, Any] = {"backend": self.backend, "python": self.interpreter(), "model": self.model,
                                 "device": self.device}
        if not probe:
            return {**entry, "ok": True, "why": "not probed"}
        try:
            report = self.check()
        except SpeechWorkerError as error:
            return {**entry, "ok": False, "problem": str(error)}
        entry.update(ok=bool(report.get("ok")), versions=report.get("versions"), weights=report.get("weights"))
        if report.get("problems"):
            entry["problem"] = "; ".join(report["problems"])
        return entry


class ChatterboxSpeech(EnvConfigured, WorkerSpeech):
    """Resemble AI's Chatterbox through a worker in its own environment (see the module docstring)."""

    backend: ClassVar[str] = "chatterbox"
    switch: ClassVar[str] = "python"

    engine: Literal["chatterbox"] = "chatterbox"
    python: str = env_field("TTS_CHATTERBOX_PYTHON")
    model: str = env_field("TTS_CHATTERBOX_MODEL", DEFAULT_MODEL)
    device: str = env_field("TTS_CHATTERBOX_DEVICE", "auto", pattern=WORKER_DEVICE,
                            expected="expected auto, cpu, cuda, cuda:N or mps")
    request_timeout_sec: float = env_field("TTS_CHATTERBOX_TIMEOUT_SEC", 900.0, gt=0)
    max_chunk_chars: int = Field(300, ge=20)
    max_chunk_sec: float = Field(30.0, gt=0)
    exaggeration: float = Field(0.5, ge=0, le=2)
    cfg_weight: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(0.8, ge=0.05, le=5)

    @field_validator("python")
    @classmethod
    def _interpreter_exists(cls, python: str) -> str:
        if not Path(python).expanduser().exists() and shutil.which(python) is None:
            raise ValueError("no such interpreter (make chatterbox-env builds .venv-chatterbox/bin/python)")
        return python

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ChatterboxSpeech | None":
        """The resource described by ``TTS_CHATTERBOX_*`` variables, or None when ``TTS_CHATTERBOX_PYTHON``
        is unset (an error when only ``TTS_CHATTERBOX_MODEL`` is set: this environment cannot run it)."""
        env = os.environ if environ is None else environ
        python, model = cls.variable("python"), cls.variable("model")
        if not env.get(python, "").strip() and env.get(model, "").strip():
            raise SettingsError([SettingProblem(
                cls.__name__, "model", model, env[model].strip(),
                f"is set but {python} is not: Chatterbox runs in its own environment; set {python} to its "
                "python (make chatterbox-env builds .venv-chatterbox/bin/python).")])
        return super().from_env(environ)

    def fingerprint(self) -> dict[str, Any]:
        report = self.check()
        settings = self.model_dump(exclude={"python", "threads", "startup_timeout_sec", "request_timeout_sec"})
        return {"backend": self.backend, **settings,
                "resolved": {"versions": report.get("versions"), "weights": (report.get("weights") or {}).get("digest")}}

    def voice_fingerprint(self, character_id: str, voice_profile: VoiceProfile) -> dict[str, Any]:
        reference = reference_audio(voice_profile)
        return {"reference_audio_sha256": sha256_file(Path(reference))} if reference else {}

    def split_text(self, text: str) -> list[str]:
        """Chunks of at most ``max_chunk_chars`` and about ``max_chunk_sec`` of speech each."""
        chunks: list[str] = []
        for chunk in chunk_text(text, self.max_chunk_chars):
            words = chunk.split()
            parts = max(1, -(-estimate_speech_seconds(chunk) // self.max_chunk_sec))
            size = -(-len(words) // int(parts))
            chunks += [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
        return chunks

    def worker_voice(self, character_id, voice_profile, ready):
        return chatterbox_voice_for(character_id, voice_profile, exaggeration=self.exaggeration,
                                    cfg_weight=self.cfg_weight, temperature=self.temperature)

    def describe(self, *, probe: bool = True) -> dict[str, Any]:
        entry = WorkerSpeech.describe(self, probe=probe)
        entry["why"] = f"{self.variable('python')}={self.python}, {self.variable('model')}={self.model}"
        entry["visemes"] = "espeak-ng phonemes scaled to the speech found in the audio"
        return entry


# --------------------------------------------------------------------------- voices


def reference_audio(voice_profile: VoiceProfile) -> str | None:
    """``voice_profile.reference_audio`` as an absolute path, checked to exist; None when unset."""
    raw = (voice_profile.model_extra or {}).get("reference_audio")
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise ValueError(f"voice_profile.reference_audio = {raw!r}: expected a file path")
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"voice_profile.reference_audio = {raw!r}: no such file ({path})")
    return str(path)


def _number(voice_profile: VoiceProfile, key: str, default: float, low: float, high: float) -> float:
    raw = (voice_profile.model_extra or {}).get(key)
    if raw is None:
        return default
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"voice_profile.{key} = {raw!r}: expected a number") from None
    if not low <= value <= high:
        raise ValueError(f"voice_profile.{key} = {raw!r}: expected {low} to {high}")
    return value


def chatterbox_voice_for(character_id: str, voice_profile: VoiceProfile, *, exaggeration: float = 0.5,
                         cfg_weight: float = 0.5, temperature: float = 0.8) -> dict[str, Any]:
    """The worker's voice settings for one character; explicit profile values win."""
    style_default = STYLE_EXAGGERATION.get((voice_profile.style or "").lower(), exaggeration)
    seed = (voice_profile.model_extra or {}).get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"voice_profile.seed = {seed!r}: expected a non-negative integer")
    return {
        "seed": seed if seed is not None else _stable_int("chatterbox", character_id) % 2**31,
        "reference_audio": reference_audio(voice_profile),
        "exaggeration": _number(voice_profile, "exaggeration", style_default, 0.0, 2.0),
        "cfg_weight": _number(voice_profile, "cfg_weight", cfg_weight, 0.0, 1.0),
        "temperature": _number(voice_profile, "temperature", temperature, 0.05, 5.0),
        "language": voice_profile.language,
    }


_CHECKS: dict[tuple[str, str, str], dict[str, Any]] = {}


def run_check(python: str, engine: str, model: str = "", *, timeout: float = 120.0) -> dict[str, Any]:
    """``speech_worker.py --check`` under ``python`` (cached per process when it succeeds)."""
    key = (python, engine, model)
    if key in _CHECKS:
        return _CHECKS[key]
    command = [python, str(WORKER_SCRIPT), "--engine", engine, "--check"] + (["--model", model] if model else [])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SpeechWorkerError(f"speech worker check with {python!r} failed: {error}") from None
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SpeechWorkerError(f"speech worker check with {python!r} failed (status {done.returncode}): "
                                f"{done.stderr.strip()[-2000:]}") from None
    if report.get("ok"):
        _CHECKS[key] = report
    return report
