"""A run's speed levers on a loaded diffusers pipeline: LoRAs, attention backend, regional compile,
a step cache and the scheduler's shift; and what they are recorded as.

The names and shapes are ``film/levers.py``'s; this module checks them against
what is installed and on disk, applies them, and describes them for
fingerprints, provenance and stage metadata. The adapters (``wan.py``,
``sdxl.py``) call :func:`prepare` once per generation, from one place, after
they have the loaded pipeline:

* the levers that change the loaded model (LoRA files, attention backend,
  compile, cache) are part of the pipeline's cache key (:meth:`Levers.load_key`),
  so changing one loads the pipeline again and they are applied once, right after
  loading;
* LoRA scales and the shift are set before every generation, so changing them
  costs no reload.

torch and diffusers are imported inside functions only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import dagster as dg

from sparkle_motion_dagster.film.levers import CACHES, attention_backend_problem, cache_setting

# Attention backend -> the package it needs (native and flex are torch's own).
BACKEND_PACKAGES = {"flash": "flash_attn", "flash_varlen": "flash_attn", "sage": "sageattention",
                    "sage_varlen": "sageattention", "xformers": "xformers"}
# Backends that only run on a CUDA device.
CUDA_BACKENDS = frozenset(BACKEND_PACKAGES)
ADAPTER_PREFIX = "lora_"


class LoraSetting(dg.Config):
    """One LoRA file and its scale."""

    path: str
    scale: float = 1.0
    transformer: str | None = None  # Wan 2.2 A14B: "transformer_2" loads into the low-noise expert


def parse_loras(value: Any) -> Any:
    """A resource's ``loras`` from the environment or a profile: JSON text (``[{"path": ..., "scale": ...}]``),
    one path, or a list of settings; blank is none."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"not valid JSON: {error}") from None
        return [{"path": text, "scale": 1.0}]
    return value


def check_cache(value: Any) -> str:
    """A resource's ``cache`` setting normalised (``name`` or ``name:threshold``); ValueError says why not."""
    return cache_setting(value)


def check_attention(value: str) -> str:
    """A resource's ``attention_backend`` checked against the names diffusers offers."""
    problem = attention_backend_problem(value)
    if problem:
        raise ValueError(problem)
    return value


@dataclass(frozen=True)
class Levers:
    """The levers of one render, resolved: LoRA files with their sha256, and the rest as set."""

    loras: tuple[dict[str, Any], ...] = ()
    attention_backend: str = ""
    compile: str = "off"
    cache: str = ""
    shift: float | None = None
    denoisers: tuple[str, ...] = field(default=("transformer",), compare=False)

    def load_key(self) -> tuple:
        """What changes the loaded model (part of the pipeline's cache key)."""
        return (tuple((lora["path"], lora["sha256"], lora.get("transformer")) for lora in self.loras),
                self.attention_backend, self.compile, self.cache)

    def record(self) -> dict[str, Any]:
        """How provenance and metadata show them."""
        return {"loras": [dict(lora) for lora in self.loras], "attention_backend": self.attention_backend or "default",
                "compile": self.compile, "cache": self.cache or "off",
                **({"shift": self.shift} if self.shift is not None else {})}


def key_part(load_key: tuple) -> tuple:
    """What the levers add to a pipeline's cache key: nothing when none are set."""
    return (load_key,) if load_key and load_key != Levers().load_key() else ()


def resolve(resource: Any, *, device: str, where: Callable[[str], str],
            denoisers: Sequence[str] = ("transformer",), two_transformers: bool = False) -> Levers:
    """The levers of ``resource`` (fields ``loras``, ``attention_backend``, ``compile``, ``cache`` and, where
    it has one, ``shift``) checked against the disk and the installed packages, without loading a model.

    Errors name the setting: ``where(field)`` (the profile field and the variable that set it)."""
    from sparkle_motion_dagster.insight.provenance import file_digest

    loras = []
    for index, lora in enumerate(getattr(resource, "loras", ()) or ()):
        where_ = f"{where('loras')}[{index}].path = {lora.path!r}"
        path = Path(lora.path).expanduser()
        if not path.is_file():
            raise ValueError(f"{where_}: no such file (a LoRA is one .safetensors file).")
        into = lora.transformer or "transformer"
        if into not in ("transformer", "transformer_2") or (into == "transformer_2" and not two_transformers):
            raise ValueError(f"{where('loras')}[{index}].transformer = {lora.transformer!r}: this model has "
                             + ("transformer and transformer_2" if two_transformers else "one transformer"))
        loras.append({"path": str(path.resolve()), "scale": float(lora.scale), "sha256": file_digest(path),
                      **({"transformer": into} if into != "transformer" else {})})
    backend = getattr(resource, "attention_backend", "") or ""
    if backend:
        where_ = f"{where('attention_backend')} = {backend!r}"
        package = BACKEND_PACKAGES.get(backend)
        if package and find_spec(package) is None:
            raise RuntimeError(f"{where_}: the {backend} attention backend needs the {package} package, which is not "
                               "installed here. Install it or choose native.")
        if backend in CUDA_BACKENDS and not device.startswith("cuda"):
            raise RuntimeError(f"{where_}: the {backend} attention backend runs on CUDA only, and this model runs "
                               f"on {device}. Use native.")
    compile_mode = getattr(resource, "compile", "off") or "off"
    return Levers(loras=tuple(loras), attention_backend=backend, compile=compile_mode,
                  cache=getattr(resource, "cache", "") or "", shift=getattr(resource, "shift", None),
                  denoisers=tuple(denoisers))


