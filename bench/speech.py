"""Speech engines' real-time factor: seconds of computing per second of speech (below 1 = faster than real time).

Not a test. For each engine: the first line (which includes loading the model
or starting the worker) is timed on its own, then the steady state over a few
lines of dialogue. Every line goes through ``SpeechEngine.synthesize_line``,
so chunking and viseme timing are included (they are part of what the
dialogue stage pays).

    python bench/speech.py                       # espeak-ng, espeak via the worker, Piper, tiny VITS in and out of process
    python bench/speech.py --cases espeak vits   # a subset
    TTS_VITS_MODEL=facebook/mms-tts-eng python bench/speech.py --cases vits
    TTS_CHATTERBOX_PYTHON=.venv-chatterbox/bin/python python bench/speech.py --cases chatterbox

Cases: ``espeak`` (embedded), ``espeak-worker`` (the same engine behind the
speech worker: the cost of the out-of-process mechanism), ``piper`` (the
``voices`` extra's en_US-joe-medium, or ``TTS_PIPER_VOICE``: real weights), ``vits`` and
``vits-worker`` (``TTS_VITS_MODEL`` when set, else a tiny random VITS built
here, whose figures only check the harness), ``vits-mms-size`` (MMS-TTS's
full architecture with random weights: the real model's arithmetic per frame,
though its random duration predictor makes the lines longer or shorter than
real speech), ``chatterbox`` (when ``TTS_CHATTERBOX_PYTHON`` is set). From bench/models.py::

    sys.path.insert(0, str(Path(__file__).parent)); from speech import run_speech_bench
    rows = run_speech_bench(["espeak", "vits"])
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

LINES = (
    "I was scared of losing us.",
    "You kept the map, after all this time? I thought it was gone with the rest of the boxes.",
    "Look at the city from up here. Every light is somebody still awake, still waiting for a call.",
    "Then let's not wait any longer.",
)
CASES = ("espeak", "espeak-worker", "piper", "vits", "vits-worker", "vits-mms-size", "chatterbox")


def measure_rtf(engine, lines=LINES, *, character_id: str = "ava", voice_profile=None, repeats: int = 1) -> dict[str, Any]:
    """Time ``engine.synthesize_line`` over ``lines``: the first call alone, then the steady state."""
    from sparkle_motion_dagster.film.plan import VoiceProfile

    profile = voice_profile or VoiceProfile()
    started = time.perf_counter()
    first = engine.synthesize_line(lines[0], character_id=character_id, voice_profile=profile)
    first_call = time.perf_counter() - started
    audio = wall = 0.0
    chunks = 0
    for _ in range(repeats):
        for line in lines:
            began = time.perf_counter()
            result = engine.synthesize_line(line, character_id=character_id, voice_profile=profile)
            wall += time.perf_counter() - began
            audio += result.duration_s
            chunks += result.chunks
    return {
        "backend": engine.backend,
        "first_call_s": round(first_call, 3),
        "lines": len(lines) * repeats,
        "chunks": chunks,
        "audio_s": round(audio, 3),
        "wall_s": round(wall, 3),
        "rtf": round(wall / audio, 5) if audio else None,
        "x_realtime": round(audio / wall, 1) if wall else None,
        "sample_rate": first.sample_rate,
        "viseme_source": first.viseme_source,
    }


def build_engine(case: str, workdir: Path):
    """The engine for ``case`` (None when it is not configured here), and a note on what it is."""
    from sparkle_motion_dagster.resources.speech.chatterbox import ChatterboxSpeech, WorkerSpeech
    from sparkle_motion_dagster.resources.speech.espeak import EspeakSpeech
    from sparkle_motion_dagster.resources.speech.vits import VitsSpeech, build_tiny_vits

    if case == "espeak":
        return EspeakSpeech(), "embedded espeak-ng"
    if case == "piper":
        from sparkle_motion_dagster.resources.speech.piper import PACKAGED_VOICE, PiperSpeech

        voice = os.environ.get("TTS_PIPER_VOICE", "").strip() or PACKAGED_VOICE
        try:
            engine = PiperSpeech(voice=voice)
            engine.runtime()
        except (RuntimeError, ValueError, FileNotFoundError) as error:
            return None, str(error)
        return engine, f"Piper, TTS_PIPER_VOICE={voice} (real weights)"
    if case == "espeak-worker":
        return WorkerSpeech(engine="espeak"), "espeak-ng behind speech_worker.py (this Python)"
    if case in ("vits", "vits-worker"):
        model = os.environ.get("TTS_VITS_MODEL", "").strip()
        note = f"TTS_VITS_MODEL={model}"
        if not model:
            folder = workdir / "tiny-vits"
            model = str(folder if folder.exists() else build_tiny_vits(folder))
            note = "tiny random VITS (harness check, not a real model's speed)"
        device = os.environ.get("TTS_VITS_DEVICE", "auto")
        if case == "vits":
            return VitsSpeech(model=model, device=device), note
        return WorkerSpeech(engine="vits", model=model, device=device), note + ", behind speech_worker.py"
    if case == "vits-mms-size":
        folder = workdir / "mms-size-vits"
        if not folder.exists():
            build_mms_size_vits(folder)
        return (VitsSpeech(model=str(folder), device=os.environ.get("TTS_VITS_DEVICE", "auto")),
                "facebook/mms-tts-eng's architecture (VitsConfig defaults, ~36 M parameters) with random weights: "
                "real arithmetic per frame, random durations")
    if case == "chatterbox":
        engine = ChatterboxSpeech.from_env()
        return engine, ("TTS_CHATTERBOX_PYTHON is not set" if engine is None else
                        f"{engine.python}, {engine.model}, device {engine.device}")
    raise ValueError(f"unknown case {case!r}: expected one of {', '.join(CASES)}")


def build_mms_size_vits(folder: Path) -> Path:
    """MMS-TTS's architecture (``VitsConfig()`` is facebook/mms-tts-eng's) with random weights and the
    tiny character tokenizer: costs what the real model costs per frame; nothing is downloaded."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    from sparkle_motion_dagster.resources.speech.vits import build_tiny_vits

    build_tiny_vits(folder)
    tokenizer = VitsTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    VitsModel(VitsConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)).eval().save_pretrained(folder)
    return folder


