"""Where a model's parts live on the GPU, chosen before it loads: the fastest placement that fits the card.

A memory plan is worked out from what is known before any weight is read:

* each component's parameter count, from its ``config.json`` (the module is built on torch's
  ``meta`` device, which allocates nothing), in the dtype the adapter loads it in;
* the generation's size and frame count, which set the activations (Wan: latent tokens x the
  transformer's width; SDXL: latent pixels) and the VAE's decode;
* the card: free and total memory (``torch.cuda.mem_get_info``) and its name, or a card named
  for a pre-flight (``CARDS``: ``t4`` ... ``h200``, or a number of GB).

Placements, fastest first (each with and without VAE tiling):

==================  ==================================================================
resident            every component on the GPU for the whole call
text-encoder-off    the text encoder is moved back to the CPU once the prompt is encoded
model-offload       each component on the GPU only while it runs (``enable_model_cpu_offload``)
group-offload-block the transformer's (and text encoder's) blocks stream in one at a time,
                    the next one prefetched on a side stream (``enable_group_offload``)
group-offload-leaf  the same, one layer at a time: the least GPU memory, the slowest
==================  ==================================================================

VAE tiling (``vae.enable_tiling()`` with slicing) is added only where the decode would not fit
without it. ``auto`` chooses the first placement whose predicted peak, plus ``HEADROOM``, fits
the free memory; an out-of-memory error steps down to the next placement with a lower predicted
peak, once (:func:`step_down`). The figures are predictions from the shapes (the formulas are
below, each with what it counts); ``bench/gpu.py`` prints them beside measured peaks.

Sizes are in bytes; a "GB" shown to users here is a GiB (2**30 bytes), as cards are sold and as
``nvidia-smi`` counts. Nothing here imports torch at import time.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GIB = 2**30
# The CUDA context, cuBLAS workspaces and the allocator's rounding: memory a process loses beside its tensors.
CONTEXT_BYTES = int(0.75 * GIB)
# What a plan keeps free beyond its predicted peak (fragmentation, the prediction's own error).
HEADROOM = 0.06
# The device placements load onto (tests move it to the CPU to run the same code paths there).
ONLOAD_DEVICE = "cuda"

PLACEMENTS = ("resident", "text-encoder-off", "model-offload", "group-offload-block", "group-offload-leaf")
# How much slower than ``resident`` each placement denoises, until bench/gpu.py measures it on a card:
# moving the 11 GB text encoder twice per generation; each component once per call over PCIe;
# every block every step (mostly hidden behind compute by the prefetch stream); every layer every step.
PLACEMENT_SLOWDOWN = {"resident": 1.0, "text-encoder-off": 1.02, "model-offload": 1.05,
                      "group-offload-block": 1.3, "group-offload-leaf": 1.7}
VAE_TILING_SLOWDOWN = 1.03

# Cards a pre-flight can name: memory as sold (GiB) and dense 16-bit tensor TFLOPS (what a
# diffusion model's time scales with; the T4 has no bfloat16, so its fp16 figure).
CARDS: dict[str, dict[str, Any]] = {
    "t4": {"name": "NVIDIA T4", "memory_gb": 16, "tflops": 65, "bf16": False},
    "l4": {"name": "NVIDIA L4", "memory_gb": 24, "tflops": 121, "bf16": True},
    "a100-40gb": {"name": "NVIDIA A100 40GB", "memory_gb": 40, "tflops": 312, "bf16": True},
    "a100-80gb": {"name": "NVIDIA A100 80GB", "memory_gb": 80, "tflops": 312, "bf16": True},
    "h100": {"name": "NVIDIA H100 80GB", "memory_gb": 80, "tflops": 989, "bf16": True},
    "h200": {"name": "NVIDIA H200", "memory_gb": 141, "tflops": 989, "bf16": True},
}


class OutOfGpuMemory(RuntimeError):
    """Out of GPU memory with no lower placement left to try: another attempt would fail the same way."""


# ---------------------------------------------------------------------- the card


@dataclass(frozen=True)
class Card:
    """A GPU as a plan sees it: its name, total memory, memory free for the model, and speed."""

    name: str
    total_bytes: int
    free_bytes: int
    tflops: float | None = None
    bf16: bool = True

    @property
    def memory_gb(self) -> float:
        return round(self.total_bytes / GIB, 1)


def named_card(text: str) -> Card:
    """A card by name (``t4``, ``l4``, ``a100-40gb``, ``a100-80gb``, ``h100``, ``h200``) or size in GB
    (``16``, ``24gb``); its free memory is its total less the CUDA context."""
    key = str(text).strip().lower()
    if key in CARDS:
        card = CARDS[key]
        total = card["memory_gb"] * GIB
        return Card(card["name"], total, total - CONTEXT_BYTES, card["tflops"], card["bf16"])
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:gb|gib|g)?", key)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--gpu {text!r}: expected one of {', '.join(CARDS)} or a memory size in GB (e.g. 24)")
    total = int(float(match.group(1)) * GIB)
    return Card(f"{match.group(1)} GB GPU", total, max(0, total - CONTEXT_BYTES))


def current_card(*, held_bytes: int = 0) -> Card | None:
    """This process's CUDA device 0 as it is now (None without CUDA). ``held_bytes``: memory this
    process holds for the model being planned (it would be freed to load it another way)."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    name = torch.cuda.get_device_properties(0).name
    known = CARDS.get(card_key(name, int(total)) or "")
    return Card(name, int(total), int(free) + int(held_bytes), known["tflops"] if known else None,
                bool(torch.cuda.is_bf16_supported(including_emulation=False)))


