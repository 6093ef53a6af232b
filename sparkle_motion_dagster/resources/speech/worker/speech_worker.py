"""Speech worker: a long-lived process that keeps one TTS model loaded and speaks JSON lines.

It exists for engines that cannot live in the pipeline's environment:
``chatterbox-tts`` pins torch 2.6, transformers 5.2, diffusers 0.29 and
numpy < 2. The client (``resources/chatterbox.py``) starts it once per process
with that environment's Python and sends it one request per generation; the
model stays loaded between lines.

This file imports only the standard library at module level and runs under any
Python 3.9+; each engine imports what it needs when it loads:

* ``chatterbox``: ``chatterbox-tts`` (its own environment, e.g. ``.venv-chatterbox``)
* ``espeak``, ``vits``: this project (its own environment); they serve the tests of the
  mechanism and the benchmark's measure of its overhead

Usage::

    python speech_worker.py --engine chatterbox [--model ResembleAI/chatterbox|FOLDER] [--device auto]
    python speech_worker.py --engine vits --model FOLDER_OR_REPO [--device cpu] [--threads 1]
    python speech_worker.py --engine espeak
    python speech_worker.py --engine chatterbox --check   # one JSON object: can this Python run it? (no loading)

Protocol: one JSON object per line, ASCII. stdout carries protocol lines only
(the worker points file descriptor 1 at stderr, so whatever a library prints
goes to stderr with the logs and progress bars).

* worker: ``{"type": "hello", "protocol": 1, "engine": ..., "pid": ..., "python": ...}`` at once, then
  ``{"type": "ready", "engine": ..., "sample_rate": ..., "load_seconds": ..., "versions": {...}, ...}``
  when the model is loaded, or ``{"type": "fatal", "message": ...}`` and exit status 2.
* client: ``{"id": "7", "op": "synthesize", "text": "...", "voice": {...}, "out": "/tmp/x.wav"}``;
  worker: ``{"id": "7", "type": "result", "wav": "/tmp/x.wav", "sample_rate": 24000,
  "num_samples": N, "seconds": 1.9, "info": {...}}`` (16-bit mono PCM WAV; without ``out`` the
  worker picks a temporary file and the client deletes it), or
  ``{"id": "7", "type": "error", "message": "..."}``: the worker stays up for the next request.
* ``{"op": "ping"}`` -> ``{"type": "pong"}``; ``{"op": "shutdown"}`` -> ``{"type": "bye"}`` and exit 0;
  end of input also ends the worker (so it never outlives its client for long).
* diagnostics for the client's tests: ``{"op": "sleep", "seconds": s}`` and ``{"op": "exit", "code": c}``.

Voice settings per engine (``voice`` in a request):

* chatterbox: ``seed``, ``reference_audio`` (path or null: the checkpoint's built-in voice),
  ``exaggeration``, ``cfg_weight``, ``temperature``, ``language`` (multilingual checkpoints)
* espeak: ``name``, ``rate_wpm``, ``pitch``, ``pitch_range``
* vits: ``seed``, ``speaking_rate``, ``noise_scale``, ``noise_scale_duration``, ``speaker_id``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import wave
from pathlib import Path

PROTOCOL = 1
CHATTERBOX_REPO = "ResembleAI/chatterbox"
CHATTERBOX_FILES = {
    "english": ["ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt"],
    "multilingual": ["ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json",
                     "conds.pt", "Cangjie5_TC.json"],
}
REQUIRED_CHATTERBOX_FILES = {
    "english": ["ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json"],
    "multilingual": ["ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json"],
}


class RequestError(Exception):
    """A request that cannot be served (bad settings): reported, the worker stays up."""


def _versions(*packages: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _write_wav(path: str, pcm: bytes, sample_rate: int) -> None:
    partial = f"{path}.partial"
    with wave.open(partial, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm)
    os.replace(partial, path)


def _import_project() -> None:
    """The espeak and vits engines use this project's code: it must be installed for this Python."""
    from importlib.util import find_spec

    if find_spec("sparkle_motion_dagster") is None:
        raise RuntimeError(f"sparkle-motion-dagster is not installed for {sys.executable} "
                           "(the espeak and vits engines run in the project's own environment)")


def _resolve_torch_device(device: str) -> str:
    import torch

    value = (device or "auto").strip().lower()
    if value == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available (torch {torch.__version__})")
    return value


# --------------------------------------------------------------------------- engines


class EspeakEngine:
    """The project's espeak-ng (loads the library afresh per utterance, as in process)."""

    def __init__(self, args) -> None:
        _import_project()
        from sparkle_motion_dagster.media import espeak

        self.espeak = espeak
        self.engine = espeak.engine()

    def info(self) -> dict:
        return {"sample_rate": self.engine.sample_rate, "model": f"espeak-ng {self.engine.version}", "device": "cpu",
                "versions": _versions("espeakng-loader", "numpy")}

    def synthesize(self, text: str, voice: dict):
        try:
            settings = self.espeak.EspeakVoice(str(voice["name"]), int(voice["rate_wpm"]), int(voice["pitch"]),
                                               int(voice.get("pitch_range", 50)))
        except (KeyError, TypeError, ValueError) as error:
            raise RequestError(f"espeak voice needs name, rate_wpm and pitch: {error}") from None
        samples, events = self.engine.synthesize_events(text, settings)
        encoded = [[e.kind, e.t, e.text_position, e.length, e.phoneme] for e in events]
        return samples.astype("<i2").tobytes(), self.engine.sample_rate, {"events": encoded}


