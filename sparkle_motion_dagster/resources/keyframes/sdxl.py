"""Keyframes from Stable Diffusion XL (diffusers ``StableDiffusionXLPipeline``).

Configuration
    ``SdxlKeyframes`` is plain configuration (it pickles across processes); the
    pipeline itself lives in a module-level cache, loaded on the first render in
    a process and kept for the next ones. ``SdxlKeyframes.release()`` frees it. Only one SDXL
    pipeline is held at a time: asking for another model, device or dtype
    releases the previous one first.

    ``SdxlKeyframes.from_env()`` builds the resource from ``IMAGES_SDXL_*``
    variables (``None`` when ``IMAGES_SDXL_MODEL`` is unset; each field names its
    variable, see ``resources/settings.py``):

    ============================  ==================================================
    IMAGES_SDXL_MODEL             local diffusers folder or Hugging Face repo id
    IMAGES_SDXL_DEVICE            auto (default), cuda, cuda:N, cpu
    IMAGES_SDXL_DTYPE             auto (default: float16 on CUDA, float32 on CPU),
                                  float16, bfloat16, float32
    IMAGES_SDXL_STEPS             denoising steps (30)
    IMAGES_SDXL_GUIDANCE          classifier-free guidance scale (7.5)
    IMAGES_SDXL_SCHEDULER         "" = the model's own, or one of ``SCHEDULERS``
    IMAGES_SDXL_NEGATIVE_PROMPT   negative prompt ("")
    IMAGES_SDXL_CPU_OFFLOAD       1 = move each sub-model to the GPU only while it runs
    IMAGES_SDXL_VAE_TILING        1 = decode in tiles (less memory for big images)
    IMAGES_SDXL_MAX_PIXELS        generation area cap (1024*1024, SDXL's training size)
    IMAGES_SDXL_IP_ADAPTER        IP-Adapter weights (folder or repo id, e.g. h94/IP-Adapter):
                                  keyframes follow their characters' portraits
    IMAGES_SDXL_IP_ADAPTER_SUBFOLDER  its subfolder (sdxl_models)
    IMAGES_SDXL_IP_ADAPTER_WEIGHT     its weight file (ip-adapter_sdxl.safetensors)
    IMAGES_SDXL_IMAGE_ENCODER     the CLIP image encoder's folder, inside the subfolder or a
                                  path under the adapter's root (image_encoder)
    IMAGES_SDXL_IP_ADAPTER_SCALE  how strongly portraits condition a keyframe (0.6)
    ============================  ==================================================

    The model is resolved by ``from_pretrained``: an existing folder is read as
    is; anything else is a repo id looked up in the standard Hugging Face cache
    (so ``HF_HOME`` and ``HF_HUB_OFFLINE=1`` are honoured). Without
    ``HF_HUB_OFFLINE``, a repo missing from the cache is downloaded on first use
    (about 7 GB): fetch weights beforehand and set ``HF_HUB_OFFLINE=1`` for
    predictable runs.

Generation
    Images are generated at the requested size rounded to multiples of 8 and
    scaled down to at most ``max_pixels`` (SDXL degrades far from its ~1 MP
    training size), then resized to exactly ``width`` x ``height``. The noise
    comes from a CPU ``torch.Generator`` seeded per call, so the same model,
    settings and seed give the same picture on every call and process (and
    closely matching pictures across devices).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from PIL import Image
from pydantic import field_validator

from sparkle_motion_dagster.film.levers import LEVERS
from sparkle_motion_dagster.resources import memory_plan, model_levers, model_support
from sparkle_motion_dagster.resources.keyframes import CharacterReference, KeyframeRenderer, ip_adapter
from sparkle_motion_dagster.resources.keyframes.ip_adapter import IpAdapterSettings
from sparkle_motion_dagster.resources.model_levers import LoraSetting
from sparkle_motion_dagster.resources.model_support import model_digest, package_version
from sparkle_motion_dagster.resources.settings import DEVICE, DEVICE_CHOICES, NOT_BLANK, EnvConfigured, env_field

# Names accepted by ``scheduler`` -> (diffusers class name, extra config).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler_trailing": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),  # SDXL-Lightning's
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
Dtype = Literal["auto", "float16", "bfloat16", "float32"]
DTYPES = get_args(Dtype)
# Components a text-to-image SDXL folder must declare in model_index.json.
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
RUN_SETTINGS = ("steps", "guidance", "scheduler", "negative_prompt", "loras", "compile")  # what a run may change
# The named presets (README "Speed levers"): diffusers' SDXL defaults, and a 4-step distilled LoRA
# (SDXL-Lightning: CFG 0, Euler with trailing timesteps) whose file is IMAGES_SDXL_FAST_LORA.
QUALITY: dict[str, Any] = {"steps": 50, "guidance": 5.0}
FAST: dict[str, Any] = {"steps": 4, "guidance": 0.0, "scheduler": "euler_trailing"}


class SdxlKeyframes(EnvConfigured, KeyframeRenderer):
    """Keyframes from an SDXL text-to-image model.

    Plain configuration; the pipeline is loaded once per process on first use
    (see the module docstring) and freed by :meth:`release`.
    """

    backend: ClassVar[str] = "sdxl"
    # SDXL's UNet takes no diffusers step cache, and its attention processors ignore set_attention_backend.
    levers: ClassVar[tuple[str, ...]] = ("steps", "guidance", "scheduler", "loras", "compile")

    model: str = env_field("IMAGES_SDXL_MODEL", pattern=NOT_BLANK, expected="must name a folder or a repo id")
    device: str = env_field("IMAGES_SDXL_DEVICE", "auto", pattern=DEVICE, expected=DEVICE_CHOICES)
    dtype: Dtype = env_field("IMAGES_SDXL_DTYPE", "auto")
    steps: int = env_field("IMAGES_SDXL_STEPS", 30, ge=1)
    guidance: float = env_field("IMAGES_SDXL_GUIDANCE", 7.5, ge=0)
    scheduler: str = env_field(
        "IMAGES_SDXL_SCHEDULER", "", pattern="^(" + "|".join(map(re.escape, SCHEDULERS)) + ")?$",
        expected=f"expected '' (the model's own) or one of {', '.join(SCHEDULERS)}")
    negative_prompt: str = env_field("IMAGES_SDXL_NEGATIVE_PROMPT", "", verbatim=True)
    cpu_offload: bool = env_field("IMAGES_SDXL_CPU_OFFLOAD", False)
    vae_tiling: bool = env_field("IMAGES_SDXL_VAE_TILING", False)
    max_pixels: int = env_field("IMAGES_SDXL_MAX_PIXELS", 1024 * 1024, ge=64 * 64)
    loras: list[LoraSetting] = env_field("IMAGES_SDXL_LORAS", [])
    compile: Literal["off", "regional"] = env_field("IMAGES_SDXL_COMPILE", "off")
    fast_lora: str = env_field("IMAGES_SDXL_FAST_LORA", "")

    ip_adapter: str = env_field("IMAGES_SDXL_IP_ADAPTER", "")
    ip_adapter_subfolder: str = env_field("IMAGES_SDXL_IP_ADAPTER_SUBFOLDER", "sdxl_models")
    ip_adapter_weight: str = env_field("IMAGES_SDXL_IP_ADAPTER_WEIGHT", "ip-adapter_sdxl.safetensors",
                                       pattern=NOT_BLANK, expected="must name the adapter's weight file")
    image_encoder: str = env_field("IMAGES_SDXL_IMAGE_ENCODER", "image_encoder", pattern=NOT_BLANK,
                                   expected="must name the image encoder's folder")
    ip_adapter_scale: float = env_field("IMAGES_SDXL_IP_ADAPTER_SCALE", 0.6, ge=0, le=2)

    _loras_from_text = field_validator("loras", mode="before")(model_levers.parse_loras)

    def ip_adapter_settings(self) -> IpAdapterSettings | None:
        """The IP-Adapter keyframes with characters are conditioned through, or None when unset."""
        if not self.ip_adapter.strip():
            return None
        return IpAdapterSettings(self.ip_adapter.strip(), self.ip_adapter_subfolder, self.ip_adapter_weight,
                                 self.image_encoder, self.ip_adapter_scale)

    def reference_settings(self) -> dict[str, Any]:
        settings = self.ip_adapter_settings()
        return {} if settings is None else settings.describe()

    def with_settings(self, settings: Mapping[str, Any]) -> "SdxlKeyframes":
        """The same model with a run's preset, steps, guidance, scheduler, negative prompt, LoRAs or
        compile (checked; a lever SDXL cannot take is refused naming its render_profile.images field)."""
        refused = [name for name in LEVERS if settings.get(name) is not None and name not in self.levers]
        if refused:
            raise ValueError(f"render_profile.images.{refused[0]}: the SDXL keyframe model cannot take "
                             f"{', '.join(refused)} (it takes {', '.join(self.levers)}).")
        if settings.get("preset") == "fast" and not self.fast_lora:
            raise ValueError(f"render_profile.images.preset = 'fast' needs a step-distilled LoRA file (e.g. "
                             f"SDXL-Lightning 4-step): set {self.variable('fast_lora')}.")
        presets = {"quality": QUALITY, "fast": {**FAST, "loras": [{"path": self.fast_lora, "scale": 1.0}]}}
        return model_levers.with_profile(self, settings, section="images", presets=presets, run_fields=RUN_SETTINGS)

    def release(self) -> None:
        """Free this process's SDXL pipeline (and the CUDA cache); the next render loads it again."""
        _MODEL.release()

    def required_packages(self) -> tuple[str, ...]:
        return ("torch", "diffusers", "transformers", *(("accelerate",) if self.cpu_offload else ()))

    def memory_plan(self, runtime: Mapping[str, Any], *, width: int, height: int,
                    card: memory_plan.Card) -> memory_plan.MemoryPlan:
        """Where SDXL's parts go on ``card`` for a ``width`` x ``height`` keyframe (generated at
        :func:`generation_size`), honouring this adapter's offload and tiling settings."""
        gen_w, gen_h = generation_size(width, height, self.max_pixels)
        dtype = runtime["dtype"] if runtime["device"] != "cpu" else "float16"  # SDXL's dtype on any GPU
        return memory_plan.sdxl_plan(runtime["source"], width=gen_w, height=gen_h, card=card, dtype=dtype,
                                     offload=True if self.cpu_offload else None,
                                     tiling=True if self.vae_tiling else None,
                                     chosen_by="auto" if not (self.cpu_offload or self.vae_tiling) else "settings")

    def runtime(self) -> dict[str, Any]:
        """Resolve the model source, device and dtype without loading weights; raise clear errors.

        Imports torch (about 1.6 s) to see whether CUDA is available.
        """
        self.validate_settings()
        model_support.require_packages("SDXL keyframe", *self.required_packages())
        source = resolve_model_source(self.model)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        levers = model_levers.resolve(self, device=device, denoisers=("unet",),
                                      where=lambda name: f"render_profile.images.{name} / {self.where(name)}")
        if self.cpu_offload and device == "cpu":
            raise RuntimeError(f"{self.where('cpu_offload')} is set but the device is cpu: CPU offload moves "
                               f"sub-models onto a CUDA device while they run. Unset it or use "
                               f"{self.variable('device')}=cuda.")
        return {"source": source, "device": device, "dtype": dtype, "levers": levers,
                "loras": levers.record()["loras"]}

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the picture for the same prompt, seed and size."""
        runtime = self.runtime()
        return {
            "backend": self.backend,
            **self.model_dump(),
            "resolved": {"device": runtime["device"], "dtype": runtime["dtype"],
                         "model_files": model_digest(runtime["source"]), "diffusers": package_version("diffusers"),
                         "levers": runtime["levers"].record()},
        }

    # ------------------------------------------------------------------ rendering

    def render(self, prompt: str, *, seed: int, width: int, height: int, label: str = "",
               references: tuple[CharacterReference, ...] = ()) -> Image.Image:
        """One keyframe of exactly ``width`` x ``height`` for ``prompt`` and ``seed`` (``label`` is unused),
        conditioned on the portraits in ``references`` through the IP-Adapter (see ``ip_adapter.py``)."""
        runtime = self.runtime()
        import torch

        gen_width, gen_height = generation_size(width, height, self.max_pixels)
        with _MODEL.lock:
            def attempt(plan: memory_plan.MemoryPlan | None):
                offload = self.cpu_offload or (plan is not None and plan.placement == "model-offload")
                pipe, base_scheduler = _pipeline(runtime["source"], runtime["device"], runtime["dtype"], offload,
                                                 runtime["levers"].load_key())
                model_levers.prepare(pipe, runtime["levers"])
                pipe.scheduler = make_scheduler(self.scheduler, base_scheduler)
                memory_plan.set_vae_tiling(pipe.vae, self.vae_tiling or (plan is not None and plan.vae_tiling))
                generator = torch.Generator(device="cpu").manual_seed(int(seed))
                conditioning = ip_adapter.condition(pipe, _MODEL.value.state, self.ip_adapter_settings(), references)
                return pipe(
                    **conditioning,
                    prompt=prompt,
                    negative_prompt=self.negative_prompt or None,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance,
                    width=gen_width,
                    height=gen_height,
                    generator=generator,
                )

            plan = None
            if runtime["device"].startswith("cuda"):
                card = memory_plan.current_card(held_bytes=memory_plan.held_by_torch() if _MODEL.value else 0)
                plan = memory_plan.plan_for_resource(self, width=width, height=height, card=card)
            if plan is None:
                result = attempt(None)
            else:
                result, plan = memory_plan.render_stepping_down(plan, attempt, release=_MODEL.release,
                                                                setting=self.where("cpu_offload"))
        image = result.images[0].convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        return image


# ---------------------------------------------------------------------- helpers


def generation_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size SDXL generates for a ``width`` x ``height`` keyframe: same aspect, multiples of 8,
    scaled down (never up) to at most about ``max_pixels``."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)


def make_scheduler(name: str, base_config: Mapping[str, Any]):
    """The scheduler called ``name`` (see ``SCHEDULERS``) built from the model's own scheduler config."""
    import diffusers

    if not name:
        class_name, extra = base_config["_class_name"], {}
    else:
        class_name, extra = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(dict(base_config), **extra)


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; cuda/cuda:N checked against what torch sees."""
    return model_support.resolve_device(device, where=SdxlKeyframes.where("device"))


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> float16 on CUDA (SDXL's VAE upcasts itself where fp16 would overflow), float32 on CPU."""
    if dtype == "auto":
        return "float32" if device == "cpu" else "float16"
    if dtype == "float16" and device == "cpu":
        raise ValueError(f"{SdxlKeyframes.where('dtype')} = float16 is not supported on cpu: use float32 (or bfloat16).")
    return dtype


