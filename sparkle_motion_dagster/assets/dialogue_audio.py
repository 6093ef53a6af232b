"""Dialogue audio: one WAV per line, stitched onto one track at the plan's timestamps."""

import dagster as dg

from sparkle_motion_dagster.runs import cache
from sparkle_motion_dagster.film import visemes
from sparkle_motion_dagster.film.stitching import LineAudio, read_wav, resample_linear, stitch, wav_bytes
from sparkle_motion_dagster.runs.events import write_event
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.speech import SpeechEngine
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.runs.run_files import load_run_plan
from sparkle_motion_dagster.runs.storage import atomic_write_bytes, atomic_write_json
from sparkle_motion_dagster.film.subtitles import Cue, to_srt, to_vtt
from sparkle_motion_dagster.assets.movie_plan import movie_plan
from sparkle_motion_dagster.assets.render_config import RenderConfig
from sparkle_motion_dagster.assets.stage import RENDER_RETRY, stage_run

STAGE = "dialogue_audio"
DEFAULT_SAMPLE_RATE = 22050


@dg.asset(partitions_def=run_partitions, group_name="film", deps=[movie_plan], kinds={"wav"},
          retry_policy=RENDER_RETRY)
def dialogue_audio(
    context: dg.AssetExecutionContext,
    config: RenderConfig,
    artifact_store: ArtifactStoreResource,
    speech: SpeechEngine,
) -> dg.MaterializeResult:
    """One WAV per dialogue line, `tts_timeline.wav` with every line at its planned start
    (exactly the film's runtime long), `dialogue_timeline_audio.json` with the measured
    offsets, padding and trims, and subtitles (.srt, .vtt). Unchanged lines are reused."""
    with stage_run(context, artifact_store, STAGE) as stage:
        store, run_id = stage.store, stage.run_id
        plan = load_run_plan(store, run_id)
        stage.plan_id = plan.plan_id()
        engine = speech.fingerprint()

        lines, artifacts, reused = [], [], 0
        sample_rate = 0
        for line_id, entry in plan.dialogue_lines():
            stage.check_stop()
            voice_profile = plan.character(entry.character_id).voice_profile
            path = stage.path(f"{line_id}.wav")
            viseme_path = stage.path(f"{line_id}.viseme.json")
            inputs = {"engine": engine, "text": entry.text, "character_id": entry.character_id,
                      "voice_profile": voice_profile.model_dump(mode="json")}
            extra = speech.voice_fingerprint(entry.character_id, voice_profile)  # e.g. reference audio's hash
            if extra:
                inputs["voice_extra"] = extra
            key = cache.fingerprint(inputs)
            meta = None if config.force or not viseme_path.exists() else cache.reusable(path, key)
            if meta is None:
                result = speech.synthesize_line(entry.text, character_id=entry.character_id, voice_profile=voice_profile)
                atomic_write_bytes(path, wav_bytes(result.samples, result.sample_rate))
                atomic_write_json(viseme_path, visemes.viseme_document(
                    result.visemes, line_id=line_id, character_id=entry.character_id, text=entry.text,
                    backend=speech.backend, source=result.viseme_source,
                    sample_rate=result.sample_rate, duration_s=result.duration_s))
                meta = cache.record(path, key, {"chunks": result.chunks, "voice": result.voice,
                                                "backend": speech.backend, "viseme_source": result.viseme_source})
            else:
                reused += 1
            samples, rate = read_wav(path)
            sample_rate = sample_rate or rate
            lines.append(LineAudio(line_id, entry.start_time_sec, entry.duration_sec,
                                   resample_linear(samples, rate, sample_rate)))
            artifacts.append({"line_id": line_id, "character_id": entry.character_id, "text": entry.text,
                              "audio_path": str(path), "duration_sec": round(len(samples) / rate, 6),
                              "planned_start_s": entry.start_time_sec, "planned_duration_s": entry.duration_sec,
                              "voice": meta.get("voice", {}), "chunks": meta.get("chunks", 1),
                              "backend": meta.get("backend"), "viseme_stream_uri": str(viseme_path),
                              "viseme_source": meta.get("viseme_source")})
            stage.publish(path, metadata={"line_id": line_id, "character_id": entry.character_id,
                                          "backend": meta.get("backend")}, duration_s=round(len(samples) / rate, 6))
            stage.publish(viseme_path, metadata={"line_id": line_id, "character_id": entry.character_id})

        sample_rate = sample_rate or DEFAULT_SAMPLE_RATE
        track, placed = stitch(lines, runtime_sec=plan.runtime_sec, sample_rate=sample_rate)
        timeline_path = atomic_write_bytes(stage.path("tts_timeline.wav"), wav_bytes(track, sample_rate))
        offsets = {p.line_id: p.as_dict() for p in placed}
        for artifact in artifacts:
            artifact.update(offsets[artifact["line_id"]])
        trimmed = [p.line_id for p in placed if p.timeline_trimmed_s > 0]
        overrun = [p.line_id for p in placed if p.timeline_overrun_s > 0]
        for line_id in trimmed:
            message = f"{line_id}: speech trimmed by {offsets[line_id]['timeline_trimmed_s']}s to keep the next line on time"
            context.log.warning(message)
            write_event(store.root, run_id, "dialogue.trimmed", offsets[line_id])
        manifest_path = atomic_write_json(stage.path("dialogue_timeline_audio.json"), {
            "run_id": run_id,
            "backend": speech.backend,
            "sample_rate": sample_rate,
            "total_duration_s": plan.runtime_sec,
            "stitched_audio_path": str(timeline_path),
            "overlong_speech_policy": "runs on into the following silence; trimmed with a fade only at the next line "
                                      "or the film's end",
            "entry_count": len(artifacts),
            "line_artifacts": artifacts,
            "timeline_offsets": offsets,
        })

        cues = [Cue(a["start_time_actual_s"], a["end_time_actual_s"], plan.character(a["character_id"]).name, a["text"])
                for a in artifacts]
        srt_path = atomic_write_bytes(stage.path("dialogue.srt"), to_srt(cues).encode())
        vtt_path = atomic_write_bytes(stage.path("dialogue.vtt"), to_vtt(cues).encode())
        stage.publish(timeline_path, duration_s=round(len(track) / sample_rate, 6))
        for path in (manifest_path, srt_path, vtt_path):
            stage.publish(path)

        return dg.MaterializeResult(metadata={
            "backend": speech.backend,
            "lines": len(artifacts),
            "reused_lines": reused,
            "trimmed_lines": len(trimmed),
            "overrun_lines": len(overrun),
            "sample_rate": sample_rate,
            "duration_sec": round(len(track) / sample_rate, 6),
            "tts_timeline": dg.MetadataValue.path(str(timeline_path)),
            "offsets": dg.MetadataValue.path(str(manifest_path)),
            "subtitles_srt": dg.MetadataValue.path(str(srt_path)),
            "subtitles_vtt": dg.MetadataValue.path(str(vtt_path)),
            **stage.catalog_metadata(),
        })
