"""Base images: one keyframe per entry of the plan's base_images."""

import io
from pathlib import Path

import dagster as dg
from PIL import Image

from sparkle_motion_dagster.assets.render_config import RenderConfig
from sparkle_motion_dagster.assets.shot_steps import StageWork, shot_steps_asset
from sparkle_motion_dagster.film.characters import MANIFEST as CHARACTER_MANIFEST
from sparkle_motion_dagster.film.characters import load_references
from sparkle_motion_dagster.media.previews import thumbnail_markdown
from sparkle_motion_dagster.resources.keyframes import CharacterReference, KeyframeRenderer
from sparkle_motion_dagster.store.items import Item, counts, rerendered
from sparkle_motion_dagster.lifecycle.overrides import read_overrides, seed_override
from sparkle_motion_dagster.store.run_files import image_seed, load_run_plan, output_size
from sparkle_motion_dagster.store.storage import atomic_write_bytes, atomic_write_json


class BaseImagesConfig(RenderConfig):
    """Per-run image-model settings; they win over render_profile.images and the environment."""

    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    negative_prompt: str | None = None


def keyframe_ids(plan) -> list[str]:
    """The items of this stage, in plan order (how its steps are grouped)."""
    return [image.id for image in plan.base_images]


def reference_of(portrait: dict) -> CharacterReference:
    """A character's portrait, read for a keyframe renderer."""
    with Image.open(portrait["path"]) as opened:
        picture = opened.convert("RGB")
    return CharacterReference(portrait["character_id"], portrait["name"], picture, portrait["sha256"])


def keyframe_work(stage, config: BaseImagesConfig, keyframes: KeyframeRenderer) -> StageWork:
    """Every keyframe of the run as an item, with how to render, publish and list them."""
    plan = load_run_plan(stage.store, stage.run_id)
    stage.plan_id = plan.plan_id()
    overrides = read_overrides(stage.store, stage.run_id)
    width, height = output_size(plan)
    profile = plan.render_profile.images.model_dump(exclude_none=True) if plan.render_profile.images else {}
    chosen = {k: v for k, v in config.model_dump().items() if k != "force" and v is not None}
    keyframes = keyframes.with_settings({**profile, **chosen})
    renderer = keyframes.fingerprint()
    stage.made_by = keyframes

    # Who is in each keyframe, and their portraits (a keyframe with nobody in it reads none)
    cast = {image.id: list(image.characters or []) for image in plan.base_images}
    portraits = {ref["character_id"]: ref for ref in load_references(
        stage.upstream("character_refs", CHARACTER_MANIFEST), sorted({c for ids in cast.values() for c in ids}))}
    conditioning = keyframes.reference_settings()

    items = []
    for index, image in enumerate(plan.base_images):
        seed = seed_override(overrides, "base_images", image.id)
        seed = image_seed(plan, index) if seed is None else seed
        inputs = {"renderer": renderer, "prompt": image.prompt, "seed": seed, "size": [width, height]}
        if cast[image.id]:
            inputs.update(references=[{"character_id": c, "sha256": portraits[c]["sha256"]} for c in cast[image.id]],
                          conditioning=conditioning)
        items.append(Item(image.id, stage.path(f"{image.id}.png"), request=image, inputs=inputs,
                          sources=tuple(Path(portraits[c]["path"]) for c in cast[image.id])))

    def render(item: Item):
        seed = item.inputs["seed"]
        references = tuple(reference_of(portraits[c]) for c in cast[item.id])
        # Only a keyframe with characters passes them: a renderer written before references still draws the rest.
        drawn_from = {"references": references} if references else {}
        picture = keyframes.render(item.request.prompt, seed=seed, width=width, height=height,
                                   label=f"{item.id} · seed {seed}", **drawn_from)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=1)  # fast; size matters less than time here
        atomic_write_bytes(item.path, buffer.getvalue())
        return {"backend": keyframes.backend, "seed": seed}, thumbnail_markdown(picture, alt=item.id)

    def publish(done) -> None:
        used = [{k: portraits[c][k] for k in ("character_id", "path", "sha256")} for c in cast[done.item.id]]
        stage.publish(done.item.path, metadata={"base_image_id": done.item.id, "seed": done.record["seed"],
                                                "backend": done.record["backend"], "characters": cast[done.item.id],
                                                **({"references": used, "conditioning": conditioning} if used else {})},
                      sources=[stage.upstream("movie_plan", "movie_plan.json"), *done.item.sources],
                      settings=done.item.inputs)

    def finish(results) -> dict:
        entries = [{"id": r.item.id, "asset_path": str(r.item.path), "mime_type": "image/png",
                    "seed": r.record["seed"], "prompt": r.item.request.prompt, "width": width, "height": height,
                    "backend": r.record["backend"], "characters": cast[r.item.id]} for r in results]
        thumbnails = [r.extra or thumbnail_markdown(Image.open(r.item.path), alt=r.item.id)
                      for r in results]
        manifest = atomic_write_json(stage.path("base_images_manifest.json"),
                                     {"run_id": stage.run_id, "base_image_assets": entries})
        stage.publish(manifest, sources=[r.item.path for r in results])
        return {
            "backend": keyframes.backend,
            **counts(results),
            "rerendered": dg.MetadataValue.json(rerendered(results)),
            "size": f"{width}x{height}",
            "seeds": dg.MetadataValue.json({e["id"]: e["seed"] for e in entries}),
            "manifest": dg.MetadataValue.path(str(manifest)),
            "preview": dg.MetadataValue.md(" ".join(thumbnails)),
            **stage.catalog_metadata(),
        }

    return StageWork(items, render, publish, keyframes.parallel_images, finish)


base_images = shot_steps_asset(
    "base_images", work=keyframe_work, item_ids=keyframe_ids, config=BaseImagesConfig, resources=("keyframes",),
    kinds={"png"},
    description="""One PNG per base image (N shots need N+1), rendered from its prompt and seed, conditioned on the
    reference portraits of the characters in it. Keyframes whose prompt, seed, size, renderer and characters'
    portraits did not change are reused.""")
