"""Video clips: each shot rendered from its start keyframe to its end keyframe."""

import dagster as dg

from sparkle_motion_dagster.runs import cache
from sparkle_motion_dagster.runs.overrides import read_overrides, seed_override
from sparkle_motion_dagster.runs.parallel import results_in_order
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.keyframes import sdxl
from sparkle_motion_dagster.resources.clips import ClipRenderer, ClipRequest
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.runs.run_files import load_run_plan, output_size, read_stage_json
from sparkle_motion_dagster.runs.storage import atomic_output, atomic_write_json, sha256_file
from sparkle_motion_dagster.film.timeline import shot_frame_counts
from sparkle_motion_dagster.assets.base_images import base_images
from sparkle_motion_dagster.assets.movie_plan import movie_plan
from sparkle_motion_dagster.assets.render_config import RenderConfig
from sparkle_motion_dagster.assets.stage import RENDER_RETRY, stage_run

STAGE = "video_clips"


@dg.asset(partitions_def=run_partitions, group_name="film", deps=[movie_plan, base_images], kinds={"mp4"},
          retry_policy=RENDER_RETRY, pool="gpu")
def video_clips(
    context: dg.AssetExecutionContext,
    config: RenderConfig,
    artifact_store: ArtifactStoreResource,
    clips: ClipRenderer,
) -> dg.MaterializeResult:
    """One video-only MP4 per shot, from base image *i* to *i+1*, with duration x fps frames
    (rounded on the film's running clock). Shots whose keyframes, seed and settings did not
    change are reused, so a failed or stopped run resumes where it left off and regenerating
    one shot re-renders only that shot."""
    with stage_run(context, artifact_store, STAGE) as stage:
        store, run_id = stage.store, stage.run_id
        plan = load_run_plan(store, run_id)
        stage.plan_id = plan.plan_id()
        overrides = read_overrides(store, run_id)
        keyframes = read_stage_json(store, run_id, "base_images", "base_images_manifest.json")["base_image_assets"]
        keyframe_seeds = {e["id"]: e["seed"] for e in keyframes}
        width, height = output_size(plan)
        fps = plan.fps
        sdxl.release()  # the keyframe model is done: give its memory to the video model
        renderer = clips.fingerprint()

        def publish(shot, frames, seed, path, meta) -> None:
            stage.publish(path, shot_id=shot.id, duration_s=round(frames / fps, 6), width=width, height=height,
                          metadata={"seed": seed, "frames": frames, "backend": meta["backend"],
                                    "continuity_mode": meta.get("continuity_mode")})

        shots, pending = [], []
        for shot, frames in zip(plan.shots, shot_frame_counts([s.duration_sec for s in plan.shots], fps)):
            start = store.path(run_id, "base_images", f"{shot.start_base_image_id}.png")
            end = store.path(run_id, "base_images", f"{shot.end_base_image_id}.png")
            seed = seed_override(overrides, "shots", shot.id)
            seed = keyframe_seeds[shot.start_base_image_id] if seed is None else seed
            path = stage.path(f"{shot.id}.mp4")
            key = cache.fingerprint({"renderer": renderer, "frames": frames, "fps": fps, "size": [width, height],
                                     "seed": seed, "motion_prompt": shot.motion_prompt,
                                     "start": sha256_file(start), "end": sha256_file(end)})
            meta = None if config.force else cache.reusable(path, key)
            shots.append([shot, frames, seed, path, meta])
            if meta is None:
                pending.append((len(shots) - 1, key, ClipRequest(
                    shot_id=shot.id, start_image=start, end_image=end, frames=frames, fps=fps, width=width,
                    height=height, seed=seed, motion_prompt=shot.motion_prompt, prompt=shot.visual_description)))
            else:
                publish(*shots[-1])

        def render(job) -> tuple[int, dict]:
            index, key, request = job
            stage.check_stop()
            path = shots[index][3]
            with atomic_output(path) as temp:
                details = clips.render(request, temp)
            # Recorded as soon as the clip exists, so a later failure does not cost it.
            return index, cache.record(path, key, {"backend": clips.backend, "seed": request.seed,
                                                   "frames": request.frames, **details})

        rendered = []
        for index, meta in results_in_order(render, pending, workers=clips.parallel_shots):
            shots[index][4] = meta
            shot, frames, seed = shots[index][:3]
            publish(*shots[index])  # in the catalog as soon as it exists
            rendered.append(shot.id)
            context.log.info(f"{shot.id}: rendered {frames} frames with {clips.backend} (seed {seed})")

        entries = [{"shot_id": shot.id, "asset_path": str(path), "duration_sec": round(frames / fps, 6),
                    "planned_duration_sec": shot.duration_sec, "num_frames": frames, "fps": fps, "seed": seed,
                    "start_base_image_id": shot.start_base_image_id, "end_base_image_id": shot.end_base_image_id,
                    "motion_prompt": shot.motion_prompt, "backend": meta["backend"],
                    "continuity_mode": meta.get("continuity_mode")}
                   for shot, frames, seed, path, meta in shots]

        manifest = atomic_write_json(stage.path("motion_manifest.json"),
                                     {"run_id": run_id, "fps": fps, "width": width, "height": height,
                                      "clip_assets": entries})
        stage.publish(manifest)
        return dg.MaterializeResult(metadata={
            "backend": clips.backend,
            "shots": len(entries),
            "rendered": len(rendered),
            "reused": len(entries) - len(rendered),
            "rendered_shots": dg.MetadataValue.json(rendered),
            "frames": sum(e["num_frames"] for e in entries),
            "fps": fps,
            "size": f"{width}x{height}",
            "manifest": dg.MetadataValue.path(str(manifest)),
            **stage.catalog_metadata(),
        })