class VitsEngine:
    """The project's VITS adapter (``resources/vits.py``): same model code as in process."""

    def __init__(self, args) -> None:
        _import_project()
        import torch

        from sparkle_motion_dagster.resources.speech import vits

        if args.threads:
            torch.set_num_threads(args.threads)
        self.vits = vits
        self.source = vits.resolve_model_source(args.model)
        self.device = vits.resolve_device(args.device)
        self.loaded = vits.load(self.source, self.device)

    def info(self) -> dict:
        return {"sample_rate": self.loaded.sample_rate, "num_speakers": self.loaded.num_speakers,
                "model": self.source, "device": self.device, "versions": _versions("torch", "transformers")}

    def synthesize(self, text: str, voice: dict):
        try:
            settings = self.vits.VitsVoice(**voice)
        except TypeError as error:
            raise RequestError(f"vits voice: {error}") from None
        audio = self.vits.generate(self.source, self.device, text, settings)
        return audio.samples.astype("<i2").tobytes(), audio.sample_rate, {
            "word_spans": [list(span) for span in audio.word_spans], **audio.info}


class ChatterboxEngine:
    """Resemble AI's Chatterbox (``chatterbox-tts``), English or multilingual checkpoints."""

    def __init__(self, args) -> None:
        try:
            import torch
            from chatterbox.tts import ChatterboxTTS
        except ImportError as error:
            raise RuntimeError(f"chatterbox-tts is not importable by {sys.executable}: {error}. Build its "
                               "environment (make chatterbox-env) and set TTS_CHATTERBOX_PYTHON to its python.") from None
        if args.threads:
            torch.set_num_threads(args.threads)
        self.torch = torch
        self.device = _resolve_torch_device(args.device)
        self.folder, self.variant = chatterbox_weights(args.model, args.variant)
        if self.variant == "multilingual":
            from chatterbox.mtl_tts import ChatterboxMultilingualTTS as model_class
        else:
            model_class = ChatterboxTTS
        self.model = model_class.from_local(self.folder, self.device)
        self.builtin = self.model.conds
        self.references: dict = {}

    def info(self) -> dict:
        return {"sample_rate": int(self.model.sr), "model": str(self.folder), "variant": self.variant,
                "device": self.device, "builtin_voice": self.builtin is not None,
                "versions": _versions("chatterbox-tts", "torch", "torchaudio", "transformers", "numpy")}

    def _conditionals(self, reference, exaggeration: float):
        if not reference:
            if self.builtin is None:
                raise RequestError("this Chatterbox checkpoint has no built-in voice (conds.pt): set "
                                   "voice_profile.reference_audio")
            return self.builtin
        path = Path(reference)
        if not path.is_file():
            raise RequestError(f"voice_profile.reference_audio {reference!r} does not exist")
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in self.references:
            self.model.prepare_conditionals(str(path), exaggeration=exaggeration)
            self.references[key] = self.model.conds
        return self.references[key]

    def synthesize(self, text: str, voice: dict):
        import random

        import numpy as np

        torch = self.torch
        exaggeration = float(voice.get("exaggeration", 0.5))
        self.model.conds = self._conditionals(voice.get("reference_audio"), exaggeration)
        seed = int(voice.get("seed", 0))
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        kwargs = {"exaggeration": exaggeration, "cfg_weight": float(voice.get("cfg_weight", 0.5)),
                  "temperature": float(voice.get("temperature", 0.8))}
        if self.variant == "multilingual":
            kwargs["language_id"] = (voice.get("language") or "en").split("-")[0].lower()
        wav = self.model.generate(text, **kwargs)
        samples = wav.squeeze(0).detach().cpu().float().numpy()
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return pcm, int(self.model.sr), {"variant": self.variant}


ENGINES = {"chatterbox": ChatterboxEngine, "espeak": EspeakEngine, "vits": VitsEngine}


def chatterbox_weights(model: str, variant: str = "auto", *, local_only: bool | None = None):
    """``(folder, variant)`` of a Chatterbox checkpoint: a local folder (variant read from its files)
    or a repo id fetched through the Hugging Face cache (``HF_HUB_OFFLINE`` honoured)."""
    source = (model or CHATTERBOX_REPO).strip()
    path = Path(source).expanduser()
    if path.is_dir():
        if variant == "auto":
            variant = "multilingual" if (path / "t3_mtl23ls_v2.safetensors").exists() else "english"
        missing = [name for name in REQUIRED_CHATTERBOX_FILES[variant] if not (path / name).exists()]
        if missing:
            raise RuntimeError(f"TTS_CHATTERBOX_MODEL = {source!r}: missing {', '.join(missing)} for a {variant} "
                               "Chatterbox checkpoint")
        return path.resolve(), variant
    if path.exists() or source.startswith(("/", ".", "~")):
        raise RuntimeError(f"TTS_CHATTERBOX_MODEL = {source!r}: not a folder (expected a checkpoint folder or a "
                           "Hugging Face repo id)")
    variant = "english" if variant == "auto" else variant
    from huggingface_hub import snapshot_download

    kwargs = {"local_files_only": True} if local_only else {}
    folder = snapshot_download(repo_id=source, allow_patterns=CHATTERBOX_FILES[variant], **kwargs)
    missing = [name for name in REQUIRED_CHATTERBOX_FILES[variant] if not (Path(folder) / name).exists()]
    if missing:
        raise RuntimeError(f"TTS_CHATTERBOX_MODEL = {source!r}: the snapshot lacks {', '.join(missing)}")
    return Path(folder), variant


