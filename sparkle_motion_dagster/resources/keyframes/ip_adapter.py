"""IP-Adapter for SDXL keyframes: the characters in a keyframe condition it through their portraits.

diffusers loads an IP-Adapter into the pipeline (``load_ip_adapter``: the
adapter's image projection and attention weights, and a CLIP image encoder);
each call then takes ``ip_adapter_image``, one list of images per adapter, so
a keyframe with two characters passes both portraits to the one adapter.
A keyframe with nobody in it runs without the adapter: it is unloaded, so
such keyframes are exactly what the pipeline draws without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparkle_motion_dagster.resources.model_support import model_digest


@dataclass(frozen=True)
class IpAdapterSettings:
    """Where the adapter's weights and image encoder are, and how strongly it conditions."""

    source: str
    subfolder: str
    weight_name: str
    image_encoder_folder: str
    scale: float

    def describe(self) -> dict[str, Any]:
        """For fingerprints and provenance: the settings and the identity of the weights."""
        return {"ip_adapter": self.source, "subfolder": self.subfolder, "weight_name": self.weight_name,
                "image_encoder_folder": self.image_encoder_folder, "scale": self.scale,
                "weights": model_digest(self.source)}


def condition(pipe: Any, loaded: dict[str, Any], settings: IpAdapterSettings | None,
              references: tuple[Any, ...]) -> dict[str, Any]:
    """Prepare ``pipe`` for one keyframe and return the call's extra arguments.

    ``loaded`` is the per-pipeline record of which adapter is in it (``{"ip_adapter": key}``).
    With references: the adapter is loaded (once) and the portraits are passed; without: the
    adapter is unloaded if it was in, and nothing is passed. Without configured adapter weights
    nothing conditions the keyframe (the keyframe's fingerprint records that, so configuring an
    adapter later renders exactly the keyframes with characters again)."""
    key = None if settings is None else (settings.source, settings.subfolder, settings.weight_name,
                                         settings.image_encoder_folder)
    if not references or settings is None:
        if loaded.get("ip_adapter") is not None:
            pipe.unload_ip_adapter()
            loaded["ip_adapter"] = None
        return {}
    if loaded.get("ip_adapter") != key:
        if loaded.get("ip_adapter") is not None:
            pipe.unload_ip_adapter()
        pipe.load_ip_adapter(settings.source, subfolder=settings.subfolder, weight_name=settings.weight_name,
                             image_encoder_folder=settings.image_encoder_folder)
        loaded["ip_adapter"] = key
    pipe.set_ip_adapter_scale(settings.scale)
    return {"ip_adapter_image": [[reference.image for reference in references]]}
