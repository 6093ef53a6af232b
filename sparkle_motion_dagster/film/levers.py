"""The speed levers a plan may set on its diffusion models, and the named presets.

``render_profile.video`` and ``render_profile.images`` take, next to the model's
own settings: ``steps``, ``guidance``, ``shift`` (Wan's flow-matching shift),
``scheduler`` (SDXL), ``loras`` (``[{"path", "scale"}]``), ``attention_backend``
(a diffusers attention backend name), ``compile`` (``regional`` or ``off``) and
``cache`` (``{"name": "first_block", "threshold": 0.05}``). ``preset`` names a
set of them (``quality``, ``fast``); levers written next to a preset win.

This module knows the names and the shapes; applying them to a loaded pipeline
is ``resources/model_levers.py``'s. Each renderer declares the levers it takes
(``levers``); a plan that sets a lever its renderer cannot take is refused at
intake naming the field (:func:`refused_levers`). Dagster- and torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Every lever a profile may set (in the order they are reported).
LEVERS = ("steps", "guidance", "shift", "scheduler", "loras", "attention_backend", "compile", "cache")
# diffusers 0.42 ``AttentionBackendName`` values that use an installed package (the ``*_hub`` ones
# download kernels at run time and are not offered; the ``_``-prefixed ones are diffusers-internal).
ATTENTION_BACKENDS = ("native", "flex", "flash", "flash_varlen", "sage", "sage_varlen", "xformers")
COMPILE_MODES = ("off", "regional")
# Cache name -> (diffusers config class, the knob ``threshold`` sets, its default, its type).
CACHES: dict[str, tuple[str, str, float, type]] = {
    "first_block": ("FirstBlockCacheConfig", "threshold", 0.05, float),
    "taylorseer": ("TaylorSeerCacheConfig", "cache_interval", 5, int),
}
PRESET_NAMES = ("quality", "fast")

# What each renderer backend takes (filled in by the renderers' classes as they are defined).
_ACCEPTED: dict[str, frozenset[str]] = {}


def register(backend: str, levers: tuple[str, ...]) -> None:
    """Declare the levers the renderer ``backend`` takes."""
    if backend:
        _ACCEPTED[backend] = frozenset(levers)


def accepted(backend: str) -> frozenset[str] | None:
    """The levers ``backend`` takes, or None when it declared nothing."""
    return _ACCEPTED.get(backend)


def set_levers(profile: Mapping[str, Any]) -> list[str]:
    """The levers (and ``preset``) a profile sets, in report order."""
    return [name for name in ("preset", *LEVERS) if profile.get(name) is not None]


def refused_levers(profile: Mapping[str, Any], backend: str) -> list[str]:
    """The levers ``profile`` sets that ``backend`` cannot take (a preset needs steps and guidance)."""
    takes = accepted(backend)
    if takes is None:
        return []
    refused = [name for name in set_levers(profile) if name != "preset" and name not in takes]
    if profile.get("preset") is not None and not {"steps", "guidance"} <= takes:
        refused.insert(0, "preset")
    return refused


def cache_setting(value: Any) -> str:
    """A cache lever as the text adapters keep: ``""`` (none), ``name`` or ``name:threshold``.

    Accepts that text or ``{"name": ..., "threshold": ...}``; raises ValueError saying what is wrong."""
    if value is None or value == "":
        return ""
    if isinstance(value, Mapping):
        unknown = set(value) - {"name", "threshold"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(unknown))}: expected name and threshold")
        name, threshold = value.get("name"), value.get("threshold")
    elif isinstance(value, str):
        name, _, threshold = value.partition(":")
        threshold = threshold or None
    else:
        raise ValueError("expected {\"name\": ..., \"threshold\": ...}")
    if name not in CACHES:
        raise ValueError(f"{name!r} is not a cache this project offers: expected one of {', '.join(CACHES)}")
    if threshold is None:
        return name
    kind = CACHES[name][3]
    try:
        number = kind(float(threshold)) if kind is int and float(threshold).is_integer() else float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold {threshold!r} is not a number") from None
    if kind is int and not isinstance(number, int):
        raise ValueError(f"{name} takes a whole number of steps ({CACHES[name][1]}), got {threshold}")
    if number <= 0:
        raise ValueError(f"threshold must be above 0, got {threshold}")
    return f"{name}:{number:g}"


def attention_backend_problem(name: str) -> str | None:
    """Why ``name`` is no attention backend this project offers (None when it is one)."""
    if name in ("", *ATTENTION_BACKENDS):
        return None
    return f"{name!r} is not an attention backend: expected one of {', '.join(ATTENTION_BACKENDS)}"
