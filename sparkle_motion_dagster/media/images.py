"""Reading a picture someone else wrote (a keyframe), trusting it only once it decodes whole."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image


class DamagedFileError(ValueError):
    """A file that is there but cannot be read as what it should be (cut short, overwritten):
    the same file fails the same way again, so the stage fails at once naming it."""


def open_image(path: Path, *, what: str = "image") -> Image.Image:
    """The picture at ``path``, decoded whole, or DamagedFileError naming the file and the
    damage (a truncated PNG fails in PIL with ``struct.error`` or a bare ``OSError``).

    A missing file and an error of the machine (an ``OSError`` with an errno: disk,
    network filesystem) are raised as they are: another attempt may find them fixed."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise
        reason = exc
    except (struct.error, zlib.error, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        reason = exc
    raise DamagedFileError(f"{path}: the {what} is damaged and cannot be decoded "
                           f"({type(reason).__name__}: {reason}); render it again") from None