def card_key(name: str, total_bytes: int) -> str | None:
    """The ``CARDS`` key of a device by its name as CUDA reports it (``Tesla T4``, ``NVIDIA A100-SXM4-80GB``)."""
    words = name.lower().replace("-", " ").split()
    for family in ("h200", "h100", "a100", "l4", "t4"):
        if family in words:
            if family == "a100":
                return "a100-80gb" if total_bytes > 60 * GIB else "a100-40gb"
            return family
    return None


def held_by_torch() -> int:
    """What torch's allocator of this process holds on device 0 (0 without CUDA)."""
    import torch

    return int(torch.cuda.memory_reserved(0)) if torch.cuda.is_available() else 0


# ---------------------------------------------------------------------- components, from configs


@dataclass(frozen=True)
class Component:
    """One sub-model: parameters in all, in its largest repeated block, and in its largest layer."""

    name: str
    parameters: int
    block_parameters: int
    blocks: int
    leaf_parameters: int


@functools.lru_cache(maxsize=32)
def _component_from_config(folder: str, library: str, class_name: str, stamp: float) -> Component:
    import torch

    module = __import__(library)
    cls = getattr(module, class_name)
    with torch.device("meta"):
        if library == "diffusers":
            model = cls.from_config(cls.load_config(folder))
        else:
            config = cls.config_class.from_pretrained(folder)
            model = cls(config)
    total = sum(p.numel() for p in model.parameters())
    blocks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 1]
    largest = max(blocks, key=lambda m: sum(p.numel() for p in m.parameters()), default=None)
    block = max((sum(p.numel() for p in b.parameters()) for b in largest), default=0) if largest is not None else 0
    leaf = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()), default=0)
    return Component(Path(folder).name, int(total), int(block), len(largest) if largest is not None else 0, int(leaf))


def pipeline_folder(source: str) -> Path:
    """The folder of a pipeline's configs: ``source`` itself, or a repo id's cached snapshot."""
    path = Path(source)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True, allow_patterns=["*.json", "*/*.json"]))
    except Exception as error:  # noqa: BLE001 - re-raised with what to do
        raise RuntimeError(f"{source!r}: its configs are not in the Hugging Face cache, so its memory cannot be "
                           f"planned (download it, or at least its *.json files)") from error


def components(source: str, names: tuple[str, ...]) -> dict[str, Component]:
    """Parameter counts of a pipeline's components, from their configs only (no weights read)."""
    folder = pipeline_folder(source)
    index = json.loads((folder / "model_index.json").read_text())
    found = {}
    for name in names:
        entry = index.get(name)
        sub = folder / name
        if not (isinstance(entry, list) and entry[0] and (sub / "config.json").is_file()):
            continue
        found[name] = _component_from_config(str(sub), entry[0], entry[1], (sub / "config.json").stat().st_mtime)
    return found


def _config(source: str, name: str) -> dict[str, Any]:
    return json.loads((pipeline_folder(source) / name / "config.json").read_text())


