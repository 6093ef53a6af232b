"""Lipsync throughput: frames per second of the Wav2Lip lipsync, stage by stage.

Not a test. Random weights (nothing is downloaded); a frame of the given size
with scikit-image's astronaut photo as the talking face, so the real face
detector finds a real face.

    python bench/lipsync.py                    # tiny random weights (base_channels 4) on CPU (or CUDA)
    python bench/lipsync.py --full             # official shapes (36.3 M parameters); CUDA when present
    python bench/lipsync.py --size 1280x720 --frames 96 --batch-size 32 --json out.json

Figures:

- ``model_fps``: Wav2Lip forward passes alone (96x96 faces + mel windows);
- ``detect_fps``: the face detector alone on full frames;
- ``core_fps``: ``FrameSyncer.sync_frames`` on frames in memory (detection,
  tracking, the model, blending): what lipsync costs per talking frame;
- ``e2e_fps``: ``Wav2LipLipsync.apply`` on a one-shot clip whose every frame
  is in a dialogue window (decode twice, detect, model, blend, libx264, concat,
  AAC mux), frames of film per second of wall time.

Random weights cost the same arithmetic as trained ones, so the model figures
stand for the real checkpoints (``--full``); the tiny model checks the harness
and measures the adapter's own overhead. From ``bench/models.py`` (run as a
script, so ``bench/`` is on ``sys.path``)::

    from lipsync import run_lipsync_bench
    result = run_lipsync_bench(full=torch.cuda.is_available())   # a JSON-ready dict
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see environment-facts.md
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

FPS = 25.0


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def talking_frames(count: int, width: int, height: int) -> list:
    """``count`` frames of ``width`` x ``height``: a grey backdrop with the astronaut's head and shoulders
    filling about 80 % of the height, drifting a few pixels (so tracking and smoothing do real work)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photo = data.astronaut()[0:320, 70:390]  # her head and shoulders, face about 95 px of 320
    side = max(32, int(height * 0.8))
    head = np.asarray(Image.fromarray(photo).resize((side, side), Image.Resampling.BILINEAR))
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 118, dtype=np.uint8)
        dx = (width - side) // 2 + int(3 * np.sin(index / 5))
        dy = (height - side) // 2
        x0, y0 = max(0, dx), max(0, dy)
        crop = head[y0 - dy:y0 - dy + min(side, height - y0), x0 - dx:x0 - dx + min(side, width - x0)]
        frame[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        frames.append(frame)
    return frames


def speech_like(seconds: float, rate: int = 16000):
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((140, 280, 700, 1200, 2400)))
    return (0.15 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32), rate


