"""The Wan model families ``render_profile.video.model_id`` may declare, and how to tell them apart.

Each family says what its diffusers folder holds: the pipeline class in
``model_index.json``, the transformer's input channels, whether the transformer
takes two frames' CLIP tokens (first-last-frame), whether a second transformer
takes over below a boundary ratio (Wan 2.2 A14B's high- and low-noise experts)
and whether the pipeline expands timesteps per latent frame (Wan 2.2 TI2V-5B).
All of them load as ``WanImageToVideoPipeline``. The adapter detects the
family of the folder it is given from its configs alone (no weights), refuses
a folder that is not what the plan declared, and records the family it ran.

``wan-2.1`` is an alias: either Wan 2.1 family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WanFamily:
    model_id: str
    description: str
    pipeline_classes: tuple[str, ...]
    in_channels: int
    first_last_frame: bool = False
    two_transformers: bool = False
    expand_timesteps: bool = False


FAMILIES: dict[str, WanFamily] = {family.model_id: family for family in (
    WanFamily("wan-2.1-i2v-480p", "Wan 2.1 image-to-video (I2V-14B; one transformer, start frame only)",
              ("WanImageToVideoPipeline",), 36),
    WanFamily("wan-2.1-flf2v-720p", "Wan 2.1 first-last-frame-to-video (FLF2V-14B 720p)",
              ("WanImageToVideoPipeline",), 36, first_last_frame=True),
    WanFamily("wan-2.2-i2v-a14b", "Wan 2.2 image-to-video A14B (two transformers switched at a boundary ratio)",
              ("WanImageToVideoPipeline",), 36, two_transformers=True),
    WanFamily("wan-2.2-ti2v-5b", "Wan 2.2 text-image-to-video 5B (48-channel VAE, expanded timesteps)",
              ("WanPipeline", "WanImageToVideoPipeline"), 48, expand_timesteps=True),
)}
ALIASES: dict[str, tuple[str, ...]] = {"wan-2.1": ("wan-2.1-i2v-480p", "wan-2.1-flf2v-720p")}
MODEL_IDS: tuple[str, ...] = (*ALIASES, *FAMILIES)
PIPELINE_CLASSES = tuple(sorted({name for family in FAMILIES.values() for name in family.pipeline_classes}))


def _declared(index: Mapping[str, Any], name: str) -> bool:
    value = index.get(name)
    return isinstance(value, list) and bool(value[0])


def detect(index: Mapping[str, Any], transformer: Mapping[str, Any]) -> WanFamily | None:
    """The family a folder's ``model_index.json`` and transformer ``config.json`` describe, or None."""
    two = _declared(index, "transformer_2")
    for family in FAMILIES.values():
        if (index.get("_class_name") in family.pipeline_classes
                and transformer.get("in_channels") == family.in_channels
                and bool(transformer.get("pos_embed_seq_len")) == family.first_last_frame
                and two == family.two_transformers
                and (not two or index.get("boundary_ratio") is not None)
                and bool(index.get("expand_timesteps")) == family.expand_timesteps):
            return family
    return None


def check(declared: str, index: Mapping[str, Any], transformer: Mapping[str, Any], *, folder: str,
          where: str) -> WanFamily:
    """The detected family, checked against the ``declared`` model id (a family or an alias; ``""``:
    whatever the folder holds). ValueError naming ``render_profile.video.model_id`` and the folder."""
    family = detect(index, transformer)
    if family is None:
        raise ValueError(
            f"{where}: {folder!r} is no Wan family this project knows ({index.get('_class_name')}, transformer "
            f"in_channels {transformer.get('in_channels')}, pos_embed_seq_len {transformer.get('pos_embed_seq_len')},"
            f" transformer_2 {'yes' if _declared(index, 'transformer_2') else 'no'}); known: {', '.join(FAMILIES)}.")
    if declared and family.model_id not in ALIASES.get(declared, (declared,)):
        raise ValueError(
            f"render_profile.video.model_id = {declared!r} but the model folder {folder!r} ({where}) holds "
            f"{family.model_id}: {family.description}. Declare {family.model_id!r}, or point the setting at a "
            f"{declared} folder.")
    return family
