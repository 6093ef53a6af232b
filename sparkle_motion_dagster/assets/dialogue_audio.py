"""Dialogue audio: one WAV per line, stitched onto one track at the plan's timestamps."""

import json
from pathlib import Path

import dagster as dg

from sparkle_motion_dagster.assets.render_config import RenderConfig
from sparkle_motion_dagster.assets.stage import film_asset, stage_run
from sparkle_motion_dagster.film import visemes
from sparkle_motion_dagster.film.speech_fit import line_fields
from sparkle_motion_dagster.film.stitching import LineAudio, PlacedLine, stitch
from sparkle_motion_dagster.film.subtitles import Cue, to_srt, to_vtt
from sparkle_motion_dagster.media.wav import read_wav, resample, wav_bytes, wav_duration_s
from sparkle_motion_dagster.resources.speech import SpeechEngine
from sparkle_motion_dagster.resources.speech.fitting import fit_policy_from_env
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.lifecycle.events import write_event
from sparkle_motion_dagster.store.items import Item, counts, render_items, rerendered
from sparkle_motion_dagster.store.run_files import load_run_plan, submitted_document
from sparkle_motion_dagster.store.storage import atomic_write_bytes, atomic_write_json

DEFAULT_SAMPLE_RATE = 22050
OVERLONG_SPEECH_POLICY = ("runs on into the following silence; where it would reach the next line or the film's "
                          "end it is sped up (pitch kept) by the smallest tempo that fits, up to max_tempo; beyond "
                          "that it is trimmed with a fade (overrun: trim) or refused (overrun: fail)")


