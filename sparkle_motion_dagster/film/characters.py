"""Character reference portraits: where each comes from, and how a keyframe reads them back.

A character's portrait is the plan's ``reference_image`` (a file given with
the plan, cover-fitted to a square) or one the keyframe renderer draws from
the character's description and the film's style. Dagster-free: the
``character_refs`` and ``base_images`` stages call it with their stage object.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from sparkle_motion_dagster.media.previews import thumbnail_markdown
from sparkle_motion_dagster.store.items import Item
from sparkle_motion_dagster.lifecycle.overrides import seed_override
from sparkle_motion_dagster.store.storage import UnsafeIdError, atomic_write_bytes, sha256_file

MANIFEST = "character_refs_manifest.json"
# Reference files larger than this are refused before they are decoded.
MAX_REFERENCE_BYTES = 50 * 1024 * 1024


class ReferenceImageError(ValueError):
    """A reference_image that cannot be used: missing, outside the artifact root, or not a picture."""


def portrait_side(plan: Any) -> int:
    """A portrait's side in pixels: the film's height, a multiple of 8 between 64 and 1024."""
    height = plan.render_profile.video.height or 360
    return max(64, min(1024, height) // 8 * 8)


def portrait_seed(plan: Any, character_id: str) -> int:
    """A stable seed for a character's drawn portrait."""
    digest = hashlib.sha256(f"{plan.title}\x00character\x00{character_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 2**31


def film_style(plan: Any) -> str:
    """What a drawn portrait borrows from the film: its declared style, else its title."""
    style = plan.metadata.get("style") if isinstance(plan.metadata, dict) else None
    return str(style) if style else f"From the film {plan.title}."


def reference_file(value: str, *, artifact_root: Path, field: str) -> Path:
    """The file a ``reference_image`` names: an absolute path (a plan file's relative paths are made
    absolute when it is submitted), or a path under the artifact root that must stay inside it."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        root = Path(artifact_root).resolve()
        path = (root / path).resolve()
        if path != root and root not in path.parents:
            raise UnsafeIdError(f"{field}: {value!r} leaves the artifact root")
    if not path.is_file():
        raise ReferenceImageError(f"{field}: no such file {str(path)!r} (a path relative to the plan file, "
                                  "or under the artifact root)")
    if path.stat().st_size > MAX_REFERENCE_BYTES:
        raise ReferenceImageError(f"{field}: {str(path)!r} is over {MAX_REFERENCE_BYTES // 2**20} MB")
    return path


def check_reference_images(plan: Any, *, artifact_root: Path) -> list[tuple[str, str]]:
    """(field, why) for each ``reference_image`` that cannot be used: missing, outside the artifact
    root, too big, or not a picture. Checked at intake, before anything is rendered."""
    problems = []
    for index, character in enumerate(plan.characters):
        if not character.reference_image:
            continue
        field = f"characters[{index}].reference_image"
        try:
            source = reference_file(character.reference_image, artifact_root=artifact_root, field=field)
            with Image.open(source) as opened:
                opened.verify()
        except (ReferenceImageError, UnsafeIdError) as error:
            problems.append((field, str(error).removeprefix(f"{field}: ")))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            problems.append((field, f"{character.reference_image!r} is not a picture Pillow can read "
                                    f"({type(error).__name__})"))
    return problems


def portrait_items(plan: Any, stage: Any, keyframes: Any, overrides: dict) -> list[Item]:
    """One item per character: a given file (by its sha256) or a drawing (renderer, prompt, seed)."""
    side = portrait_side(plan)
    renderer = keyframes.fingerprint()
    items = []
    for index, character in enumerate(plan.characters):
        path = stage.path(f"{character.id}.png")
        if character.reference_image:
            field = f"characters[{index}].reference_image"
            source = reference_file(character.reference_image, artifact_root=stage.store.root, field=field)
            items.append(Item(character.id, path, request={"character": character, "field": field},
                              sources=(source,),
                              inputs={"source": "reference_image", "sha256": sha256_file(source), "size": side}))
            continue
        seed = seed_override(overrides, "characters", character.id)
        items.append(Item(character.id, path, request={"character": character, "field": None}, inputs={
            "source": "rendered", "renderer": renderer, "name": character.name,
            "description": character.description, "style": film_style(plan),
            "seed": portrait_seed(plan, character.id) if seed is None else seed, "size": side}))
    return items


def write_portrait(item: Item, keyframes: Any) -> tuple[dict[str, Any], str]:
    """Make one portrait (copy a given file cover-fitted, or draw it) and say how it was made."""
    inputs = item.inputs
    side = inputs["size"]
    if inputs["source"] == "reference_image":
        source = item.sources[0]
        try:
            with Image.open(source) as opened:
                opened.load()
                picture = ImageOps.fit(ImageOps.exif_transpose(opened).convert("RGB"), (side, side),
                                       Image.Resampling.LANCZOS)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise ReferenceImageError(f"{item.request['field']}: {str(source)!r} is not a picture Pillow can read "
                                      f"({type(error).__name__}: {error})") from None
        record = {"source": "reference_image", "reference_image": str(source), "reference_sha256": inputs["sha256"],
                  "seed": None, "backend": "reference_image"}
    else:
        picture = keyframes.render_portrait(name=inputs["name"], description=inputs["description"],
                                            style=inputs["style"], seed=inputs["seed"], size=side)
        record = {"source": "rendered", "seed": inputs["seed"], "backend": keyframes.backend}
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    atomic_write_bytes(item.path, buffer.getvalue())
    return record, thumbnail_markdown(picture, alt=item.id, width=160)


def load_references(manifest_path: Path, character_ids: list[str]) -> list[dict[str, Any]]:
    """The portraits of ``character_ids`` from the ``character_refs`` manifest, each checked against
    its file: ``{"character_id", "name", "path", "sha256"}``."""
    entries = {e["character_id"]: e for e in json.loads(Path(manifest_path).read_text())["characters"]}
    found = []
    for character_id in character_ids:
        entry = entries.get(character_id)
        if entry is None:
            raise ReferenceImageError(f"{manifest_path}: no portrait of {character_id!r}; render character_refs")
        path = Path(entry["asset_path"])
        found.append({"character_id": character_id, "name": entry["name"], "path": str(path),
                      "sha256": sha256_file(path)})
    return found
