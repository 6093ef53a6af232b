"""Keyframes from Stable Diffusion XL (diffusers ``StableDiffusionXLPipeline``).

Configuration
    ``SdxlKeyframes`` is plain configuration (it pickles across processes); the
    pipeline itself lives in a module-level cache, loaded on the first render in
    a process and kept for the next ones. ``release()`` frees it. Only one SDXL
    pipeline is held at a time: asking for another model, device or dtype
    releases the previous one first.

    ``SdxlKeyframes.from_env()`` builds the resource from ``IMAGES_SDXL_*``
    variables (``None`` when ``IMAGES_SDXL_MODEL`` is unset):

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

import gc
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .keyframes import KeyframeRenderer

ENV_PREFIX = "IMAGES_SDXL_"
MODEL_ENV = "IMAGES_SDXL_MODEL"
DEVICE_ENV = "IMAGES_SDXL_DEVICE"

# Names accepted by ``scheduler`` -> (diffusers class name, extra config).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
DTYPES = ("auto", "float16", "bfloat16", "float32")
# Components a text-to-image SDXL folder must declare in model_index.json.
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")


def _where(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()} (SdxlKeyframes.{field})"


class SdxlKeyframes(KeyframeRenderer):
    """Keyframes from an SDXL text-to-image model.

    Plain configuration; the pipeline is loaded once per process on first use
    (see the module docstring) and freed with :func:`release`.
    """

    model: str
    device: str = "auto"
    dtype: str = "auto"
    steps: int = 30
    guidance: float = 7.5
    scheduler: str = ""
    negative_prompt: str = ""
    cpu_offload: bool = False
    vae_tiling: bool = False
    max_pixels: int = 1024 * 1024

    @property
    def backend(self) -> str:
        return "sdxl"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SdxlKeyframes | None":
        """The resource described by ``IMAGES_SDXL_*`` variables, or None when ``IMAGES_SDXL_MODEL`` is unset."""
        env = os.environ if environ is None else environ
        model = env.get(MODEL_ENV, "").strip()
        if not model:
            return None
        kwargs: dict[str, Any] = {"model": model}
        readers = {"device": str, "dtype": str, "steps": int, "guidance": float, "scheduler": str,
                   "negative_prompt": str, "cpu_offload": _parse_bool, "vae_tiling": _parse_bool, "max_pixels": int}
        for field, parse in readers.items():
            name = f"{ENV_PREFIX}{field.upper()}"
            raw = env.get(name)
            if raw is None:
                continue
            if field != "negative_prompt":
                raw = raw.strip()
                if not raw:
                    continue
            try:
                kwargs[field] = parse(raw)
            except ValueError as error:
                raise ValueError(f"{name}={raw!r}: {error}") from None
        resource = cls(**kwargs)
        resource.validate_settings()
        return resource

    def with_settings(self, settings: Mapping[str, Any]) -> "SdxlKeyframes":
        """The same model with a run's steps, guidance, scheduler or negative prompt."""
        chosen = {k: v for k, v in settings.items()
                  if k in ("steps", "guidance", "scheduler", "negative_prompt") and v is not None}
        if not chosen:
            return self
        updated = type(self)(**{**self.model_dump(), **chosen})
        updated.validate_settings()
        return updated

    # ------------------------------------------------------------------ checks

    def validate_settings(self) -> None:
        """Check the plain settings (no torch import, no file access); raise ValueError naming the field."""
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device.strip().lower()):
            raise ValueError(f"{_where('device')} = {self.device!r}: expected auto, cuda, cuda:N or cpu")
        if self.dtype not in DTYPES:
            raise ValueError(f"{_where('dtype')} = {self.dtype!r}: expected one of {', '.join(DTYPES)}")
        if self.steps < 1:
            raise ValueError(f"{_where('steps')} = {self.steps}: must be at least 1")
        if self.guidance < 0:
            raise ValueError(f"{_where('guidance')} = {self.guidance}: must not be negative")
        if self.scheduler and self.scheduler not in SCHEDULERS:
            raise ValueError(f"{_where('scheduler')} = {self.scheduler!r}: expected '' (the model's own) or one of "
                             f"{', '.join(SCHEDULERS)}")
        if self.max_pixels < 64 * 64:
            raise ValueError(f"{_where('max_pixels')} = {self.max_pixels}: too small (at least 4096)")

    def runtime(self) -> dict[str, Any]:
        """Resolve the model source, device and dtype without loading weights; raise clear errors.

        Imports torch (about 1.6 s) to see whether CUDA is available.
        """
        self.validate_settings()
        _require_packages("torch", "diffusers", "transformers", *(("accelerate",) if self.cpu_offload else ()))
        source = resolve_model_source(self.model)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        if self.cpu_offload and device == "cpu":
            raise RuntimeError(f"{_where('cpu_offload')} is set but the device is cpu: CPU offload moves sub-models "
                               f"onto a CUDA device while they run. Unset it or use {DEVICE_ENV}=cuda.")
        return {"source": source, "device": device, "dtype": dtype}

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the picture for the same prompt, seed and size."""
        runtime = self.runtime()
        return {
            "backend": self.backend,
            **self.model_dump(),
            "resolved": {"device": runtime["device"], "dtype": runtime["dtype"],
                         "model_files": model_digest(runtime["source"]), "diffusers": _version("diffusers")},
        }

    # ------------------------------------------------------------------ rendering

    def render(self, prompt: str, *, seed: int, width: int, height: int, label: str = "") -> Image.Image:
        """One keyframe of exactly ``width`` x ``height`` for ``prompt`` and ``seed`` (``label`` is unused)."""
        runtime = self.runtime()
        import torch

        gen_width, gen_height = generation_size(width, height, self.max_pixels)
        with _LOCK:
            pipe, base_scheduler = _pipeline(runtime["source"], runtime["device"], runtime["dtype"], self.cpu_offload)
            pipe.scheduler = make_scheduler(self.scheduler, base_scheduler)
            if self.vae_tiling:
                pipe.vae.enable_tiling()
            else:
                pipe.vae.disable_tiling()
            generator = torch.Generator(device="cpu").manual_seed(int(seed))
            result = pipe(
                prompt=prompt,
                negative_prompt=self.negative_prompt or None,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                width=gen_width,
                height=gen_height,
                generator=generator,
            )
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
    import torch

    value = device.strip().lower()
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return "cpu"
    if re.fullmatch(r"cuda(:\d+)?", value):
        if not torch.cuda.is_available():
            build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise RuntimeError(f"{_where('device')} = {device!r} but CUDA is not available in this process "
                               f"(torch {torch.__version__}, {build}). Use cpu or auto, or fix the GPU setup.")
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"{_where('device')} = {device!r} but only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible.")
        return value
    raise ValueError(f"{_where('device')} = {device!r}: expected auto, cuda, cuda:N or cpu")


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> float16 on CUDA (SDXL's VAE upcasts itself where fp16 would overflow), float32 on CPU."""
    if dtype == "auto":
        return "float32" if device == "cpu" else "float16"
    if dtype == "float16" and device == "cpu":
        raise ValueError(f"{_where('dtype')} = float16 is not supported on cpu: use float32 (or bfloat16).")
    return dtype