def check(args) -> dict:
    """Can this Python run the engine? Nothing is loaded; chatterbox weights are looked up in the cache."""
    from importlib.util import find_spec

    report = {"python": sys.version.split()[0], "executable": sys.executable, "engine": args.engine,
              "protocol": PROTOCOL, "problems": []}
    if args.engine == "chatterbox":
        report["versions"] = _versions("chatterbox-tts", "torch", "torchaudio", "transformers", "numpy")
        if find_spec("chatterbox") is None:
            report["problems"].append(f"chatterbox-tts is not installed for {sys.executable}")
        else:
            try:
                folder, variant = chatterbox_weights(args.model, args.variant, local_only=True)
                report["weights"] = {"folder": str(folder), "variant": variant, "found": True,
                                     "digest": _folder_digest(folder)}
            except Exception as error:  # noqa: BLE001 - reported, not raised
                report["weights"] = {"found": False}
                report["problems"].append(f"Chatterbox weights for {args.model or CHATTERBOX_REPO!r} not found "
                                          f"locally: {type(error).__name__}: {error}")
    else:
        report["versions"] = _versions("numpy", "espeakng-loader", "torch", "transformers")
        if find_spec("sparkle_motion_dagster") is None:
            report["problems"].append("the project is not importable")
    report["ok"] = not report["problems"]
    return report


def _folder_digest(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- the loop


def _protocol_channel():
    """A private handle on the real stdout; file descriptor 1 (and ``sys.stdout``) go to stderr."""
    channel = os.fdopen(os.dup(1), "w", encoding="ascii", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def serve(args) -> int:
    channel = _protocol_channel()

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    send({"type": "hello", "protocol": PROTOCOL, "engine": args.engine, "pid": os.getpid(),
          "python": sys.version.split()[0], "executable": sys.executable})
    started = time.perf_counter()
    try:
        engine = ENGINES[args.engine](args)
        info = engine.info()
    except Exception as error:  # noqa: BLE001 - reported to the client, then exit
        traceback.print_exc()
        send({"type": "fatal", "message": f"{type(error).__name__}: {error}"})
        return 2
    send({"type": "ready", "engine": args.engine, "load_seconds": round(time.perf_counter() - started, 3), **info})
    scratch = Path(tempfile.mkdtemp(prefix="sparkle-speech-worker-"))
    count = 0
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
        except ValueError as error:
            send({"id": None, "type": "error", "message": f"bad request line: {error}"})
            continue
        ident, op = request.get("id"), request.get("op")
        if op == "ping":
            send({"id": ident, "type": "pong"})
        elif op == "shutdown":
            send({"id": ident, "type": "bye"})
            return 0
        elif op == "sleep":
            time.sleep(float(request.get("seconds", 0)))
            send({"id": ident, "type": "pong"})
        elif op == "exit":
            os._exit(int(request.get("code", 3)))
        elif op == "synthesize":
            count += 1
            out = request.get("out") or str(scratch / f"line_{count:06d}.wav")
            try:
                text = request["text"]
                if not isinstance(text, str) or not text.strip():
                    raise RequestError("text must be a non-empty string")
                began = time.perf_counter()
                pcm, sample_rate, extra = engine.synthesize(text, request.get("voice") or {})
                seconds = time.perf_counter() - began
                _write_wav(out, pcm, sample_rate)
                send({"id": ident, "type": "result", "wav": out, "sample_rate": sample_rate,
                      "num_samples": len(pcm) // 2, "seconds": round(seconds, 4), "info": extra})
            except Exception as error:  # noqa: BLE001 - one failed line must not end the worker
                traceback.print_exc()
                send({"id": ident, "type": "error", "message": f"{type(error).__name__}: {error}"})
        else:
            send({"id": ident, "type": "error", "message": f"unknown op {op!r}"})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True, choices=sorted(ENGINES))
    parser.add_argument("--model", default="", help="checkpoint folder or Hugging Face repo id")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--variant", default="auto", choices=["auto", "english", "multilingual"],
                        help="Chatterbox checkpoint kind (auto: read from the folder's files; English for a repo id)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--check", action="store_true", help="print whether this Python can run the engine, then exit")
    args = parser.parse_args(argv)
    if args.check:
        report = check(args)
        print(json.dumps(report))
        return 0 if report["ok"] else 1
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
