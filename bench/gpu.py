"""Full-size models on this machine's GPU, through the product's adapters: seconds per step and per
clip, peak memory, and the memory plan's predicted peak beside the measured one.

Not a test. Needs CUDA (except ``--plan-only``).

    python bench/gpu.py --plan-only             # any machine: what would run, and the predicted peaks
    python bench/gpu.py --plan-only --gpu t4    # ... for a card named or sized (t4, l4, a100-40gb, 24)
    python bench/gpu.py                         # CUDA: SDXL 1024x1024 30 steps; Wan 2.1 14B 480p and 720p,
                                                # 81 frames, at every placement that fits the card
    python bench/gpu.py --wan-steps 10 --out figures.json

SDXL base and Wan 2.1 FLF2V 14B are built from their published configs
(``sparkle_motion_dagster/dev/published_configs.py``) with random weights, in the dtypes the
adapters load (fp16 SDXL; bf16 Wan transformer and UMT5; fp32 VAE and CLIP image encoder), and
rendered by ``SdxlKeyframes.render`` and ``WanClips.render`` themselves: the memory plan, the
placement it applies (``to``, text encoder off, model or group offload, VAE tiling), generation,
resampling and encoding are the product's. Only ``from_pretrained`` is replaced, by the builder
(nothing is downloaded or written to disk; random weights cost the same arithmetic as trained
ones). Each Wan placement is forced in turn by narrowing the plan's choice to it.

Printed per case: seconds per clip (one 81-frame generation) and per denoising step (the clip's
time over its steps: encoding and decoding included), peak allocated CUDA memory, the predicted
peak and the prediction's error (the figure to watch). The JSON (``--out``, by default
``<artifact root>/estimates/gpu_bench.json``) is read by estimates as measured figures for this card.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sparkle_motion_dagster.dev.published_configs import write_sdxl_base, write_wan_flf2v_14b  # noqa: E402
from sparkle_motion_dagster.resources import memory_plan  # noqa: E402

WAN_SIZES = {"480p": (832, 480), "720p": (1280, 720)}
FRAMES = 81


def cards(names: list[str] | None):
    if names:
        return [memory_plan.named_card(name) for name in names]
    here = memory_plan.current_card()
    return [here] if here is not None else [memory_plan.named_card(key) for key in memory_plan.CARDS]


def cases(folders: dict[str, Path], card) -> list[dict]:
    """What would run on ``card``: SDXL once; Wan at each size, at each placement whose plan fits."""
    chosen = []
    sdxl = memory_plan.sdxl_plan(str(folders["sdxl"]), width=1024, height=1024, card=card)
    chosen.append({"backend": "sdxl", "size": "1024x1024", "plan": sdxl, "placement": sdxl.placement})
    for label, (width, height) in WAN_SIZES.items():
        plan = memory_plan.wan_plan(str(folders["wan"]), width=width, height=height, frames=FRAMES, card=card)
        for placement in memory_plan.PLACEMENTS:
            fitting = [c for c in plan.candidates if c.placement == placement and memory_plan.fits(c.peak_bytes,
                                                                                                 card.free_bytes)]
            if fitting:
                chosen.append({"backend": "wan-2.1", "size": label, "width": width, "height": height,
                               "placement": placement, "vae_tiling": fitting[0].vae_tiling,
                               "predicted_peak_bytes": fitting[0].peak_bytes, "auto": placement == plan.placement,
                               "plan": plan})
    return chosen


def plan_only(folders, names) -> None:
    for card in cards(names):
        print(f"== {card.name}: {card.memory_gb:g} GB, {memory_plan.gb(card.free_bytes)} GB free for the model")
        for case in cases(folders, card):
            if case["backend"] == "sdxl":
                plan = case["plan"]
                print(f"  sdxl 1024x1024 30 steps: {plan.label}, predicted peak {memory_plan.gb(plan.predicted_peak_bytes)}"
                      f" GB ({'fits' if plan.fits else 'does NOT fit'})")
                continue
            tiling = " + vae-tiling" if case["vae_tiling"] else ""
            print(f"  wan-2.1 14B {case['size']} {FRAMES} frames: {case['placement']}{tiling}, predicted peak "
                  f"{memory_plan.gb(case['predicted_peak_bytes'])} GB" + ("   <- auto's choice" if case["auto"] else ""))
        wan_sizes = {c["size"] for c in cases(folders, card) if c["backend"] == "wan-2.1"}
        for label in WAN_SIZES:
            if label not in wan_sizes:
                print(f"  wan-2.1 14B {label}: no placement fits")


# ---------------------------------------------------------------------- CUDA: random weights, real adapters


def _random_module(cls, folder: Path, dtype):
    """``cls`` built from ``folder``'s config with random weights (normal, std 0.02) in ``dtype`` on the CPU."""
    import torch

    with torch.device("meta"):
        if hasattr(cls, "load_config"):
            module = cls.from_config(cls.load_config(str(folder)))
        else:
            module = cls(cls.config_class.from_pretrained(str(folder)))
    module = module.to_empty(device="cpu").to(dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
        for name, buffer in module.named_buffers():
            if buffer.is_floating_point():
                buffer.zero_()
    return module.eval()


def random_wan(folder: Path, dtype):
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionModel, UMT5EncoderModel

    from sparkle_motion_dagster.dev.tiny_models import build_umt5_tokenizer

    main = dtype["default"] if isinstance(dtype, dict) else dtype
    vae = AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(str(folder / "vae"))).to(torch.float32).eval()
    return WanImageToVideoPipeline(
        tokenizer=build_umt5_tokenizer(),
        text_encoder=_random_module(UMT5EncoderModel, folder / "text_encoder", main),
        image_encoder=_random_module(CLIPVisionModel, folder / "image_encoder", torch.float32),
        image_processor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        transformer=_random_module(WanTransformer3DModel, folder / "transformer", main),
        vae=vae, scheduler=UniPCMultistepScheduler.from_config(
            json.loads((folder / "scheduler" / "scheduler_config.json").read_text())))


