"""Small previews for the Dagster UI (it has no image metadata type; markdown can embed one)."""

from __future__ import annotations

import base64
import io

from PIL import Image


PREVIEW_WIDTH = 480  # wide enough to judge a keyframe or a frame of the film in the UI


def thumbnail_markdown(image: Image.Image, *, alt: str, width: int = PREVIEW_WIDTH) -> str:
    """``image`` as markdown the UI shows: a JPEG ``width`` pixels wide (a smaller picture, a
    preview-sized film's, is enlarged to it; a larger one made smaller), in the markdown itself."""
    thumb = image.convert("RGB")
    height = max(1, round(thumb.height * width / thumb.width))
    thumb = thumb.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=75)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{alt}](data:image/jpeg;base64,{encoded})"


def png_thumbnail_markdown(png: bytes, *, alt: str, width: int = PREVIEW_WIDTH) -> str:
    return thumbnail_markdown(Image.open(io.BytesIO(png)), alt=alt, width=width)
