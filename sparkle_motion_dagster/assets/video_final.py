"""The final cut: the master with the dialogue track, after lipsync on talking closeups."""

from pathlib import Path

import dagster as dg

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.assets.playable import play_metadata
from sparkle_motion_dagster.assets.stage import film_asset, stage_run
from sparkle_motion_dagster.film.final_cut import normalised_dialogue_once
from sparkle_motion_dagster.film.final_cut import lipsync_shots, lipsync_windows, middle_shot_start_sec
from sparkle_motion_dagster.media.ffmpeg import extract_frame_png
from sparkle_motion_dagster.media.previews import png_thumbnail_markdown
from sparkle_motion_dagster.media.verify import check_copied_video
from sparkle_motion_dagster.resources.lipsync import LipsyncEngine
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.store import integrity
from sparkle_motion_dagster.insight.qa import qa_record
from sparkle_motion_dagster.store.run_files import load_run_plan, read_stage_json
from sparkle_motion_dagster.store.storage import atomic_output, atomic_write_json


@film_asset("video_final", kinds={"mp4"})
def video_final(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStoreResource,
    lipsync: LipsyncEngine,
) -> dg.MaterializeResult:
    """The deliverable: the master with the stitched dialogue as one AAC track, after lipsync
    on talking closeups. It needs a person's review before it is shared (see the
    `approved_by_reviewer` check). It is published only when every frame decodes, there are as many
    as the plan asks and the audio track lasts as long as the film; a published final is never
    replaced by one that is not."""
    with stage_run(context, artifact_store, "video_final") as stage:
        store, run_id = stage.store, stage.run_id
        plan = load_run_plan(store, run_id)
        stage.plan_id = plan.plan_id()
        stage.made_by = lipsync
        raw = stage.upstream("video_raw_concat", "video_raw_concat.mp4")
        audio = stage.upstream("dialogue_audio", "tts_timeline.wav")
        audio_manifest = read_stage_json(store, run_id, "dialogue_audio", "dialogue_timeline_audio.json")
        assembly = read_stage_json(store, run_id, "video_raw_concat", "assembly_plan.json")
        work_dir = store.stage_dir(run_id, *stages.stage("video_final").work_folders)
        for stale in work_dir.glob("*.mp4") if work_dir.is_dir() else []:
            stale.unlink()  # a shot that no longer changes must not keep an old lip-synced clip
        mix = stage.path("dialogue_mix.wav")
        # the stitched track stays as synthesised; the film plays at the target (made again only when it changed)
        loudness = normalised_dialogue_once(audio, mix, sample_rate=audio_manifest["sample_rate"])
        out = stage.path("video_final.mp4")
        frames = assembly["total_frames"]
        with atomic_output(out) as temp:
            result = lipsync.apply(raw, mix, temp, windows=lipsync_windows(plan, audio_manifest["line_artifacts"]),
                                   fps=plan.fps, shots=lipsync_shots(plan, assembly), work_dir=work_dir)
            measured = check_copied_video(temp, raw, what=out.name, frames=frames, fps=plan.fps, audio=True)
        integrity.record_output(out, frames=frames, fps=plan.fps)
        alignment = atomic_write_json(stage.path("alignment_map.json"), {
            "run_id": run_id, "backend": lipsync.backend, "fps": plan.fps, **result, "loudness": loudness,
        })
        flags = qa_record(store, run_id)  # the checks of the stages before it have run by now
        stage.publish(out, duration_s=measured["duration_s"],
                      metadata={"lipsync_backend": lipsync.backend, "lipsync_applied": result["lipsync_applied"],
                                **flags}, sources=[raw, audio])
        stage.publish(alignment, sources=[raw, audio])
        stage.publish(mix, duration_s=round(frames / plan.fps, 6), metadata={"loudness": loudness}, sources=[audio])
        for clip in result.get("lipsync_clips", []):
            stage.publish(Path(clip["path"]), stage="lipsync", shot_id=clip["shot_id"],
                          artifact_type=clip["artifact_type"],
                          metadata={"changed_frames": clip["changed_frames"], "lipsync_backend": lipsync.backend},
                          sources=[raw, audio])
        thumbnail = png_thumbnail_markdown(extract_frame_png(out, at_sec=middle_shot_start_sec(assembly)),
                                           alt="video_final")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(out)),
            **play_metadata(store, [("play", out)]),
            "duration_sec": measured["duration_s"],
            "frames": frames,
            "lipsync_backend": lipsync.backend,
            "lipsync_applied": result["lipsync_applied"],
            "lipsync_mode": result.get("mode", "mux_only"),
            "lipsync_changed_frames": len(result["changed_frames"]),
            "lipsync_no_face_frames": len(result.get("no_face_frames", [])),
            "lipsync_clips": len(result.get("lipsync_clips", [])),
            "loudness_lufs": loudness["output_lufs"],
            "manual_review_required": flags["manual_review_required"],
            "qa_mode": flags["qa_mode"],
            "alignment_map": dg.MetadataValue.path(str(alignment)),
            "preview": dg.MetadataValue.md(thumbnail),
            **stage.catalog_metadata(),
        })