def resolve_model_source(model: str) -> str:
    """An existing folder (checked to be an SDXL text-to-image diffusers folder) as an absolute path,
    else ``model`` unchanged as a Hugging Face repo id. Raises ValueError naming ``IMAGES_SDXL_MODEL``."""
    where = f"{MODEL_ENV} (SdxlKeyframes.model) = {model!r}"
    value = model.strip()
    if not value:
        raise ValueError(f"{where}: empty")
    path = Path(value).expanduser()
    if not path.exists():
        looks_like_repo_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) is not None
        if looks_like_repo_id:
            return value
        raise ValueError(f"{where}: the folder {str(path)!r} does not exist.")
    if not path.is_dir():
        raise ValueError(f"{where}: {str(path)!r} is a file; expected a diffusers pipeline folder.")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"{where}: {str(path)!r} is not a diffusers pipeline folder (no model_index.json). Use a "
                         "folder written by save_pretrained, e.g. a download of stabilityai/stable-diffusion-xl-base-1.0.")
    try:
        index = json.loads(index_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{where}: cannot read {index_file}: {error}") from None
    missing = [name for name in REQUIRED_COMPONENTS if not (isinstance(index.get(name), list) and index[name][0])]
    if missing:
        raise ValueError(f"{where}: {index.get('_class_name', 'the pipeline')} in {str(path)!r} is not an SDXL "
                         f"text-to-image pipeline (missing components: {', '.join(missing)}).")
    for name in REQUIRED_COMPONENTS:
        if not (path / name).is_dir():
            raise ValueError(f"{where}: the component folder {name!r} is missing from {str(path)!r}.")
    return str(path.resolve())


def model_digest(source: str) -> str:
    """A short identity for the weights: file names, sizes and config contents of a local folder,
    or the cached snapshot's commit for a repo id (the id alone when it is not cached)."""
    path = Path(source)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts):
            relative = file.relative_to(path).as_posix()
            digest.update(f"{relative}\x00{file.stat().st_size}\x00".encode())
            if file.suffix in (".json", ".txt") and file.stat().st_size < 1_000_000:
                digest.update(file.read_bytes())
        return "folder:" + digest.hexdigest()[:16]
    try:
        from huggingface_hub import snapshot_download

        return "snapshot:" + Path(snapshot_download(source, local_files_only=True)).name
    except Exception:  # noqa: BLE001 - not cached: loading will report it properly
        return "repo:" + source


