"""Small previews for the Dagster UI (it has no image metadata type; markdown can embed one)."""

from __future__ import annotations

import base64
import io

from PIL import Image


def thumbnail_markdown(image: Image.Image, *, alt: str, width: int = 192) -> str:
    thumb = image.convert("RGB")
    thumb.thumbnail((width, width))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=70)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{alt}](data:image/jpeg;base64,{encoded})"


def png_thumbnail_markdown(png: bytes, *, alt: str, width: int = 192) -> str:
    return thumbnail_markdown(Image.open(io.BytesIO(png)), alt=alt, width=width)