# ---------------------------------------------------------------------- the plan


@dataclass
class Candidate:
    placement: str
    vae_tiling: bool
    peak_bytes: int

    @property
    def label(self) -> str:
        return self.placement + (" + vae-tiling" if self.vae_tiling else "")


@dataclass
class MemoryPlan:
    """The placement chosen for one model on one card, with the figures that chose it."""

    model: str
    card: str
    placement: str
    vae_tiling: bool
    predicted_peak_bytes: int
    free_bytes: int
    total_bytes: int
    fits: bool
    width: int
    height: int
    frames: int
    dtype: str
    chosen_by: str
    """``auto``, or the explicit setting that fixed the placement."""
    candidates: list[Candidate] = field(default_factory=list)
    components_bytes: dict[str, int] = field(default_factory=dict)
    stepped_down_from: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return self.placement + (" + vae-tiling" if self.vae_tiling else "")

    @property
    def margin_bytes(self) -> int:
        return self.free_bytes - self.predicted_peak_bytes

    @property
    def slowdown(self) -> float:
        return PLACEMENT_SLOWDOWN.get(self.placement, 1.0) * (VAE_TILING_SLOWDOWN if self.vae_tiling else 1.0)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidates"] = [{"placement": c.label, "peak_gb": gb(c.peak_bytes)} for c in self.candidates]
        data.update(label=self.label, predicted_peak_gb=gb(self.predicted_peak_bytes), free_gb=gb(self.free_bytes),
                    margin_gb=gb(self.margin_bytes), total_gb=gb(self.total_bytes))
        return data

    def summary(self) -> str:
        """One line: placement, predicted peak, free memory and margin."""
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"{self.label} ({self.dtype}) for {self.width}x{self.height}, {self.frames} frame(s): predicted peak "
                f"{gb(self.predicted_peak_bytes)} GB of {gb(self.free_bytes)} GB free on {self.card}, margin "
                f"{gb(self.margin_bytes)} GB: {verdict}")


def gb(size: int | float) -> float:
    return round(size / GIB, 2)


def fits(peak: int, free: int) -> bool:
    return peak * (1 + HEADROOM) <= free


def choose(candidates: list[Candidate], card: Card, *, allowed: Callable[[Candidate], bool] = lambda c: True,
           **plan: Any) -> MemoryPlan:
    """The first allowed candidate that fits the card (or, when none does, the lowest-memory one)."""
    too_big = _TOO_BIG.get(_shape_key(plan))
    usable = [c for c in candidates if allowed(c) and (too_big is None or c.peak_bytes < too_big)] or \
        [c for c in candidates if allowed(c)]
    chosen = next((c for c in usable if fits(c.peak_bytes, card.free_bytes)), None)
    if chosen is None:
        chosen = min(usable, key=lambda c: c.peak_bytes)
    return MemoryPlan(card=card.name, placement=chosen.placement, vae_tiling=chosen.vae_tiling,
                      predicted_peak_bytes=chosen.peak_bytes, free_bytes=card.free_bytes,
                      total_bytes=card.total_bytes, fits=fits(chosen.peak_bytes, card.free_bytes),
                      candidates=candidates, **plan)


# Per model and generation shape: the smallest predicted peak that ran out of memory in this process
# (later plans start below it instead of failing the same way again).
_TOO_BIG: dict[tuple, int] = {}


def _shape_key(plan: Mapping[str, Any]) -> tuple:
    return (plan.get("model"), plan.get("width"), plan.get("height"), plan.get("frames"))


def step_down(plan: MemoryPlan, *, free_bytes: int | None = None) -> MemoryPlan | None:
    """The next candidate after the plan's with a lower predicted peak (None when there is none),
    recorded as stepped down from the plan."""
    order = plan.candidates
    index = next((i for i, c in enumerate(order) if c.placement == plan.placement
                  and c.vae_tiling == plan.vae_tiling), len(order))
    lower = next((c for c in order[index + 1:] if c.peak_bytes < plan.predicted_peak_bytes), None)
    if lower is None:
        return None
    free = plan.free_bytes if free_bytes is None else free_bytes
    return MemoryPlan(**{**{k: getattr(plan, k) for k in ("model", "card", "total_bytes", "width", "height",
                                                           "frames", "dtype", "candidates", "components_bytes")},
                         "placement": lower.placement, "vae_tiling": lower.vae_tiling,
                         "predicted_peak_bytes": lower.peak_bytes, "free_bytes": free,
                         "fits": fits(lower.peak_bytes, free), "chosen_by": "out of memory: stepped down",
                         "stepped_down_from": {"placement": plan.label, "predicted_peak_gb": gb(plan.predicted_peak_bytes),
                                               "free_gb": gb(plan.free_bytes)}})