def _require_packages(*names: str) -> None:
    """Fail early, with the fix, when the optional model dependencies are not installed."""
    from importlib.util import find_spec

    missing = [name for name in names if find_spec(name) is None]
    if missing:
        raise RuntimeError(f"the SDXL keyframe backend needs {', '.join(missing)}: install the models extra "
                           "(pip install torch==2.13.0 first, then pip install 'sparkle-motion-dagster[models]').")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "missing"


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


# ---------------------------------------------------------------------- the per-process pipeline


@dataclass
class _Loaded:
    key: tuple
    pipe: Any
    scheduler_config: dict[str, Any]


_LOCK = threading.RLock()
_LOADED: _Loaded | None = None


def _pipeline(source: str, device: str, dtype: str, cpu_offload: bool) -> tuple[Any, dict[str, Any]]:
    """The loaded pipeline for these settings and its original scheduler config (loaded at most once)."""
    global _LOADED
    key = (source, device, dtype, cpu_offload)
    with _LOCK:
        if _LOADED is not None and _LOADED.key == key:
            return _LOADED.pipe, _LOADED.scheduler_config
        release()
        import torch
        from diffusers import StableDiffusionXLPipeline

        try:
            pipe = StableDiffusionXLPipeline.from_pretrained(source, dtype=getattr(torch, dtype))
        except Exception as error:  # noqa: BLE001 - re-raised with the setting to fix
            raise RuntimeError(
                f"{MODEL_ENV} (SdxlKeyframes.model) = {source!r}: could not load an SDXL pipeline: {error}. "
                "A repo id must be in the Hugging Face cache (or downloadable, when HF_HUB_OFFLINE is unset)."
            ) from error
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        _LOADED = _Loaded(key, pipe, dict(pipe.scheduler.config))
        return pipe, _LOADED.scheduler_config


def loaded_key() -> tuple | None:
    """``(source, device, dtype, cpu_offload)`` of the pipeline held by this process, if any."""
    return None if _LOADED is None else _LOADED.key


def release() -> None:
    """Free the process's SDXL pipeline (and the CUDA cache). Safe to call at any time."""
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            return
        _LOADED = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
