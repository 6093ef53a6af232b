"""Video clips: each shot rendered from its start keyframe to its end keyframe."""

import dagster as dg

from sparkle_motion_dagster.assets.playable import play_metadata
from sparkle_motion_dagster.assets.render_config import RenderConfig
from sparkle_motion_dagster.assets.shot_steps import StageWork, shot_steps_asset
from sparkle_motion_dagster.film.intake import resolve_video_backend
from sparkle_motion_dagster.film.plan import MoviePlan
from sparkle_motion_dagster.film.timeline import shot_frame_counts
from sparkle_motion_dagster.resources.clips import ClipRenderer, ClipRequest
from sparkle_motion_dagster.resources.keyframes import KeyframeRenderer
from sparkle_motion_dagster.lifecycle.events import read_events, write_event
from sparkle_motion_dagster.store.items import Item, counts, rerendered
from sparkle_motion_dagster.lifecycle.overrides import read_overrides, seed_override
from sparkle_motion_dagster.store.run_files import load_run_plan, output_size, read_stage_json
from sparkle_motion_dagster.lifecycle.shown import one_line
from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_output, atomic_write_json, sha256_file


def checked_video_backend(store: ArtifactStore, run_id: str, plan: MoviePlan, clips: ClipRenderer) -> dict:
    """The model check once more, right before any clip is rendered, against what the run asked
    for (preview or not, as movie_plan recorded it; the submitted request for an older record).

    Every path that renders comes through here: resume after a dry run, rerun, regenerate, the
    UI materializing this asset alone, a sensor's run. An unconfigured model without preview
    fails permanently with the message saying how to configure it; a substitution is recorded
    as a ``backend.substitution`` event when movie_plan did not record one."""
    recorded = read_stage_json(store, run_id, "movie_plan", "plan_validation.json").get("video", {})
    preview = recorded.get("preview")
    if preview is None:
        preview = bool(store.read_request(run_id).get("preview"))
    choice = resolve_video_backend(plan, served=clips.model_ids, backend=clips.backend, preview=preview)
    if choice["substituted"] and not read_events(store.root, run_id, "backend.substitution"):
        write_event(store.root, run_id, "backend.substitution",
                    {"stage": "video_clips", "declared_model_id": choice["declared_model_id"],
                     "backend": choice["video_backend"]})
    return choice


def memory_plan_of(record: dict) -> dict:
    """A rendered clip's memory plan (placement, predicted peak, free memory, margin), when it had one."""
    return {"memory_plan": record["memory_plan"]} if record.get("memory_plan") else {}


def memory_plans(results) -> dict:
    """The stage's memory plans: each placement used, with the shots that used it (and any step down)."""
    plans: dict[str, dict] = {}
    for result in results:
        plan = result.record.get("memory_plan")
        if plan:
            entry = plans.setdefault(plan["label"], {**plan, "shots": []})
            entry["shots"].append(result.item.id)
    return {"memory_plan": list(plans.values())} if plans else {}


def shot_ids(plan) -> list[str]:
    """The items of this stage, in plan order (how its steps are grouped)."""
    return [shot.id for shot in plan.shots]


