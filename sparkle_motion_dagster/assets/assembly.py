"""Assembly and the final cut."""

from pathlib import Path

import dagster as dg

from sparkle_motion_dagster.media.ffmpeg import extract_frame_png
from sparkle_motion_dagster.media.previews import png_thumbnail_markdown
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.runs.qa import qa_flags
from sparkle_motion_dagster.resources.assembly import FfmpegAssembler
from sparkle_motion_dagster.resources.lipsync import LipsyncEngine, lipsync_shots
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.runs.run_files import load_run_plan, read_stage_json
from sparkle_motion_dagster.runs.storage import atomic_output, atomic_write_json
from sparkle_motion_dagster.assets.dialogue_audio import dialogue_audio
from sparkle_motion_dagster.assets.stage import RENDER_RETRY, stage_run
from sparkle_motion_dagster.assets.video_clips import video_clips


@dg.asset(partitions_def=run_partitions, group_name="film", deps=[video_clips], kinds={"mp4"},
          retry_policy=RENDER_RETRY)
def video_raw_concat(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStoreResource,
    assembler: FfmpegAssembler,
) -> dg.MaterializeResult:
    """The silent master: every shot clip in plan order, joined without re-encoding."""
    with stage_run(context, artifact_store, "assembly") as stage:
        store, run_id = stage.store, stage.run_id
        stage.plan_id = load_run_plan(store, run_id).plan_id()
        motion = read_stage_json(store, run_id, "video_clips", "motion_manifest.json")
        clips = [store.path(run_id, "video_clips", f"{c['shot_id']}.mp4") for c in motion["clip_assets"]]
        out = stage.path("video_raw_concat.mp4")
        with atomic_output(stage.path("concat_list.txt")) as list_path, atomic_output(out) as temp:
            assembler.concat(clips, temp, list_path)
        frames = sum(c["num_frames"] for c in motion["clip_assets"])
        duration = round(frames / motion["fps"], 6)
        plan_path = atomic_write_json(stage.path("assembly_plan.json"), {
            "run_id": run_id,
            "clips": [{"shot_id": c["shot_id"], "path": c["asset_path"], "num_frames": c["num_frames"],
                       "duration_sec": c["duration_sec"]} for c in motion["clip_assets"]],
            "fps": motion["fps"],
            "total_frames": frames,
            "duration_sec": duration,
            "video_raw_path": str(out),
        })
        stage.publish(out, duration_s=duration, width=motion["width"], height=motion["height"])
        stage.publish(plan_path)
        return dg.MaterializeResult(metadata={
            "backend": assembler.backend,
            "clips": len(clips),
            "frames": frames,
            "duration_sec": duration,
            "path": dg.MetadataValue.path(str(out)),
            "assembly_plan": dg.MetadataValue.path(str(plan_path)),
            **stage.catalog_metadata(),
        })


@dg.asset(partitions_def=run_partitions, group_name="film", deps=[video_raw_concat, dialogue_audio], kinds={"mp4"},
          retry_policy=RENDER_RETRY, pool="gpu")
def video_final(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStoreResource,
    lipsync: LipsyncEngine,
) -> dg.MaterializeResult:
    """The deliverable: the master with the stitched dialogue as one AAC track, after lipsync
    on talking closeups. It needs a person's review before it is shared (see the
    `approved_by_reviewer` check)."""
    with stage_run(context, artifact_store, "finalize") as stage:
        store, run_id = stage.store, stage.run_id
        plan = load_run_plan(store, run_id)
        stage.plan_id = plan.plan_id()
        raw = store.path(run_id, "assembly", "video_raw_concat.mp4")
        audio_manifest = read_stage_json(store, run_id, "dialogue_audio", "dialogue_timeline_audio.json")
        audio = store.path(run_id, "dialogue_audio", "tts_timeline.wav")
        assembly = read_stage_json(store, run_id, "assembly", "assembly_plan.json")
        windows = lipsync_windows(plan, audio_manifest)
        work_dir = store.stage_dir(run_id, "lipsync")
        for stale in work_dir.glob("*.mp4") if work_dir.is_dir() else []:
            stale.unlink()  # a shot that no longer changes must not keep an old lip-synced clip
        out = stage.path("video_final.mp4")
        with atomic_output(out) as temp:
            result = lipsync.apply(raw, audio, temp, windows=windows, fps=plan.fps,
                                   shots=lipsync_shots(plan, assembly), work_dir=work_dir)
        alignment = atomic_write_json(stage.path("alignment_map.json"), {
            "run_id": run_id, "backend": lipsync.backend, "fps": plan.fps, **result,
        })
        frames = assembly["total_frames"]
        flags = qa_flags()
        stage.publish(out, duration_s=round(frames / plan.fps, 6),
                      metadata={"lipsync_backend": lipsync.backend, "lipsync_applied": result["lipsync_applied"],
                                **flags})
        stage.publish(alignment)
        for clip in result.get("lipsync_clips", []):
            stage.publish(Path(clip["path"]), stage="lipsync", shot_id=clip["shot_id"],
                          artifact_type=clip["artifact_type"], duration_s=round(clip["num_frames"] / plan.fps, 6),
                          metadata={"changed_frames": clip["changed_frames"], "lipsync_backend": lipsync.backend})
        thumbnail = png_thumbnail_markdown(extract_frame_png(out, at_sec=middle_shot_start_sec(assembly)),
                                           alt="video_final")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(out)),
            "duration_sec": round(frames / plan.fps, 6),
            "frames": frames,
            "lipsync_backend": lipsync.backend,
            "lipsync_applied": result["lipsync_applied"],
            "lipsync_mode": result.get("mode", "mux_only"),
            "lipsync_changed_frames": len(result["changed_frames"]),
            "lipsync_no_face_frames": len(result.get("no_face_frames", [])),
            "lipsync_clips": len(result.get("lipsync_clips", [])),
            "manual_review_required": flags["manual_review_required"],
            "qa_mode": flags["qa_mode"],
            "alignment_map": dg.MetadataValue.path(str(alignment)),
            "preview": dg.MetadataValue.md(thumbnail),
            **stage.catalog_metadata(),
        })


def middle_shot_start_sec(assembly: dict) -> float:
    """Where the middle shot begins. Every clip starts with a keyframe, so ffmpeg decodes a
    single frame there, where a frame mid-shot would cost decoding the shot up to it."""
    clips = assembly["clips"]
    frames_before = sum(clip["num_frames"] for clip in clips[:len(clips) // 2])
    return frames_before / assembly["fps"]


def lipsync_windows(plan, audio_manifest) -> list[dict]:
    """Dialogue intervals that fall on talking-closeup shots: where lipsync has work to do."""
    shots, clock = [], 0.0
    for shot in plan.shots:
        shots.append((shot, clock, clock + shot.duration_sec))
        clock += shot.duration_sec
    windows = []
    for line in audio_manifest["line_artifacts"]:
        for shot, start, end in shots:
            lo, hi = max(start, line["start_time_actual_s"]), min(end, line["end_time_actual_s"])
            if shot.is_talking_closeup and hi > lo:
                windows.append({"line_id": line["line_id"], "shot_id": shot.id,
                                "start_s": round(lo, 6), "end_s": round(hi, 6)})
    return windows