def prepare(pipe: Any, levers: Levers) -> None:
    """Make ``pipe`` generate with ``levers``: the model-changing ones once (the first time this pipeline
    is seen), the LoRA scales and the shift every time."""
    state = getattr(pipe, "_sparkle_levers", None)
    if state is None:
        state = _apply_once(pipe, levers)
        object.__setattr__(pipe, "_sparkle_levers", state)
    if state["adapters"]:
        pipe.set_adapters(state["adapters"], adapter_weights=[lora["scale"] for lora in levers.loras])
    if "flow_shift" in state["scheduler_config"]:
        shift = levers.shift if levers.shift is not None else state["scheduler_config"]["flow_shift"]
        if pipe.scheduler.config.get("flow_shift") != shift:
            pipe.scheduler = type(pipe.scheduler).from_config(state["scheduler_config"], flow_shift=shift)
    for denoiser in _denoisers(pipe, levers):
        if levers.cache and hasattr(denoiser, "_reset_stateful_cache"):
            denoiser._reset_stateful_cache()  # a new video: nothing cached from the last one applies


def _denoisers(pipe: Any, levers: Levers) -> list[Any]:
    return [model for name in levers.denoisers if (model := getattr(pipe, name, None)) is not None]


def _apply_once(pipe: Any, levers: Levers) -> dict[str, Any]:
    adapters = []
    for index, lora in enumerate(levers.loras):
        name = f"{ADAPTER_PREFIX}{index}"
        into_second = lora.get("transformer") == "transformer_2"
        pipe.load_lora_weights(lora["path"], adapter_name=name, **({"load_into_transformer_2": True} if into_second
                                                                    else {}))
        adapters.append(name)
    for denoiser in _denoisers(pipe, levers):
        if levers.attention_backend:
            denoiser.set_attention_backend(levers.attention_backend)
        if levers.cache:
            denoiser.enable_cache(cache_config(levers.cache))
        if levers.compile == "regional":
            denoiser.compile_repeated_blocks(fullgraph=True)
    return {"adapters": adapters, "scheduler_config": dict(pipe.scheduler.config)}


def cache_config(setting: str) -> Any:
    """The diffusers cache config a ``name`` or ``name:threshold`` setting stands for."""
    import diffusers.hooks

    name, _, threshold = setting.partition(":")
    class_name, knob, default, kind = CACHES[name]
    return getattr(diffusers.hooks, class_name)(**{knob: kind(float(threshold)) if threshold else default})


def with_profile(resource: Any, profile: Mapping[str, Any], *, section: str, run_fields: Sequence[str],
                 presets: Mapping[str, Mapping[str, Any]]) -> Any:
    """``resource`` with a run's ``render_profile.<section>`` applied: the named ``preset`` first, then
    every ``run_fields`` key the profile sets. Errors name the profile field."""
    chosen: dict[str, Any] = {}
    preset = profile.get("preset")
    if preset is not None:
        if preset not in presets:
            raise ValueError(f"render_profile.{section}.preset = {preset!r}: expected one of {', '.join(presets)}")
        chosen.update(presets[preset])
    chosen.update({key: profile[key] for key in run_fields if profile.get(key) is not None})
    if not chosen:
        return resource
    try:
        return type(resource)(**{**resource.model_dump(), **chosen})
    except ValueError as error:
        raise ValueError(f"render_profile.{section}: {error}") from None