def clip_work(stage, config: RenderConfig, clips: ClipRenderer, keyframes: KeyframeRenderer) -> StageWork:
    """Every shot of the run as an item, with how to render, publish and list them."""
    context = stage.context
    store, run_id = stage.store, stage.run_id
    plan = load_run_plan(store, run_id)
    stage.plan_id = plan.plan_id()
    choice = checked_video_backend(store, run_id, plan, clips)
    if choice["substituted"]:
        context.log.warning(one_line(choice["substitution"]))
    overrides = read_overrides(store, run_id)
    keyframe_seeds = {e["id"]: e["seed"] for e in read_stage_json(
        store, run_id, "base_images", "base_images_manifest.json")["base_image_assets"]}
    width, height, fps = *output_size(plan), plan.fps
    keyframes.release()  # the keyframe model is done: give its memory to the video model
    if not choice["substituted"]:
        clips = clips.with_settings(plan.render_profile.video.model_dump(exclude_none=True))
    renderer = clips.fingerprint()
    levers = clips.levers_record()
    stage.made_by = clips

    items = []
    for shot, frames in zip(plan.shots, shot_frame_counts([s.duration_sec for s in plan.shots], fps)):
        start = stage.upstream("base_images", f"{shot.start_base_image_id}.png")
        end = stage.upstream("base_images", f"{shot.end_base_image_id}.png")
        seed = seed_override(overrides, "shots", shot.id)
        seed = keyframe_seeds[shot.start_base_image_id] if seed is None else seed
        request = ClipRequest(shot_id=shot.id, start_image=start, end_image=end, frames=frames, fps=fps,
                              width=width, height=height, seed=seed, motion_prompt=shot.motion_prompt,
                              prompt=shot.visual_description)
        items.append(Item(shot.id, stage.path(f"{shot.id}.mp4"), request=(shot, request), sources=(start, end),
                          inputs={
            "renderer": renderer, "frames": frames, "fps": fps, "size": [width, height], "seed": seed,
            "motion_prompt": shot.motion_prompt, "start": sha256_file(start), "end": sha256_file(end)}))

    def render(item: Item) -> dict:
        request = item.request[1]
        with atomic_output(item.path) as temp:
            details = clips.render(request, temp)
        context.log.info(f"{item.id}: rendered {request.frames} frames with {clips.backend} (seed {request.seed})")
        return {"backend": clips.backend, "seed": request.seed, "frames": request.frames, **details}

    def publish(done) -> None:
        frames = done.item.inputs["frames"]
        stage.publish(done.item.path, shot_id=done.item.id, width=width,  # its duration: measured from the file
                      height=height, metadata={"seed": done.record["seed"], "frames": frames,
                                               "backend": done.record["backend"],
                                               "continuity_mode": done.record.get("continuity_mode"),
                                               "retime": done.record.get("retime", "none"),
                                               **({"levers": levers} if levers else {}), **memory_plan_of(done.record)},
                      sources=done.item.sources, settings=done.item.inputs)

    def finish(results) -> dict:
        entries = []
        for done in results:
            shot, request = done.item.request
            entries.append({"shot_id": shot.id, "asset_path": str(done.item.path),
                            "duration_sec": round(request.frames / fps, 6), "planned_duration_sec": shot.duration_sec,
                            "num_frames": request.frames, "fps": fps, "seed": request.seed,
                            "start_base_image_id": shot.start_base_image_id,
                            "end_base_image_id": shot.end_base_image_id, "motion_prompt": shot.motion_prompt,
                            "backend": done.record["backend"], "continuity_mode": done.record.get("continuity_mode"),
                            "retime": done.record.get("retime", "none"),
                            **{k: done.record[k] for k in ("family", "generations", "model_frames") if k in done.record}})
        manifest = atomic_write_json(stage.path("motion_manifest.json"), {
            "run_id": run_id, "fps": fps, "width": width, "height": height, "video": choice, "clip_assets": entries})
        stage.publish(manifest, sources=[r.item.path for r in results])
        tally = counts(results)
        return {
            "backend": clips.backend,
            "declared_model_id": choice["declared_model_id"],
            "substituted": choice["substituted"],
            "shots": tally["count"],
            "rendered": tally["rendered"],
            "reused": tally["reused"],
            "rendered_shots": dg.MetadataValue.json([r.item.id for r in results if r.rendered]),
            "rerendered": dg.MetadataValue.json(rerendered(results)),
            "retime": dg.MetadataValue.json(sorted({e["retime"] for e in entries})),
            **({"levers": dg.MetadataValue.json(levers)} if levers else {}),
            "frames": sum(e["num_frames"] for e in entries),
            "fps": fps,
            "size": f"{width}x{height}",
            "manifest": dg.MetadataValue.path(str(manifest)),
            **play_metadata(store, ((f"play_{r.item.id}", r.item.path) for r in results)),
            **stage.catalog_metadata(),
            **{k: dg.MetadataValue.json(v) for k, v in memory_plans(results).items()},
        }

    return StageWork(items, render, publish, clips.parallel_shots, finish)


video_clips = shot_steps_asset(
    "video_clips", work=clip_work, item_ids=shot_ids, config=RenderConfig, resources=("clips", "keyframes"),
    kinds={"mp4"},
    description="""One video-only MP4 per shot, from base image *i* to *i+1*, with duration x fps frames
    (rounded on the film's running clock). Shots whose keyframes, seed and settings did not
    change are reused, so a failed or stopped run resumes where it left off and regenerating
    one shot re-renders only that shot.""")