@film_asset("dialogue_audio", kinds={"wav"})
def dialogue_audio(
    context: dg.AssetExecutionContext,
    config: RenderConfig,
    artifact_store: ArtifactStoreResource,
    speech: SpeechEngine,
) -> dg.MaterializeResult:
    """One WAV per dialogue line, `tts_timeline.wav` with every line at its planned start
    (exactly the film's runtime long; speech longer than the time before the next line sped
    up to fit, up to `SPARKLE_SPEECH_MAX_TEMPO`), `dialogue_timeline_audio.json` with the
    measured offsets, tempo, padding and trims, and subtitles (.srt, .vtt) and viseme streams
    that follow the placed audio. Unchanged lines are reused."""
    with stage_run(context, artifact_store, "dialogue_audio") as stage:
        store, run_id = stage.store, stage.run_id
        plan = load_run_plan(store, run_id)
        stage.plan_id = plan.plan_id()
        engine = speech.fingerprint()
        policy = fit_policy_from_env()
        fields = line_fields(submitted_document(store, run_id))
        stage.made_by = speech

        items = []
        for line_id, entry in plan.dialogue_lines():
            voice_profile = plan.character(entry.character_id).voice_profile
            inputs = {"engine": engine, "text": entry.text, "character_id": entry.character_id,
                      "voice_profile": voice_profile.model_dump(mode="json")}
            extra = speech.voice_fingerprint(entry.character_id, voice_profile)  # e.g. reference audio's hash
            if extra:
                inputs["voice_extra"] = extra
            viseme_path = stage.path(f"{line_id}.viseme.json")
            items.append(Item(line_id, stage.path(f"{line_id}.wav"), inputs=inputs, request=(entry, voice_profile),
                              also_needs=(viseme_path,)))

        def render(item: Item) -> dict:
            entry, voice_profile = item.request
            result = speech.synthesize_line(entry.text, character_id=entry.character_id, voice_profile=voice_profile)
            atomic_write_bytes(item.path, wav_bytes(result.samples, result.sample_rate))
            atomic_write_json(item.also_needs[0], visemes.viseme_document(
                result.visemes, line_id=item.id, character_id=entry.character_id, text=entry.text,
                backend=speech.backend, source=result.viseme_source,
                sample_rate=result.sample_rate, duration_s=result.duration_s))
            return {"chunks": result.chunks, "voice": result.voice, "backend": speech.backend,
                    "viseme_source": result.viseme_source}

        def publish(done) -> None:
            character_id = done.item.request[0].character_id
            stage.publish(done.item.path, metadata={"line_id": done.item.id, "character_id": character_id,
                                                    "backend": done.record.get("backend")},
                          duration_s=round(wav_duration_s(done.item.path), 6), settings=done.item.inputs)
            stage.publish(done.item.also_needs[0], metadata={"line_id": done.item.id, "character_id": character_id},
                          sources=[done.item.path], settings=done.item.inputs)

        # Lines render one at a time: engines keep one voice state per process.
        results = render_items(items, render, force=config.force, workers=1, on_ready=publish,
                               before_render=stage.check_stop, on_problem=context.log.warning)

        lines, artifacts, sample_rate = [], [], 0
        for done in results:  # plan order, so a resumed run stitches exactly what a fresh one does
            entry, meta = done.item.request[0], done.record
            samples, rate = read_wav(done.item.path)
            sample_rate = sample_rate or rate
            lines.append(LineAudio(done.item.id, entry.start_time_sec, entry.duration_sec,
                                   resample(samples, rate, sample_rate), field=fields.get(done.item.id, "")))
            artifacts.append({"line_id": done.item.id, "character_id": entry.character_id, "text": entry.text,
                              "audio_path": str(done.item.path), "duration_sec": round(len(samples) / rate, 6),
                              "planned_start_s": entry.start_time_sec, "planned_duration_s": entry.duration_sec,
                              "voice": meta.get("voice", {}), "chunks": meta.get("chunks", 1),
                              "backend": meta.get("backend"), "viseme_stream_uri": str(done.item.also_needs[0]),
                              "viseme_source": meta.get("viseme_source")})
        sample_rate = sample_rate or DEFAULT_SAMPLE_RATE
        track, placed = stitch(lines, runtime_sec=plan.runtime_sec, sample_rate=sample_rate, policy=policy)
        timeline_path = atomic_write_bytes(stage.path("tts_timeline.wav"), wav_bytes(track, sample_rate))
        offsets = {p.line_id: p.as_dict() for p in placed}
        by_id = {p.line_id: p for p in placed}
        for artifact in artifacts:
            artifact.update(offsets[artifact["line_id"]])
            fitted_visemes(stage, artifact, by_id[artifact["line_id"]])
        fitted = [p.line_id for p in placed if p.tempo > 1]
        for line_id in fitted:
            context.log.info(f"{line_id}: sped up {offsets[line_id]['tempo']}x to end before the next line")
        trimmed = [p.line_id for p in placed if p.timeline_trimmed_s > 0]
        overrun = [p.line_id for p in placed if p.timeline_overrun_s > 0]
        for line_id in trimmed:
            context.log.warning(f"{line_id}: speech trimmed by {offsets[line_id]['timeline_trimmed_s']}s "
                                "to keep the next line on time")
            write_event(store.root, run_id, "dialogue.trimmed", offsets[line_id])
        manifest_path = atomic_write_json(stage.path("dialogue_timeline_audio.json"), {
            "run_id": run_id,
            "backend": speech.backend,
            "sample_rate": sample_rate,
            "total_duration_s": plan.runtime_sec,
            "stitched_audio_path": str(timeline_path),
            "overlong_speech_policy": OVERLONG_SPEECH_POLICY,
            "speech_fit": policy.as_dict(),
            "entry_count": len(artifacts),
            "line_artifacts": artifacts,
            "timeline_offsets": offsets,
        })

        cues = [Cue(a["start_time_actual_s"], a["end_time_actual_s"], plan.character(a["character_id"]).name, a["text"])
                for a in artifacts]
        srt_path = atomic_write_bytes(stage.path("dialogue.srt"), to_srt(cues).encode())
        vtt_path = atomic_write_bytes(stage.path("dialogue.vtt"), to_vtt(cues).encode())
        line_files = [r.item.path for r in results]
        stage.publish(timeline_path, duration_s=round(len(track) / sample_rate, 6), sources=line_files)
        for path in (manifest_path, srt_path, vtt_path):
            stage.publish(path, sources=line_files)
        for artifact in artifacts:
            if artifact.get("viseme_stream_raw_uri"):
                stage.publish(Path(artifact["viseme_stream_uri"]), metadata={"line_id": artifact["line_id"],
                                                                             "tempo": artifact["tempo"]})

        return dg.MaterializeResult(metadata={
            "backend": speech.backend,
            "lines": len(artifacts),
            "reused_lines": counts(results)["reused"],
            "rerendered": dg.MetadataValue.json(rerendered(results)),
            "fitted_lines": len(fitted),
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


def fitted_visemes(stage, artifact: dict, line: PlacedLine) -> None:
    """Point the line's viseme stream at one that follows its placed audio: for a line sped up or
    trimmed, ``<line_id>.fitted.viseme.json`` (its times scaled, cut where the audio ends); the
    spoken line's own stream (beside its WAV) stays as the engine made it."""
    path = stage.path(f"{line.line_id}.fitted.viseme.json")
    if line.tempo == 1 and line.timeline_trimmed_s == 0:
        path.unlink(missing_ok=True)  # fitted by an earlier plan, no longer
        return
    raw_path = artifact["viseme_stream_uri"]
    document = json.loads(Path(raw_path).read_text(encoding="utf-8"))
    placed_s = line.end_time_actual_s - line.start_time_actual_s
    scale = line.duration_audio_fitted_s / line.duration_audio_raw_s if line.duration_audio_raw_s else 1.0
    document.update(visemes=visemes.fit_stream(document["visemes"], scale=scale, end_s=round(placed_s, 3)),
                    duration_s=round(placed_s, 6), tempo=line.tempo, trimmed_s=round(line.timeline_trimmed_s, 6),
                    spoken_stream_uri=raw_path)
    atomic_write_json(path, document)
    artifact.update(viseme_stream_uri=str(path), viseme_stream_raw_uri=raw_path)
