"""Character references: one portrait per character, which keyframes are conditioned on."""

import dagster as dg

from sparkle_motion_dagster.assets.render_config import RenderConfig
from sparkle_motion_dagster.assets.stage import film_asset, stage_run
from sparkle_motion_dagster.film.characters import portrait_items, write_portrait
from sparkle_motion_dagster.resources.keyframes import KeyframeRenderer
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.store.items import counts, render_items
from sparkle_motion_dagster.lifecycle.overrides import read_overrides
from sparkle_motion_dagster.store.run_files import load_run_plan
from sparkle_motion_dagster.store.storage import atomic_write_json


@film_asset("character_refs", kinds={"png"})
def character_refs(
    context: dg.AssetExecutionContext,
    config: RenderConfig,
    artifact_store: ArtifactStoreResource,
    keyframes: KeyframeRenderer,
) -> dg.MaterializeResult:
    """One reference portrait per character (`character_refs/<character_id>.png`): the plan's
    `reference_image`, cover-fitted, or one the keyframe model draws from the character's description
    and the film's style, with its seed recorded. Every keyframe showing a character is conditioned on
    its portrait, so a character looks the same from shot to shot. Unchanged portraits are reused."""
    with stage_run(context, artifact_store, "character_refs") as stage:
        plan = load_run_plan(stage.store, stage.run_id)
        stage.plan_id = plan.plan_id()
        stage.made_by = keyframes
        items = portrait_items(plan, stage, keyframes, read_overrides(stage.store, stage.run_id))

        def render(item):
            return write_portrait(item, keyframes)

        def publish(done) -> None:
            stage.publish(done.item.path, metadata={"character_id": done.item.id, **done.record},
                          sources=list(done.item.sources) or None, settings=done.item.inputs)

        results = render_items(items, render, force=config.force, on_ready=publish, before_render=stage.check_stop)
        entries = [{"character_id": r.item.id, "name": r.item.request["character"].name, "asset_path": str(r.item.path),
                    "mime_type": "image/png", **r.record} for r in results]
        manifest = atomic_write_json(stage.path("character_refs_manifest.json"),
                                     {"run_id": stage.run_id, "characters": entries})
        stage.publish(manifest, sources=[r.item.path for r in results])
        thumbnails = [r.extra or "" for r in results]
        return dg.MaterializeResult(metadata={
            "backend": keyframes.backend,
            "characters": len(entries),
            **counts(results),
            "sources": dg.MetadataValue.json({e["character_id"]: e["source"] for e in entries}),
            "seeds": dg.MetadataValue.json({e["character_id"]: e.get("seed") for e in entries}),
            "manifest": dg.MetadataValue.path(str(manifest)),
            "preview": dg.MetadataValue.md(" ".join(thumbnails) or "no characters"),
            **stage.catalog_metadata(),
        })

