"""The silent master: every shot clip in plan order, joined without re-encoding, checked before
it is published."""

from pathlib import Path

import dagster as dg

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.assets.playable import play_metadata
from sparkle_motion_dagster.assets.stage import film_asset, stage_run
from sparkle_motion_dagster.media.verify import VIDEO_STREAM, DamagedOutputError, check_joined_video, video_problems
from sparkle_motion_dagster.resources.assembly import FfmpegAssembler
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.store import integrity
from sparkle_motion_dagster.store.run_files import load_run_plan, read_stage_json
from sparkle_motion_dagster.store.storage import atomic_output, atomic_write_json


@film_asset("video_raw_concat", kinds={"mp4"})
def video_raw_concat(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStoreResource,
    assembler: FfmpegAssembler,
) -> dg.MaterializeResult:
    """The silent master: every shot clip in plan order, joined without re-encoding. It is
    published only when every frame decodes (each clip's frames are decoded once, ever) and there
    are as many as the plan asks; otherwise
    the stage fails naming the clips at fault, and an earlier master stays as it was."""
    with stage_run(context, artifact_store, "video_raw_concat") as stage:
        store, run_id = stage.store, stage.run_id
        stage.plan_id = load_run_plan(store, run_id).plan_id()
        stage.made_by = assembler
        motion = read_stage_json(store, run_id, "video_clips", stages.manifest("video_clips"))
        clips = [stage.upstream("video_clips", f"{c['shot_id']}.mp4") for c in motion["clip_assets"]]
        out = stage.path("video_raw_concat.mp4")
        frames = sum(c["num_frames"] for c in motion["clip_assets"])
        with atomic_output(stage.path("concat_list.txt")) as list_path, atomic_output(out) as temp:
            assembler.concat(clips, temp, list_path)
            try:
                measured = check_joined_video(temp, list(zip(clips, [c["num_frames"] for c in motion["clip_assets"]])),
                                              what=out.name, fps=motion["fps"])
            except DamagedOutputError as error:
                raise DamagedOutputError(f"{error}{_clips_at_fault(motion)}") from None
        # the packets' summary (None when the master had to be decoded) spares the final's check a read
        integrity.record_output(out, frames=frames, fps=motion["fps"], **{VIDEO_STREAM: measured.get(VIDEO_STREAM)})
        duration = measured["duration_s"]
        plan_path = atomic_write_json(stage.path("assembly_plan.json"), {
            "run_id": run_id,
            "clips": [{"shot_id": c["shot_id"], "path": c["asset_path"], "num_frames": c["num_frames"],
                       "duration_sec": c["duration_sec"]} for c in motion["clip_assets"]],
            "fps": motion["fps"],
            "total_frames": frames,
            "duration_sec": duration,
            "video_raw_path": str(out),
        })
        stage.publish(out, duration_s=duration, width=motion["width"], height=motion["height"], sources=clips)
        stage.publish(plan_path, sources=clips)
        return dg.MaterializeResult(metadata={
            "backend": assembler.backend,
            "clips": len(clips),
            "frames": frames,
            "duration_sec": duration,
            "path": dg.MetadataValue.path(str(out)),
            **play_metadata(store, [("play", out)]),
            "assembly_plan": dg.MetadataValue.path(str(plan_path)),
            **stage.catalog_metadata(),
        })


def _clips_at_fault(motion: dict) -> str:
    """Which clips do not decode to their own frame count (only when the master came out wrong)."""
    faults = []
    for clip in motion["clip_assets"]:
        problems = video_problems(Path(clip["asset_path"]), frames=clip["num_frames"], fps=motion["fps"])
        if problems:
            faults.append(f"{Path(clip['asset_path']).name} ({'; '.join(problems)})")
    return f"; at fault: {', '.join(faults)}; render them again with `rerun --from video_clips`" if faults else ""
