"""Model throughput: seconds per keyframe (SDXL) and per generated frame (Wan 2.1), with peak memory.

Not a test. Every case runs in its own child process, so its peak RSS (and
CUDA max allocated, when there is a GPU) belongs to that backend alone.

    python bench/models.py                 # harness check: tiny random models through the real adapters
    python bench/models.py --check-configs # full-size architectures on the meta device: parameter counts only
    python bench/models.py --full          # CUDA: full-size architectures with random weights

Default (CPU or GPU): builds the tiny random pipelines of
``sparkle_motion_dagster.dev.tiny_models`` into a temporary folder and renders
through ``SdxlKeyframes`` and ``WanClips`` themselves (loading, generation,
resampling, MP4 encoding). The figures say nothing about real models; they
check the harness and the adapters' overhead.

``--full`` (needs CUDA): builds SDXL base and Wan 2.1 14B (I2V at 480p,
FLF2V at 720p) from their published architecture configs, written out below,
with random weights: nothing is downloaded. Weights are created directly on the
GPU in the run dtype (fp16 for SDXL; bf16 for the Wan transformer and UMT5,
fp32 for the Wan VAE and CLIP image encoder, as the adapters load them). The
pipelines are called directly with the adapters' settings: SDXL 1024x1024,
30 steps; Wan 81 frames, 30 steps, CFG 5. Random weights cost the same
arithmetic as trained ones, so the timings stand for the real models (the
pictures are noise). Wan 14B holds about 47 GB of weights (transformer
16.4 B parameters in bf16, UMT5-XXL 5.7 B in bf16, CLIP ViT-H and VAE in fp32),
so it needs an 80 GB card; ``--wan-preset cuda-offload`` builds on the CPU
instead (about 50 GB of RAM) and moves each sub-model to the GPU while it runs.
``--check-configs`` verifies the architectures (parameter counts and one
forward pass on meta tensors) without any memory. The tokenizers are
the tiny ones (prompts are padded to the same length, so the cost is the same).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_MARKER = "BENCH_RESULT "
TINY_CASES = ("sdxl-tiny", "wan-i2v-tiny", "wan-flf2v-tiny")
FULL_CASES = ("sdxl-1024", "wan-480p", "wan-720p-flf")
PROMPT = "a rooftop at night in the rain, neon signs reflected in puddles, cinematic lighting"
MOTION = "slow push in as the rain falls"
WAN_GEN_FPS = 16

# --------------------------------------------------------------------------- published architectures

# stabilityai/stable-diffusion-xl-base-1.0
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816, norm_num_groups=32,
)
SDXL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=1024, block_out_channels=(128, 256, 512, 512),
    layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.13025, force_upcast=True,
)
SDXL_TEXT_1 = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                   num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
SDXL_TEXT_2 = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
                   num_hidden_layers=32, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
SDXL_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                      timestep_spacing="leading")

# Wan-AI/Wan2.1-I2V-14B-{480P,720P}-Diffusers; FLF2V adds pos_embed_seq_len = 2 x 257 CLIP tokens.
WAN_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120, rope_max_seq_len=1024,
)
WAN_FLF_POS_EMBED = 2 * ((224 // 14) ** 2 + 1)
WAN_UMT5 = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
WAN_CLIP_VISION = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
                       image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
# AutoencoderKLWan's defaults are the Wan 2.1 VAE (base_dim 96, dim_mult 1,2,4,4, 4x8x8 compression).


@contextlib.contextmanager
def constructed_on(device: str, dtype):
    """Create parameters directly on ``device`` in ``dtype`` (no fp32 copy in host memory)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def full_sdxl_pipeline(device: str):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sparkle_motion_dagster.dev.tiny_models import build_clip_tokenizer

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_clip_tokenizer(Path(scratch))
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    dtype = torch.float32 if device in ("cpu", "meta") else torch.float16
    with constructed_on(device, dtype):
        unet = UNet2DConditionModel(**SDXL_UNET)
        vae = AutoencoderKL(**SDXL_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SDXL_TEXT_1, **ids))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**SDXL_TEXT_2, **ids))
    return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
                                     scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER))