# ---------------------------------------------------------------------- Wan 2.1 image-to-video

WAN_COMPONENTS = ("transformer", "text_encoder", "image_encoder", "vae")
TEXT_TOKENS = 512  # Wan pads every prompt to 512 UMT5 tokens
# Working set of one transformer block per latent token, in 16-bit values: the block's input and
# residual, the fp32 norm (2 values), q, k, v and their rotated copies, the attention's output
# (8 x width) and the feed-forward's hidden layer before and after its GELU (2 x ffn). Attention
# itself is memory-efficient (SDPA's flash or efficient kernels), linear in tokens.
WAN_BLOCK_WIDTHS = 8
WAN_FFN_COPIES = 2
# The VAE's causal decoder works 4 output frames at a time at full resolution with ``base_dim``
# channels in fp32; about six such tensors are alive at once in a residual block with its cache.
VAE_LIVE_TENSORS = 6
VAE_TILE = 256  # AutoencoderKLWan's default tile (192 stride): what one tile decodes at a time


def wan_plan(source: str, *, width: int, height: int, frames: int, card: Card, preset: str = "auto",
             chosen_by: str = "auto") -> MemoryPlan:
    """The placement for one Wan 2.1 image-to-video generation of ``frames`` frames at ``width`` x
    ``height`` on ``card``; ``preset`` other than ``auto`` fixes the placement (its VAE tiling is still
    chosen to fit)."""
    half = preset == "cuda-fp16" or not card.bf16
    parts = components(source, WAN_COMPONENTS)
    transformer = _config(source, "transformer")
    vae = _config(source, "vae")
    weights = {"transformer": parts["transformer"].parameters * 2, "text_encoder": parts["text_encoder"].parameters * 2,
               "image_encoder": parts["image_encoder"].parameters * 4 if "image_encoder" in parts else 0,
               "vae": parts["vae"].parameters * 4}
    width_ = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    patch = transformer.get("patch_size", [1, 2, 2])
    latent_frames = (frames - 1) // 4 + 1
    tokens = latent_frames * (height // (8 * patch[1])) * (width // (8 * patch[2]))
    denoise = tokens * (WAN_BLOCK_WIDTHS * width_ + WAN_FFN_COPIES * transformer["ffn_dim"]) * 2
    text_config = _config(source, "text_encoder")
    text = TEXT_TOKENS * (8 * text_config.get("d_model", 4096) + 2 * text_config.get("d_ff", 10240)) * 4
    image = 257 * 2 * 1280 * 16 * 4  # CLIP ViT-H on two 224x224 frames: small
    video_bytes = frames * 3 * height * width * 4
    base = vae.get("base_dim", 96)

    def vae_work(tiling: bool) -> int:
        tile = min(VAE_TILE, height) * min(VAE_TILE, width) if tiling else height * width
        return VAE_LIVE_TENSORS * 4 * base * tile * 4 + (3 if tiling else 2) * video_bytes

    all_weights = sum(weights.values())
    te = parts["text_encoder"]
    tr = parts["transformer"]
    te_block = (te.parameters - te.block_parameters * te.blocks + 2 * te.block_parameters) * 2
    tr_block = (tr.parameters - tr.block_parameters * tr.blocks + 2 * tr.block_parameters) * 2
    tr_leaf = (2 * tr.leaf_parameters) * 2 + (tr.parameters - tr.block_parameters * tr.blocks) * 2 // 8

    def peak(placement: str, tiling: bool) -> int:
        decode = vae_work(tiling)
        if placement == "resident":
            value = all_weights + max(text, image, decode, denoise)
        elif placement == "text-encoder-off":
            value = max(all_weights + text, all_weights - weights["text_encoder"] + max(image, decode, denoise))
        elif placement == "model-offload":
            value = max(weights["text_encoder"] + text, weights["image_encoder"] + image, weights["vae"] + decode,
                        weights["transformer"] + denoise)
        elif placement == "group-offload-block":
            value = max(te_block + text, weights["image_encoder"] + image, weights["vae"] + decode, tr_block + denoise)
        else:  # group-offload-leaf
            value = max(te_block // 4 + text, weights["image_encoder"] + image, weights["vae"] + decode,
                        tr_leaf + denoise)
        return int(value + CONTEXT_BYTES)

    candidates = [Candidate(p, t, peak(p, t)) for p in PLACEMENTS for t in (False, True)]
    fixed = PRESET_PLACEMENTS.get(preset)
    return choose(candidates, card, allowed=(lambda c: c.placement == fixed) if fixed else (lambda c: True),
                  model=str(source), width=width, height=height, frames=frames,
                  dtype="float16" if half else "bfloat16", chosen_by=chosen_by, components_bytes=weights)


# Explicit Wan presets and the placement each fixes.
PRESET_PLACEMENTS = {"cuda-bf16": "resident", "cuda-fp16": "resident", "cuda-offload": "model-offload",
                     "cuda-group-offload": "group-offload-block"}


def check_explicit(plan: MemoryPlan, *, setting: str, value: str) -> None:
    """An explicit placement that cannot fit the card fails before loading, saying what would."""
    if plan.fits or plan.chosen_by == "auto":
        return
    auto = choose(plan.candidates, Card(plan.card, plan.total_bytes, plan.free_bytes), model=plan.model,
                  width=plan.width, height=plan.height, frames=plan.frames, dtype=plan.dtype, chosen_by="auto")
    hint = (f"auto would choose {auto.label} (predicted peak {gb(auto.predicted_peak_bytes)} GB)" if auto.fits
            else "no placement fits: lower the generation size or frames per generation")
    raise ValueError(f"{setting} = {value!r} needs about {gb(plan.predicted_peak_bytes * (1 + HEADROOM))} GB (predicted "
                     f"peak and {HEADROOM:.0%} headroom) for {plan.width}x"
                     f"{plan.height}, {plan.frames} frames, but {plan.card} has {gb(plan.free_bytes)} GB free: "
                     f"set it to auto ({hint}).")


# ---------------------------------------------------------------------- SDXL

SDXL_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")
# UNet activations per latent pixel with classifier-free guidance (a batch of two) in fp16: the
# skip connections kept for the up blocks, the attention blocks' projections at 64x64 and 32x32 tokens.
SDXL_UNET_BYTES_PER_LATENT_PIXEL = 2 * 40_000
# The VAE decodes in fp32 (SDXL's VAE upcasts): about six full-resolution 128-channel tensors alive.
SDXL_VAE_BYTES_PER_PIXEL = VAE_LIVE_TENSORS * 128 * 4


def sdxl_plan(source: str, *, width: int, height: int, card: Card, dtype: str = "float16",
              offload: bool | None = None, tiling: bool | None = None, chosen_by: str = "auto") -> MemoryPlan:
    """The placement for one SDXL image; ``offload``/``tiling`` True fix them, None lets the plan choose."""
    parts = components(source, SDXL_COMPONENTS)
    size = 4 if dtype == "float32" else 2
    weights = {name: part.parameters * size for name, part in parts.items()}
    vae_config = _config(source, "vae")
    tile_edge = int(vae_config.get("sample_size", 1024))
    unet = (height // 8) * (width // 8) * SDXL_UNET_BYTES_PER_LATENT_PIXEL * size // 2
    text = 77 * 2 * 1280 * 16 * size

    def decode(tiled: bool) -> int:
        area = min(height, tile_edge) * min(width, tile_edge) if tiled else height * width
        return area * SDXL_VAE_BYTES_PER_PIXEL + parts["vae"].parameters * 4 + height * width * 3 * 4 * 2

    def peak(placement: str, tiled: bool) -> int:
        if placement == "resident":
            value = sum(weights.values()) + max(text, unet, decode(tiled))
        else:
            value = max(weights["text_encoder"] + weights["text_encoder_2"] + text, weights["unet"] + unet,
                        weights["vae"] + decode(tiled))
        return int(value + CONTEXT_BYTES)

    candidates = [Candidate(p, t, peak(p, t)) for p in ("resident", "model-offload") for t in (False, True)]

    def allowed(c: Candidate) -> bool:
        return (offload is None or (c.placement == "model-offload") == offload) and (tiling is None or c.vae_tiling == tiling)

    return choose(candidates, card, allowed=allowed, model=str(source), width=width, height=height, frames=1,
                  dtype=dtype, chosen_by=chosen_by, components_bytes=weights)


# ---------------------------------------------------------------------- per adapter


def plan_for_resource(resource: Any, *, width: int, height: int, frames: int = 81, fps: float = 16.0,
                      card: Card | None = None) -> MemoryPlan | None:
    """The memory plan of a configured adapter for a generation of ``width`` x ``height`` (and, for a
    video model, ``frames`` frames at ``fps``) on ``card`` (this process's GPU when None). None for
    an adapter without a plan (CPU backends) or, without ``card``, on a machine without CUDA."""
    backend = getattr(resource, "backend", None)
    if backend not in ("wan-2.1", "sdxl"):
        return None
    if card is None:
        card = current_card()
        if card is None:
            return None
        runtime = resource.runtime()
    else:
        runtime = _runtime_for_another_card(resource)
    if backend == "wan-2.1":
        from sparkle_motion_dagster.resources.clips import ClipRequest

        request = ClipRequest(shot_id="plan", start_image=Path(), end_image=Path(), frames=frames, fps=fps,
                              width=width, height=height, seed=0, motion_prompt="", prompt="")
        return resource.memory_plan(runtime, request, card=card, check=False)
    return resource.memory_plan(runtime, width=width, height=height, card=card)


def _runtime_for_another_card(resource: Any) -> dict[str, Any]:
    """The adapter's resolved model for planning a card this machine may not have: a CUDA setting is
    not refused for want of CUDA here (the dtype it implies is kept)."""
    try:
        return resource.runtime()
    except RuntimeError as error:
        if "CUDA is not available" not in str(error):
            raise
    field = "device_preset" if hasattr(resource, "device_preset") else "device"
    runtime = type(resource)(**{**resource.model_dump(), field: "auto"}).runtime()
    if field == "device":
        runtime["device"], runtime["dtype"] = "cuda", "float16" if resource.dtype == "auto" else resource.dtype
    return runtime


def doctor_plan(resource: Any, runtime: Mapping[str, Any]) -> dict[str, Any] | str | None:
    """What ``doctor`` shows for an adapter: its plan for the model's largest generation on this
    machine's GPU (Wan: ``max_pixels`` at 81 frames; SDXL: its ``max_pixels`` square), or why none."""
    backend = getattr(resource, "backend", None)
    if backend not in ("wan-2.1", "sdxl"):
        return None
    try:
        card = current_card()
        if card is None:
            return "no CUDA device: nothing to place (the model runs on the CPU)"
        if backend == "wan-2.1":
            side = (runtime["max_pixels"] / (16 * 9)) ** 0.5
            plan = plan_for_resource(resource, width=int(16 * side), height=int(9 * side),
                                     frames=resource.max_frames_per_generation, fps=resource.gen_fps, card=card)
        else:
            edge = int(resource.max_pixels ** 0.5)
            plan = plan_for_resource(resource, width=edge, height=edge, card=card)
    except Exception as error:  # noqa: BLE001 - the doctor reports, never raises
        return f"cannot plan: {error}"
    return {**plan_metadata(plan), "summary": plan.summary()}


# ---------------------------------------------------------------------- applying a plan


def apply_wan_placement(pipe, plan: MemoryPlan) -> None:
    """Place a loaded Wan pipeline's components as ``plan`` says (and set its VAE's tiling)."""
    import torch

    device = torch.device(ONLOAD_DEVICE)
    if plan.placement == "resident":
        pipe.to(device)
    elif plan.placement == "text-encoder-off":
        _text_encoder_off_after_encoding(pipe, device)
    elif plan.placement == "model-offload":
        pipe.enable_model_cpu_offload(device=device)
    else:
        level = "leaf_level" if plan.placement == "group-offload-leaf" else "block_level"
        pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type=level,
                                  num_blocks_per_group=1 if level == "block_level" else None, use_stream=True)
    set_vae_tiling(pipe.vae, plan.vae_tiling)


def set_vae_tiling(vae, tiling: bool) -> None:
    if tiling:
        vae.enable_tiling()
        vae.enable_slicing()
    else:
        vae.disable_tiling()
        vae.disable_slicing()


def _text_encoder_off_after_encoding(pipe, device) -> None:
    """Everything on ``device`` except the text encoder, which comes on for encoding (accelerate's
    offload hook) and goes back to the CPU as soon as the image encoder or transformer runs."""
    from accelerate import cpu_offload_with_hook

    text_encoder = pipe.text_encoder
    pipe.text_encoder = None
    try:
        pipe.to(device)
    finally:
        pipe.text_encoder = text_encoder
    _, hook = cpu_offload_with_hook(text_encoder, execution_device=device)
    for name in ("image_encoder", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.register_forward_pre_hook(lambda *_: hook.offload())
    pipe._text_encoder_hook = hook


# ---------------------------------------------------------------------- out of memory


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA (or accelerator) out-of-memory error, by type where torch is loaded, else by its message."""
    import sys

    torch = sys.modules.get("torch")
    oom_type = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return isinstance(error, (RuntimeError, MemoryError)) and "out of memory" in str(error).lower()


def free_memory_bytes() -> int | None:
    """Free memory on CUDA device 0 now, or None."""
    import sys

    torch = sys.modules.get("torch")
    try:
        return int(torch.cuda.mem_get_info(0)[0]) if torch is not None and torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - only a figure for a message
        return None


def out_of_memory_message(plan: MemoryPlan | None, error: BaseException, *, setting: str) -> str:
    """Why an out-of-memory failure is final: what was needed, what was free, what to change."""
    free = free_memory_bytes()
    free_text = f"{gb(free)} GB free now" if free is not None else "free memory unknown"
    if plan is None:
        return (f"out of GPU memory ({error}); {free_text}. Not retried with the same settings: change {setting} "
                "or free the GPU.")
    tried = plan.label + (f" after {plan.stepped_down_from['placement']}" if plan.stepped_down_from else "")
    return (f"out of GPU memory at {tried} for {plan.width}x{plan.height}, {plan.frames} frame(s): predicted peak "
            f"{gb(plan.predicted_peak_bytes)} GB, {gb(plan.free_bytes)} GB was free of {gb(plan.total_bytes)} GB on "
            f"{plan.card} ({free_text}); no lower placement is left. Change {setting}, or free the GPU of other "
            f"processes. ({error})")


def render_stepping_down(plan: MemoryPlan, attempt: Callable[[MemoryPlan], Any], *, release: Callable[[], None],
                         setting: str, log: Callable[[str], None] | None = None) -> tuple[Any, MemoryPlan]:
    """``attempt(plan)``; on out of memory, free the model and try once more at the next lower-memory
    placement. Raises :class:`OutOfGpuMemory` (final, not retried) when that fails too or none is left."""
    try:
        return attempt(plan), plan
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        release()
        key = _shape_key(asdict(plan))
        _TOO_BIG[key] = min(_TOO_BIG.get(key, plan.predicted_peak_bytes), plan.predicted_peak_bytes)
        lower = None if plan.stepped_down_from else step_down(plan, free_bytes=free_memory_bytes() or plan.free_bytes)
        if lower is None:
            raise OutOfGpuMemory(out_of_memory_message(plan, error, setting=setting)) from error
        if log:
            log(f"out of GPU memory at {plan.label} (predicted {gb(plan.predicted_peak_bytes)} GB, "
                f"{gb(plan.free_bytes)} GB free): retrying at {lower.label} (predicted "
                f"{gb(lower.predicted_peak_bytes)} GB)")
    try:
        return attempt(lower), lower
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        release()
        raise OutOfGpuMemory(out_of_memory_message(lower, error, setting=setting)) from error


def plan_metadata(plan: MemoryPlan | None) -> dict[str, Any] | None:
    """The plan as a stage records it (metadata, provenance)."""
    return None if plan is None else {k: v for k, v in plan.as_dict().items() if k != "candidates"}


def as_mapping(plan: MemoryPlan | Mapping | None) -> Mapping | None:
    return plan.as_dict() if isinstance(plan, MemoryPlan) else plan