def random_sdxl(folder: Path, dtype):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from sparkle_motion_dagster.dev.tiny_models import build_clip_tokenizer

    tokenizers = tempfile.mkdtemp()
    tokenizer = build_clip_tokenizer(Path(tokenizers))
    return StableDiffusionXLPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae"))).to(dtype).eval(),
        text_encoder=_random_module(CLIPTextModel, folder / "text_encoder", dtype),
        text_encoder_2=_random_module(CLIPTextModelWithProjection, folder / "text_encoder_2", dtype),
        tokenizer=tokenizer, tokenizer_2=tokenizer,
        unet=_random_module(UNet2DConditionModel, folder / "unet", dtype),
        scheduler=EulerDiscreteScheduler.from_config(
            json.loads((folder / "scheduler" / "scheduler_config.json").read_text())))


@contextlib.contextmanager
def built_not_loaded(folders):
    """``from_pretrained`` of the two pipelines builds them at random from the published configs."""
    from diffusers import StableDiffusionXLPipeline, WanImageToVideoPipeline

    originals = WanImageToVideoPipeline.from_pretrained, StableDiffusionXLPipeline.from_pretrained
    WanImageToVideoPipeline.from_pretrained = classmethod(lambda cls, source, dtype=None, **_: random_wan(folders["wan"], dtype))
    StableDiffusionXLPipeline.from_pretrained = classmethod(lambda cls, source, dtype=None, **_: random_sdxl(folders["sdxl"], dtype))
    try:
        yield
    finally:
        WanImageToVideoPipeline.from_pretrained, StableDiffusionXLPipeline.from_pretrained = originals


@contextlib.contextmanager
def forced_placement(placement: str):
    """The Wan adapter's plan narrowed to one placement (its VAE tiling still chosen to fit)."""
    original = memory_plan.PRESET_PLACEMENTS["cuda-bf16"]
    memory_plan.PRESET_PLACEMENTS["cuda-bf16"] = placement
    try:
        yield "cuda-bf16"
    finally:
        memory_plan.PRESET_PLACEMENTS["cuda-bf16"] = original


def measure(render, steps: int, predicted: int) -> dict:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    details = render()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = int(torch.cuda.max_memory_allocated())
    return {"seconds": round(seconds, 2), "seconds_per_step": round(seconds / steps, 3),
            "peak_allocated_bytes": peak, "predicted_peak_bytes": predicted,
            "prediction_error": round((predicted - peak) / peak, 3) if peak else None, "details": details}