def resolve_model_source(model: str) -> str:
    """An existing folder (checked to be an SDXL text-to-image diffusers folder) as an absolute path,
    else ``model`` unchanged as a Hugging Face repo id. Raises ValueError naming ``IMAGES_SDXL_MODEL``."""
    where = f"{SdxlKeyframes.where('model')} = {model!r}"
    path = model_support.local_model_folder(model, where=where, expected="a diffusers pipeline folder")
    if path is None:
        return model.strip()
    index = model_support.diffusers_index(path, where=where, example="stabilityai/stable-diffusion-xl-base-1.0")
    missing = model_support.missing_components(index, REQUIRED_COMPONENTS)
    if missing:
        raise ValueError(f"{where}: {index.get('_class_name', 'the pipeline')} in {str(path)!r} is not an SDXL "
                         f"text-to-image pipeline (missing components: {', '.join(missing)}).")
    model_support.check_component_folders(path, REQUIRED_COMPONENTS, where=where)
    return str(path.resolve())


# ---------------------------------------------------------------------- the per-process pipeline


@dataclass
class _Loaded:
    pipe: Any
    scheduler_config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    """What was loaded into the pipeline since (the IP-Adapter)."""


_MODEL: model_support.ProcessModel[_Loaded] = model_support.ProcessModel()


def _pipeline(source: str, device: str, dtype: str, cpu_offload: bool, levers: tuple = ()) -> tuple[Any, dict[str, Any]]:
    """The loaded pipeline for these settings and its original scheduler config (loaded at most once)."""

    def load() -> _Loaded:
        import torch
        from diffusers import StableDiffusionXLPipeline

        try:
            pipe = StableDiffusionXLPipeline.from_pretrained(source, dtype=getattr(torch, dtype))
        except Exception as error:  # noqa: BLE001 - re-raised with the setting to fix
            raise RuntimeError(
                f"{SdxlKeyframes.where('model')} = {source!r}: could not load an SDXL pipeline: {error}. "
                f"{model_support.HF_CACHE_HINT}"
            ) from error
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return _Loaded(pipe, dict(pipe.scheduler.config))

    loaded = _MODEL.get((source, device, dtype, cpu_offload, *model_levers.key_part(levers)), load)
    return loaded.pipe, loaded.scheduler_config


# ``loaded_key()``: ``(source, device, dtype, cpu_offload)`` of the pipeline held by this process, if any.
loaded_key = _MODEL.key
__getattr__ = _MODEL.module_getattr(__name__)  # ``_LOADED``: the held pipeline and scheduler config
