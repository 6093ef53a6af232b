"""Base images: one keyframe per entry of the plan's base_images."""

import io

import dagster as dg
from PIL import Image

from sparkle_motion_dagster.runs import cache
from sparkle_motion_dagster.media.previews import thumbnail_markdown
from sparkle_motion_dagster.runs.overrides import read_overrides, seed_override
from sparkle_motion_dagster.runs.parallel import results_in_order
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.keyframes import KeyframeRenderer
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.runs.run_files import image_seed, load_run_plan, output_size
from sparkle_motion_dagster.runs.storage import atomic_write_bytes, atomic_write_json
from sparkle_motion_dagster.assets.movie_plan import movie_plan
from sparkle_motion_dagster.assets.render_config import RenderConfig


class BaseImagesConfig(RenderConfig):
    """Per-run image-model settings; they win over render_profile.images and the environment."""

    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    negative_prompt: str | None = None
from sparkle_motion_dagster.assets.stage import RENDER_RETRY, stage_run

STAGE = "base_images"


@dg.asset(partitions_def=run_partitions, group_name="film", deps=[movie_plan], kinds={"png"},
          retry_policy=RENDER_RETRY, pool="gpu")
def base_images(
    context: dg.AssetExecutionContext,
    config: BaseImagesConfig,
    artifact_store: ArtifactStoreResource,
    keyframes: KeyframeRenderer,
) -> dg.MaterializeResult:
    """One PNG per base image (N shots need N+1), rendered from its prompt and seed.
    Keyframes whose prompt, seed, size and renderer did not change are reused."""
    with stage_run(context, artifact_store, STAGE) as stage:
        store, run_id = stage.store, stage.run_id
        plan = load_run_plan(store, run_id)
        stage.plan_id = plan.plan_id()
        overrides = read_overrides(store, run_id)
        width, height = output_size(plan)
        profile = plan.render_profile.images.model_dump(exclude_none=True) if plan.render_profile.images else {}
        chosen = {k: v for k, v in config.model_dump().items() if k != "force" and v is not None}
        keyframes = keyframes.with_settings({**profile, **chosen})
        renderer = keyframes.fingerprint()

        def publish(image, seed, path, meta) -> None:
            stage.publish(path, metadata={"base_image_id": image.id, "seed": seed, "backend": meta["backend"]})

        images, pending = [], []
        for index, image in enumerate(plan.base_images):
            seed = seed_override(overrides, "base_images", image.id)
            seed = image_seed(plan, index) if seed is None else seed
            path = stage.path(f"{image.id}.png")
            key = cache.fingerprint({"renderer": renderer, "prompt": image.prompt, "seed": seed, "size": [width, height]})
            meta = None if config.force else cache.reusable(path, key)
            images.append([image, seed, path, meta, None])
            if meta is None:
                pending.append((index, key))
            else:
                publish(image, seed, path, meta)

        def render(job) -> tuple[int, dict, str]:
            index, key = job
            image, seed, path = images[index][:3]
            stage.check_stop()
            picture = keyframes.render(image.prompt, seed=seed, width=width, height=height,
                                       label=f"{image.id} · seed {seed}")
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG", compress_level=1)  # fast; size matters less than time here
            atomic_write_bytes(path, buffer.getvalue())
            meta = cache.record(path, key, {"backend": keyframes.backend, "seed": seed})
            return index, meta, thumbnail_markdown(picture, alt=image.id, width=160)

        rendered = []
        for index, meta, thumbnail in results_in_order(render, pending, workers=keyframes.parallel_images):
            images[index][3:] = [meta, thumbnail]
            publish(*images[index][:4])  # in the catalog as soon as it exists
            rendered.append(images[index][0].id)

        entries = [{"id": image.id, "asset_path": str(path), "mime_type": "image/png", "seed": seed,
                    "prompt": image.prompt, "width": width, "height": height, "backend": meta["backend"]}
                   for image, seed, path, meta, _ in images]
        thumbnails = [thumbnail or thumbnail_markdown(Image.open(path), alt=image.id, width=160)
                      for image, _, path, _, thumbnail in images]

        manifest = atomic_write_json(stage.path("base_images_manifest.json"),
                                     {"run_id": run_id, "base_image_assets": entries})
        stage.publish(manifest)
        return dg.MaterializeResult(metadata={
            "backend": keyframes.backend,
            "count": len(entries),
            "rendered": len(rendered),
            "reused": len(entries) - len(rendered),
            "size": f"{width}x{height}",
            "seeds": dg.MetadataValue.json({e["id"]: e["seed"] for e in entries}),
            "manifest": dg.MetadataValue.path(str(manifest)),
            "preview": dg.MetadataValue.md(" ".join(thumbnails)),
            **stage.catalog_metadata(),
        })