def run_speech_bench(cases=None, *, lines=LINES, repeats: int = 1, workdir: Path | None = None) -> list[dict[str, Any]]:
    """One row per case (``CASES`` by default): the figures of :func:`measure_rtf`, or why it was skipped."""
    from sparkle_motion_dagster.resources.speech import chatterbox, piper, vits

    rows = []
    with tempfile.TemporaryDirectory(prefix="sparkle-speech-bench-") as scratch:
        folder = Path(workdir or scratch)
        for case in cases or CASES:
            engine, note = build_engine(case, folder)
            if engine is None:
                rows.append({"case": case, "skipped": note})
                continue
            try:
                rows.append({"case": case, "note": note, **measure_rtf(engine, lines, repeats=repeats)})
            except Exception as error:  # noqa: BLE001 - one engine failing should not hide the others
                rows.append({"case": case, "note": note, "error": f"{type(error).__name__}: {error}"})
            finally:
                vits.release()
                chatterbox.release()
                piper.release()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeats", type=int, default=1, help="passes over the lines after the first call")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in this process (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case instead of a table")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = run_speech_bench(args.cases, repeats=args.repeats)
    for row in rows:
        if args.json:
            print(json.dumps(row))
        elif "skipped" in row or "error" in row:
            print(f"{row['case']:<14} {row.get('skipped') or row.get('error')}")
        else:
            print(f"{row['case']:<14} rtf {row['rtf']:<9} ({row['x_realtime']}x real time)  first line "
                  f"{row['first_call_s']:>7.2f} s  {row['audio_s']:.1f} s of audio in {row['wall_s']:.2f} s  "
                  f"{row['sample_rate']} Hz  visemes: {row['viseme_source']}  [{row['note']}]")
    return 0 if not any("error" in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