def run_lipsync_bench(*, full: bool = False, device: str = "auto", width: int = 640, height: int = 360,
                      frames: int = 48, batch_size: int = 0, repeats: int = 2, detector: str = "auto",
                      end_to_end: bool = True, seed: int = 0) -> dict:
    """Time the lipsync stages; returns a JSON-ready dict (see the module docstring).

    ``full``: the official architecture (base_channels 16) with random weights, float16 on CUDA;
    otherwise the tiny one (base_channels 4), float32. ``batch_size`` 0 = 128 on CUDA, 16 on CPU.
    """
    import torch

    from sparkle_motion_dagster.media.ffmpeg import FrameEncoder
    from sparkle_motion_dagster.media.wav import wav_bytes
    from sparkle_motion_dagster.resources.lipsync import mel as lipsync_audio
    from sparkle_motion_dagster.resources.lipsync import wav2lip, wav2lip_model
    from sparkle_motion_dagster.resources.lipsync.wav2lip import Wav2LipLipsync, resolve_device

    resolved = resolve_device(device)
    on_cuda = resolved.startswith("cuda")
    base = wav2lip_model.OFFICIAL_BASE_CHANNELS if full else wav2lip_model.TINY_BASE_CHANNELS
    batch = batch_size or (128 if on_cuda else 16)
    clip_frames = talking_frames(frames, width, height)
    wav, rate = speech_like(frames / FPS + 0.5)
    mel = lipsync_audio.melspectrogram(wav)
    result: dict = {"case": f"wav2lip-{'full' if full else 'tiny'}", "device": resolved, "size": f"{width}x{height}",
                    "frames": frames, "batch_size": batch, "base_channels": base,
                    "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        checkpoint = wav2lip_model.save_random_checkpoint(folder / "wav2lip.pth", seed, base_channels=base)
        engine = Wav2LipLipsync(checkpoint=str(checkpoint), device=resolved, batch_size=batch, face_detector=detector)

        start = time.perf_counter()
        syncer = engine.syncer(mel, FPS)
        result["load_s"] = time.perf_counter() - start
        result["parameters"] = wav2lip_model.parameter_count(syncer.model)
        result["dtype"] = syncer.dtype
        result["face_detector"] = getattr(syncer.detector, "name", "?")

        # the model alone
        dtype = getattr(torch, syncer.dtype)
        audio_t = torch.randn(batch, 1, 80, 16, device=resolved, dtype=dtype)
        face_t = torch.rand(batch, 6, 96, 96, device=resolved, dtype=dtype)
        with torch.inference_mode():
            syncer.model(audio_t, face_t)  # warm-up
            _sync(resolved)
            start = time.perf_counter()
            calls = max(2, repeats * 2)
            for _ in range(calls):
                syncer.model(audio_t, face_t)
            _sync(resolved)
        result["model_fps"] = calls * batch / (time.perf_counter() - start)

        # the detector alone
        probe_frames = clip_frames[: min(len(clip_frames), 16)]
        syncer.detector.detect(probe_frames[0])
        start = time.perf_counter()
        found = [len(syncer.detector.detect(f)) for f in probe_frames]
        result["detect_fps"] = len(probe_frames) / (time.perf_counter() - start)
        result["faces_found"] = f"{sum(1 for n in found if n)}/{len(found)}"

        # the in-memory core: detection + tracking + model + blend
        syncer.sync_frames(clip_frames[:batch], first=0, wanted=list(range(min(batch, frames))))  # warm-up
        times, report = [], {}
        for _ in range(repeats):
            start = time.perf_counter()
            _, report = syncer.sync_frames(clip_frames, first=0, wanted=list(range(frames)))
            _sync(resolved)
            times.append(time.perf_counter() - start)
        result["core_fps"] = frames / (sum(times) / len(times))
        result["core_changed_frames"] = len(report.get("changed_frames", []))

        # end to end through apply(): decode, detect, model, blend, encode, concat, mux
        if end_to_end:
            clip = folder / "shot_001.mp4"
            with FrameEncoder(clip, width=width, height=height, fps=FPS) as encoder:
                for frame in clip_frames:
                    encoder.write(frame.tobytes())
            audio = folder / "dialogue.wav"
            audio.write_bytes(wav_bytes(wav, rate))
            shots = [{"shot_id": "shot_001", "start_frame": 0, "num_frames": frames, "is_talking_closeup": True,
                      "clip_path": str(clip)}]
            windows = [{"line_id": "line_000", "shot_id": "shot_001", "start_s": 0.0, "end_s": frames / FPS}]
            start = time.perf_counter()
            applied = engine.apply(clip, audio, folder / "video_final.mp4", windows=windows, fps=FPS, shots=shots,
                                   work_dir=folder / "lipsync")
            elapsed = time.perf_counter() - start
            result["e2e_fps"] = frames / elapsed
            result["e2e_changed_frames"] = len(applied["changed_frames"])
        wav2lip.release()

    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    if on_cuda:
        result["cuda_max_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return result


def report(results: list[dict]) -> None:
    header = (f"{'case':14s} {'device':6s} {'size':>9s} {'batch':>5s} {'params':>8s} {'model fps':>10s} "
              f"{'detect fps':>10s} {'core fps':>9s} {'e2e fps':>8s} {'RSS GiB':>8s}")
    print(header)
    print("-" * len(header))
    for r in results:
        e2e = f"{r['e2e_fps']:8.1f}" if "e2e_fps" in r else "       -"
        print(f"{r['case']:14s} {r['device']:6s} {r['size']:>9s} {r['batch_size']:5d} {r['parameters'] / 1e6:7.2f}M "
              f"{r['model_fps']:10.1f} {r['detect_fps']:10.1f} {r['core_fps']:9.1f} {e2e} {r['peak_rss_gib']:8.2f}")
    for r in results:
        print(f"{r['case']}: {r['face_detector']} found faces in {r['faces_found']} frames; "
              f"{r['core_changed_frames']}/{r['frames']} frames redrawn; load {r['load_s']:.2f} s; "
              f"torch threads {r['torch_threads']}; dtype {r['dtype']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="official shapes (36.3 M parameters) with random weights")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--size", default="640x360", help="frame size WxH (default 640x360)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = 128 on CUDA, 16 on CPU")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--detector", default="auto", help="auto, opencv-haar, skimage-lbp, s3fd:<checkpoint>")
    parser.add_argument("--no-e2e", action="store_true", help="skip the apply() run (no ffmpeg)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"load average {load:.2f} on {cores} cores; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
          file=sys.stderr)
    result = run_lipsync_bench(full=args.full, device=args.device, width=width, height=height, frames=args.frames,
                               batch_size=args.batch_size, repeats=args.repeats, detector=args.detector,
                               end_to_end=not args.no_e2e)
    report([result])
    if args.json:
        args.json.write_text(json.dumps([result], indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