def run_on_gpu(folders, args) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from sparkle_motion_dagster.resources.clips import ClipRequest
    from sparkle_motion_dagster.resources.clips.wan import WanClips
    from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes

    card = memory_plan.current_card()
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    results = []
    with built_not_loaded(folders):
        for case in cases(folders, card):
            if case["backend"] == "sdxl":
                keyframes = SdxlKeyframes(model=str(folders["sdxl"]), steps=30)
                plan = case["plan"]
                # the first render loads; time the second
                keyframes.render("a rooftop at night", seed=1, width=1024, height=1024)
                figure = measure(lambda: keyframes.render("a rooftop at night", seed=2, width=1024, height=1024),
                                 30, plan.predicted_peak_bytes)
                keyframes.release()
                results.append({"backend": "sdxl", "placement": plan.label, "width": 1024, "height": 1024,
                                "frames": 1, "steps": 30, **{k: v for k, v in figure.items() if k != "details"}})
            else:
                width, height = case["width"], case["height"]
                for name in ("start", "end"):
                    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)).save(
                        work / f"{name}.png")
                request = ClipRequest(shot_id="bench", start_image=work / "start.png", end_image=work / "end.png",
                                      frames=FRAMES, fps=16.0, width=width, height=height, seed=1, motion_prompt="",
                                      prompt="a rooftop at night in the rain")
                with forced_placement(case["placement"]) as preset:
                    clips = WanClips(model=str(folders["wan"]), device_preset=preset, steps=args.wan_steps)
                    try:
                        from sparkle_motion_dagster.resources.clips import wan

                        runtime = clips.runtime()  # load (build) and place outside the timing
                        wan._pipeline(runtime["source"], runtime["preset"], clips.memory_plan(runtime, request))
                        figure = measure(lambda: clips.render(request, work / "clip.mp4"), args.wan_steps,
                                         case["predicted_peak_bytes"])
                    except Exception as error:  # noqa: BLE001 - a placement that fails is a result too
                        figure = {"error": str(error)[:500]}
                    clips.release()
                plan = (figure.get("details") or {}).get("memory_plan") or {}
                results.append({"backend": "wan-2.1", "placement": plan.get("label") or case["placement"],
                                "width": width, "height": height, "frames": FRAMES, "steps": args.wan_steps,
                                **{k: v for k, v in figure.items() if k != "details"}})
            row = results[-1]
            if "error" in row:
                print(f"{row['backend']} {row['width']}x{row['height']} {row['placement']}: FAILED {row['error']}")
            else:
                print(f"{row['backend']} {row['width']}x{row['height']} {row['placement']}: {row['seconds']} s per "
                      f"clip, {row['seconds_per_step']} s per step, peak {memory_plan.gb(row['peak_allocated_bytes'])}"
                      f" GB allocated, predicted {memory_plan.gb(row['predicted_peak_bytes'])} GB "
                      f"(error {row['prediction_error']:+.1%})", flush=True)
            torch.cuda.empty_cache()
    key = memory_plan.card_key(card.name, card.total_bytes)
    return {"card": card.name, "card_key": key, "memory_gb": card.memory_gb,
            "measured_at": datetime.now(timezone.utc).isoformat(), "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan-only", action="store_true", help="print what would run and the predicted peaks")
    parser.add_argument("--gpu", action="append", help="with --plan-only: a card name or GB (repeatable)")
    parser.add_argument("--wan-steps", type=int, default=30, help="denoising steps per Wan clip (30)")
    parser.add_argument("--out", help="where to write the JSON (default: <artifact root>/estimates/gpu_bench.json)")
    args = parser.parse_args()
    configs = Path(tempfile.mkdtemp(prefix="published-configs-"))
    folders = {"wan": write_wan_flf2v_14b(configs / "wan"), "sdxl": write_sdxl_base(configs / "sdxl")}
    if args.plan_only:
        plan_only(folders, args.gpu)
        return 0
    if memory_plan.current_card() is None:
        print("no CUDA device here: run with --plan-only, or on a machine with a GPU", file=sys.stderr)
        return 2
    report = run_on_gpu(folders, args)
    if args.out:
        out = Path(args.out)
    else:
        from sparkle_motion_dagster.store.locations import artifacts_root

        out = Path(artifacts_root()) / "estimates" / "gpu_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