def full_wan_pipeline(device: str, *, first_last_frame: bool, flow_shift: float):
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from sparkle_motion_dagster.dev.tiny_models import build_umt5_tokenizer

    low = torch.float32 if device == "meta" else torch.bfloat16
    with constructed_on(device, low):
        transformer = WanTransformer3DModel(**WAN_TRANSFORMER,
                                            pos_embed_seq_len=WAN_FLF_POS_EMBED if first_last_frame else None)
        text_encoder = UMT5EncoderModel(UMT5Config(**WAN_UMT5))
    with constructed_on(device, torch.float32):
        vae = AutoencoderKLWan()
        image_encoder = CLIPVisionModel(CLIPVisionConfig(**WAN_CLIP_VISION))
    return WanImageToVideoPipeline(
        tokenizer=build_umt5_tokenizer(), text_encoder=text_encoder, vae=vae,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                          flow_shift=flow_shift),
        image_processor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        image_encoder=image_encoder, transformer=transformer,
    )


# --------------------------------------------------------------------------- measuring (child process)


def peak_memory() -> dict:
    """Peak RSS of this process and, with CUDA, the peak allocated on the device (GiB)."""
    figures = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    import torch

    if torch.cuda.is_available():
        figures["cuda_max_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return figures


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _noise_image(width: int, height: int, seed: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def run_tiny(case: str, models: Path, repeats: int, steps: int) -> dict:
    """Render through the adapters, as the assets do."""
    from sparkle_motion_dagster.resources.clips import ClipRequest

    if case == "sdxl-tiny":
        from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes

        renderer = SdxlKeyframes(model=str(models / "sdxl"), steps=steps)
        start = time.perf_counter()
        renderer.render(PROMPT, seed=0, width=64, height=64, label="warm-up")
        first = time.perf_counter() - start
        times = []
        for seed in range(1, repeats + 1):
            start = time.perf_counter()
            renderer.render(PROMPT, seed=seed, width=64, height=64, label="bench")
            times.append(time.perf_counter() - start)
        return {"size": "64x64", "steps": steps, "first_call_s": first, "s_per_keyframe": sum(times) / len(times)}

    from sparkle_motion_dagster.resources.clips.wan import WanClips

    renderer = WanClips(model=str(models / case.removesuffix("-tiny")), steps=steps, gen_fps=WAN_GEN_FPS)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        _noise_image(64, 64, 1).save(folder / "start.png")
        _noise_image(64, 64, 2).save(folder / "end.png")
        # 121 frames at 24 fps = a 5 s span = one full 81-frame generation at 16 fps.
        request = ClipRequest(shot_id="bench", start_image=folder / "start.png", end_image=folder / "end.png",
                              frames=121, fps=24.0, width=64, height=64, seed=0, motion_prompt=MOTION, prompt=PROMPT)
        start = time.perf_counter()
        renderer.render(request, folder / "warm.mp4")
        first = time.perf_counter() - start
        times, details = [], {}
        for index in range(repeats):
            start = time.perf_counter()
            details = renderer.render(request, folder / f"clip{index}.mp4")
            times.append(time.perf_counter() - start)
    mean = sum(times) / len(times)
    model_frames = sum(details["segment_frames"]) + details["guide_frames"]
    return {"size": "64x64", "steps": steps, "first_call_s": first, "s_per_clip": mean,
            "generated_frames": model_frames, "s_per_generated_frame": mean / model_frames,
            "s_per_film_second": mean / (request.frames / request.fps), "continuity_mode": details["continuity_mode"]}


def run_full(case: str, repeats: int, steps: int, wan_preset: str) -> dict:
    """Full-size architectures with random weights, called with the adapters' settings."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--full needs CUDA (full-size SDXL and Wan 14B on a CPU would take hours).")
    generator = lambda seed: torch.Generator("cpu").manual_seed(seed)  # noqa: E731
    start = time.perf_counter()
    if case == "sdxl-1024":
        pipe = full_sdxl_pipeline("cuda")
        pipe.set_progress_bar_config(disable=True)
        build = time.perf_counter() - start
        call = dict(prompt=PROMPT, width=1024, height=1024, guidance_scale=7.5)
        pipe(**call, num_inference_steps=2, generator=generator(0))  # warm-up: kernels, allocator
        frames, size = 1, "1024x1024"
    else:
        flf = case == "wan-720p-flf"
        width, height = (1280, 720) if flf else (832, 480)
        device = "cpu" if wan_preset == "cuda-offload" else "cuda"
        pipe = full_wan_pipeline(device, first_last_frame=flf, flow_shift=5.0 if flf else 3.0)
        if wan_preset == "cuda-offload":
            pipe.enable_model_cpu_offload()
        pipe.set_progress_bar_config(disable=True)
        build = time.perf_counter() - start
        call = dict(image=_noise_image(width, height, 1), prompt=f"{PROMPT}. {MOTION}.", width=width, height=height,
                    num_frames=81, guidance_scale=5.0, output_type="np")
        if flf:
            call["last_image"] = _noise_image(width, height, 2)
        pipe(**call, num_inference_steps=1, generator=generator(0))  # warm-up at the real shape
        frames, size = 81, f"{width}x{height}"
    _sync()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        pipe(**call, num_inference_steps=steps, generator=generator(seed))
        _sync()
        times.append(time.perf_counter() - start)
    mean = sum(times) / len(times)
    result = {"size": size, "steps": steps, "build_s": build}
    if frames == 1:
        result["s_per_keyframe"] = mean
    else:
        result.update({"s_per_clip": mean, "generated_frames": frames, "s_per_generated_frame": mean / frames,
                       "s_per_film_second": mean / ((frames - 1) / WAN_GEN_FPS), "preset": wan_preset})
    return result


def child(args) -> None:
    import torch

    if args.child in TINY_CASES:
        result = run_tiny(args.child, Path(args.models), args.repeats, args.steps or 2)
    else:
        result = run_full(args.child, args.repeats, args.steps or 30, args.wan_preset)
    result.update(case=args.child, device="cuda" if torch.cuda.is_available() else "cpu",
                  torch_threads=torch.get_num_threads(), **peak_memory())
    print(RESULT_MARKER + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- orchestration (parent)


def check_configs() -> None:
    """Build every full-size architecture on the meta device (no memory used), print parameter counts,
    and run the denoisers once on meta tensors at the benchmark shapes to prove the configs fit together."""
    import torch

    rows = []
    sdxl = full_sdxl_pipeline("meta")
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        rows.append((f"sdxl.{name}", sum(p.numel() for p in getattr(sdxl, name).parameters())))
    with torch.device("meta"):
        text = torch.randn(1, 77, SDXL_UNET["cross_attention_dim"])
        added = {"text_embeds": torch.randn(1, SDXL_TEXT_2["projection_dim"]), "time_ids": torch.randn(1, 6)}
        out = sdxl.unet(torch.randn(1, 4, 128, 128), torch.tensor([500]), encoder_hidden_states=text,
                        added_cond_kwargs=added).sample
    print(f"sdxl.unet forward at 1024x1024: latents {tuple(out.shape)}")
    for flf in (False, True):
        wan = full_wan_pipeline("meta", first_last_frame=flf, flow_shift=3.0)
        label = "wan-flf2v" if flf else "wan-i2v"
        for name in ("transformer", "text_encoder", "image_encoder", "vae"):
            if flf and name != "transformer":
                continue
            rows.append((f"{label}.{name}", sum(p.numel() for p in getattr(wan, name).parameters())))
        latent_h, latent_w = (90, 160) if flf else (60, 104)
        with torch.device("meta"):
            frames = 2 if flf else 1  # the pipeline encodes [first, last] for FLF2V
            image = wan.image_encoder(pixel_values=torch.randn(frames, 3, 224, 224),
                                      output_hidden_states=True).hidden_states[-2]
            out = wan.transformer(hidden_states=torch.randn(1, 36, 21, latent_h, latent_w), timestep=torch.tensor([500]),
                                  encoder_hidden_states=torch.randn(1, 512, WAN_UMT5["d_model"]),
                                  encoder_hidden_states_image=image, return_dict=False)[0]
        print(f"{label}.transformer forward, 81 frames at {latent_w * 8}x{latent_h * 8}: latents {tuple(out.shape)}")
    for name, count in rows:
        print(f"{name:28s} {count / 1e9:8.3f} B parameters")


def run_case(case: str, args, models: Path | None) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", case, "--repeats", str(args.repeats),
               "--wan-preset", args.wan_preset]
    if args.steps:
        command += ["--steps", str(args.steps)]
    if models is not None:
        command += ["--models", str(models)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print(f"... {case}", file=sys.stderr, flush=True)
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return {"case": case, "error": f"exit {proc.returncode}: {tail}"}


def _fmt(value, spec: str) -> str:
    """``format(value, spec)``, or a dash of the same width when there is no value."""
    return format(value, spec) if value is not None else "-".rjust(int(spec.split(".")[0]))


def report(results: list[dict]) -> None:
    header = (f"{'case':16s} {'device':6s} {'size':>10s} {'steps':>5s} {'s/keyframe':>11s} {'s/gen frame':>12s} "
              f"{'s/film s':>9s} {'peak RSS GiB':>13s} {'CUDA GiB':>9s}")
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['case']:16s} FAILED\n{r['error']}")
            continue
        print(f"{r['case']:16s} {r['device']:6s} {r['size']:>10s} {r['steps']:>5d} "
              f"{_fmt(r.get('s_per_keyframe'), '11.4f')} {_fmt(r.get('s_per_generated_frame'), '12.5f')} "
              f"{_fmt(r.get('s_per_film_second'), '9.3f')} {r['peak_rss_gib']:13.2f} "
              f"{_fmt(r.get('cuda_max_allocated_gib'), '9.2f')}")
    by_case = {r["case"]: r for r in results if "error" not in r}
    print()
    for r in by_case.values():
        if "first_call_s" in r:
            print(f"{r['case']}: first call (imports + load + render) {r['first_call_s']:.2f} s; "
                  f"continuity {r.get('continuity_mode', '-')}")
        if "build_s" in r:
            print(f"{r['case']}: building random weights {r['build_s']:.1f} s")
    pairs = [("wan-720p-flf", "wan-480p"), ("wan-flf2v-tiny", "wan-i2v-tiny")]
    for high, low in pairs:
        if high in by_case and low in by_case:
            ratio = by_case[high]["s_per_generated_frame"] / by_case[low]["s_per_generated_frame"]
            print(f"{high} / {low}: {ratio:.2f}x the time per generated frame")
    for name in ("wan-480p", "wan-720p-flf"):
        if name in by_case and "sdxl-1024" in by_case:
            per_shot = by_case[name]["s_per_clip"] / by_case["sdxl-1024"]["s_per_keyframe"]
            print(f"one 81-frame {name} generation costs {per_shot:.0f} SDXL keyframes")
    for name, r in by_case.items():
        if "s_per_film_second" in r:
            print(f"{name}: {r['s_per_film_second']:.2f} s of compute per second of film "
                  f"(so a 60 s film takes {r['s_per_film_second']:.1f} min)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full-size architectures with random weights (CUDA)")
    parser.add_argument("--check-configs", action="store_true", help="parameter counts of the full architectures")
    parser.add_argument("--only", nargs="*", help="cases to run (default: all of the mode)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per case after a warm-up (default 2)")
    parser.add_argument("--steps", type=int, default=0, help="denoising steps (default: 2 tiny, 30 full)")
    parser.add_argument("--wan-preset", default="cuda-bf16", choices=("cuda-bf16", "cuda-offload"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-speech-lipsync", action="store_true",
                        help="only the image and video models (speech: bench/speech.py, lipsync: bench/lipsync.py)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args)
        return
    if args.check_configs:
        check_configs()
        return
    cases = args.only or list(FULL_CASES if args.full else TINY_CASES)
    if args.full:
        print("path: --full calls the diffusers pipelines directly with the adapters' settings; it bypasses "
              "the adapters (no MP4 encoding, no resampling), so the figures are the models' compute alone")
    else:
        print("path: through the adapters (SdxlKeyframes, WanClips): loading, generation, resampling, MP4 encoding")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"load average {load:.2f} on {cores} cores; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
          file=sys.stderr)
    if load > cores / 2 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("warning: a busy CPU with busy-waiting OpenMP threads makes small CPU models 20-30x slower; "
              "set OMP_WAIT_POLICY=PASSIVE for figures that mean something", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        models = None
        if any(case in TINY_CASES for case in cases):
            from sparkle_motion_dagster.dev.tiny_models import build_all

            models = Path(scratch)
            build_all(models)
        results = [run_case(case, args, models) for case in cases]
    report(results)
    if not args.skip_speech_lipsync:
        results += speech_and_lipsync(full=args.full)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def speech_and_lipsync(*, full: bool) -> list[dict]:
    """Real-time factor of each speech engine and frames per second of lipsync (same harness rules)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from lipsync import run_lipsync_bench
    from speech import run_speech_bench

    rows = []
    for row in run_speech_bench():
        rows.append({"case": f"speech:{row['case']}", **row})
        if "rtf" in row:
            print(f"speech {row['case']:<14} rtf={row['rtf']} ({row['x_realtime']}x real time)")
        else:
            print(f"speech {row['case']:<14} {row.get('skipped') or row.get('error')}")
    lipsync = run_lipsync_bench(full=full)
    rows.append({"case": "lipsync", **lipsync})
    figures = {k: v for k, v in lipsync.items() if "fps" in k}
    print("lipsync " + " ".join(f"{k}={v}" for k, v in figures.items()))
    return rows


if __name__ == "__main__":
    main()
