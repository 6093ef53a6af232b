"""Automated quality checks of one film, computed from its files as they are on disk.

One check per stage, each judging what that stage wrote: the plan's invariants, the
keyframes, the shot clips (decodable, exact frame counts, continuity with their
keyframes, no black or frozen stretch), the dialogue track (length to the sample,
speech where lines are, quiet where silence is planned, no clipping) and the final
cut (length to a frame, the dialogue as its audio, loudness on target, lipsync where
a lipsync model is configured). Every check returns its measured values, and a failure
names the item and the measured value against its threshold.

Dagster-free: the asset checks (``assets/checks``) run these and the report is kept
with the run (``finalize/qa_report.json``, see :mod:`sparkle_motion_dagster.insight.qa`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sparkle_motion_dagster.film.plan import DialogueEntry, MoviePlan, check_invariants, validate_plan
from sparkle_motion_dagster.film.timeline import seconds_to_samples, shot_frame_counts
from sparkle_motion_dagster.media import analysis
from sparkle_motion_dagster.media.ffmpeg import FfmpegError, probe
from sparkle_motion_dagster.media.wav import read_wav
from sparkle_motion_dagster.store import integrity
from sparkle_motion_dagster.store.run_files import load_run_plan, read_stage_json, stage_file
from sparkle_motion_dagster.store.storage import ArtifactStore

# Keyframes: a picture whose luma spread (standard deviation) is under this is blank or flat.
MIN_IMAGE_SPREAD = 4.0
# Continuity: the least SSIM (the keyframe framed at the clip's size, both reduced to at most 256 wide)
# between a clip's end frame and its keyframe, per
# continuity mode. The animatic starts and ends on its keyframes exactly; a video model regenerates them.
CONTINUITY_SSIM = {"crossfade": 0.9, "first_last_frame": 0.6, "image_to_video": 0.6}
DEFAULT_CONTINUITY_SSIM = 0.6
# Modes whose last frame is conditioned on the end keyframe (image-to-video models are checked on the start only).
ENDS_ON_KEYFRAME = {"crossfade", "first_last_frame"}
# The keyframe may be framed with a slight overscan (the animatic pans across an 8 % larger copy).
CONTINUITY_ZOOMS = (1.0, 1.04, 1.08)
# Black: no stretch longer than this. Frozen: none longer than both this and half the clip (the
# animatic holds on each keyframe for a fifth of the clip while its pan creeps by a pixel or two).
MAX_BLACK_S = 0.5
MAX_FROZEN_S = 1.0
MAX_FROZEN_FRACTION = 0.5
CLIP_WORKERS = 2
# Dialogue: a 20 ms window holds speech above this level; a line holds speech in most of its windows.
SPEECH_FLOOR_DBFS = -45.0
MIN_SPEECH_FRACTION = 0.5
# Planned silences: no 20 ms window louder than this.
SILENCE_CEILING_DBFS = -50.0
# Clipping: samples at full scale, as a share of a line's samples.
FULL_SCALE = 32767
MAX_CLIPPED_FRACTION = 0.001
# Final cut: the audio lines up with the dialogue track within this, and resembles it at least this much.
MAX_AUDIO_LAG_S = 0.01
MIN_AUDIO_CORRELATION = 0.8
# Loudness: the final's integrated loudness within this of the target; the true peak at most the
# limit plus this (AAC encoding moves peaks a little; the normaliser leaves a decibel of headroom for it).
LOUDNESS_TOLERANCE_LU = 1.0
TRUE_PEAK_TOLERANCE_DB = 0.5
TRUE_PEAK_LIMIT_DBTP = -1.0
NORMALISER_TRUE_PEAK_DBTP = -2.0
DEFAULT_LOUDNESS_LUFS = -16.0


def target_loudness() -> float:
    """The final cut's integrated loudness target (``SPARKLE_LOUDNESS_LUFS``; -16 for the web, -23 broadcast)."""
    value = os.environ.get("SPARKLE_LOUDNESS_LUFS", "").strip()
    if not value:
        return DEFAULT_LOUDNESS_LUFS
    try:
        target = float(value)
    except ValueError:
        raise ValueError(f"SPARKLE_LOUDNESS_LUFS must be a number of LUFS such as -16, got {value!r}") from None
    if not -70.0 <= target <= -5.0:
        raise ValueError(f"SPARKLE_LOUDNESS_LUFS must be between -70 and -5 LUFS, got {target}")
    return target


@dataclass
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, infinities (silence's loudness) as None."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class _Judge:
    """Collects one check's measurements and the failures among them."""

    def __init__(self, asset: str, name: str):
        self.asset, self.name = asset, name
        self.metadata: dict[str, Any] = {}
        self.failures: list[str] = []

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def outcome(self, summary: str) -> CheckOutcome:
        passed = not self.failures
        description = summary if passed else "; ".join(self.failures[:6]) + (
            f"; and {len(self.failures) - 6} more" if len(self.failures) > 6 else "")
        return CheckOutcome(self.asset, self.name, passed, description,
                            {**self.metadata, "failures": list(self.failures)}, list(self.failures))


# ---------------------------------------------------------------------- movie_plan


def check_plan(store: ArtifactStore, run_id: str) -> CheckOutcome:
    """The plan on disk still holds its invariants: N+1 keyframes for N shots, each shot from
    keyframe i to i+1, dialogue within the runtime, and clips that add up to the runtime."""
    judge = _Judge("movie_plan", "plan_invariants")
    data = read_stage_json(store, run_id, "movie_plan", "movie_plan.json")
    plan = validate_plan(data)  # a plan edited on disk into an invalid one fails here, naming the field
    for issue in check_invariants(plan):
        judge.fail(f"{issue.field}: {issue.message}")
    frames = shot_frame_counts([shot.duration_sec for shot in plan.shots], plan.fps)
    timeline_end = max((entry.end_time_sec for entry in plan.dialogue_timeline), default=0.0)
    judge.metadata.update(shots=len(plan.shots), base_images=len(plan.base_images), runtime_sec=plan.runtime_sec,
                          fps=plan.fps, total_frames=sum(frames), timeline_end_sec=round(timeline_end, 6))
    if abs(sum(frames) / plan.fps - plan.runtime_sec) > 0.5 / plan.fps + 1e-9:
        judge.fail(f"total frames {sum(frames)} at {plan.fps} fps is not the runtime {plan.runtime_sec}s")
    return judge.outcome(f"{len(plan.shots)} shots, {len(plan.base_images)} keyframes, runtime {plan.runtime_sec}s")


# ---------------------------------------------------------------------- base_images


KEYFRAME_READING = "keyframe_reading"
"""The fact kept with a keyframe's digest: its size and luma spread, as one decode found them."""


def _keyframe_reading(path: Path) -> dict[str, Any]:
    """A keyframe's size and luma spread, decoded once per content (kept with its digest: a resumed or
    regenerated film does not decode the keyframes it did not touch)."""
    kept = integrity.remembered(path, KEYFRAME_READING)
    if isinstance(kept, dict):
        return kept
    with Image.open(path) as picture:
        picture.load()
        luma = np.asarray(picture.convert("L"), dtype=np.float32)
        reading = {"width": picture.width, "height": picture.height, "spread": round(float(luma.std()), 2)}
    integrity.remember(path, KEYFRAME_READING, reading)
    return reading


def check_keyframes(store: ArtifactStore, run_id: str) -> CheckOutcome:
    """One decodable picture per planned keyframe, at the planned size, none blank or flat."""
    judge = _Judge("base_images", "keyframes_sound")
    plan = load_run_plan(store, run_id)
    manifest = read_stage_json(store, run_id, "base_images", "base_images_manifest.json")
    listed = {entry["id"]: entry for entry in manifest.get("base_image_assets", [])}
    images = []
    for image in plan.base_images:
        path = stage_file(store, run_id, "base_images", f"{image.id}.png")
        row: dict[str, Any] = {"id": image.id}
        images.append(row)
        if image.id not in listed:
            judge.fail(f"{image.id}: missing from base_images_manifest.json")
        try:
            row.update(_keyframe_reading(path))
        except (OSError, SyntaxError, ValueError) as error:
            judge.fail(f"{image.id}: does not decode ({type(error).__name__}: {error})")
            continue
        expected = listed.get(image.id, {})
        if expected.get("width") and (row["width"], row["height"]) != (expected["width"], expected["height"]):
            judge.fail(f"{image.id}: {row['width']}x{row['height']}, planned "
                       f"{expected['width']}x{expected['height']}")
        if row["spread"] < MIN_IMAGE_SPREAD:
            judge.fail(f"{image.id}: blank or flat (luma spread {row['spread']} < {MIN_IMAGE_SPREAD})")
    judge.metadata.update(count=len(images), expected=len(plan.base_images), images=images,
                          min_spread=min((r.get("spread", 0.0) for r in images), default=0.0),
                          spread_threshold=MIN_IMAGE_SPREAD)
    return judge.outcome(f"{len(images)} keyframes decode at their size, none flat")


# ---------------------------------------------------------------------- video_clips


@functools.lru_cache(maxsize=16)
def _keyframe(path: Path, mtime_ns: int) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("L")


def framed_keyframe(path: Path, clip_size: tuple[int, int], zoom: float, size: tuple[int, int]) -> np.ndarray:
    """The keyframe as a clip of ``clip_size`` frames it (enlarged by ``zoom``, even-sized, centre-cropped
    to even offsets, as the animatic does), resampled straight to ``size`` (one resize, whatever the zoom)."""
    gray = _keyframe(path, path.stat().st_mtime_ns)
    width, height = clip_size
    big_w, big_h = max(width, int(round(width * zoom)) // 2 * 2), max(height, int(round(height * zoom)) // 2 * 2)
    left, top = (big_w - width) // 4 * 2, (big_h - height) // 4 * 2
    scale_x, scale_y = gray.width / big_w, gray.height / big_h
    box = (left * scale_x, top * scale_y, (left + width) * scale_x, (top + height) * scale_y)
    return np.asarray(gray.resize(size, Image.Resampling.BICUBIC, box=box), dtype=np.float32)


def keyframe_similarity(frame: np.ndarray, keyframe: Path, clip_size: tuple[int, int]) -> float:
    """The best SSIM of a decoded frame (at the analysis size) against its keyframe framed at the clip's
    size, as-is or with a slight overscan, at the frame's size."""
    height, width = frame.shape
    return round(max(analysis.ssim(frame, framed_keyframe(keyframe, clip_size, zoom, (width, height)))
                     for zoom in CONTINUITY_ZOOMS), 4)


CLEAN_DECODE = "clean_decode_frames"  # the fact media/verify.py reads before joining clips
CLIP_JUDGEMENT = "clip_judgement"
"""The fact kept with a clip's digest: what :func:`judge_clip` found, and what it was judged against."""


def judged_once(clip: Path, **against: Any) -> tuple[dict[str, Any], list[str]]:
    """:func:`judge_clip`, decoding a clip only the first time it is judged against these keyframes,
    this plan's frames and rate and these thresholds (a regenerated shot's check reads one clip, not
    the film's): the judgement is kept with the clip's digest, so any change to the clip, its
    keyframes or the rules judges it again."""
    if not clip.is_file():
        return judge_clip(clip, **against)
    basis = {**against, "start_keyframe": _digest(against["start_keyframe"]),
             "end_keyframe": _digest(against["end_keyframe"]),
             "rules": [CONTINUITY_SSIM, DEFAULT_CONTINUITY_SSIM, sorted(ENDS_ON_KEYFRAME), CONTINUITY_ZOOMS,
                       MAX_BLACK_S, MAX_FROZEN_S, MAX_FROZEN_FRACTION]}
    basis = json.loads(json.dumps(basis, default=str))
    kept = integrity.remembered(clip, CLIP_JUDGEMENT)
    if isinstance(kept, dict) and kept.get("basis") == basis:
        return kept["row"], kept["failures"]
    row, failures = judge_clip(clip, **against)
    integrity.remember(clip, CLIP_JUDGEMENT, {"basis": basis, "row": row, "failures": failures})
    return row, failures


def _digest(path: Path) -> str | None:
    return integrity.file_record(path)["sha256"] if path.is_file() else None


def judge_clip(clip: Path, *, shot_id: str, expected_frames: int, fps: float, mode: str | None,
               start_keyframe: Path, end_keyframe: Path) -> tuple[dict[str, Any], list[str]]:
    """One clip's measurements and what is wrong with it (each message names the shot)."""
    failures: list[str] = []
    row: dict[str, Any] = {"shot_id": shot_id, "continuity_mode": mode, "expected_frames": expected_frames}
    try:
        reading = analysis.read_clip(clip)
    except (FfmpegError, OSError) as error:
        row.update(decodable=False, continuity_verified=False)
        return row, [f"{shot_id}: does not decode ({str(error).splitlines()[0][:160]})"]
    row.update(decodable=True, frames=reading.frames, fps=reading.fps)
    if not reading.decode_errors and reading.frames == expected_frames:
        # a clean decode of every frame: assembly need not decode this clip again
        integrity.remember(clip, CLEAN_DECODE, reading.frames)
    if reading.frames != expected_frames:
        failures.append(f"{shot_id}: {reading.frames} frames, expected {expected_frames}")
    if reading.fps is None or abs(reading.fps - fps) > 1e-3:
        failures.append(f"{shot_id}: {reading.fps} fps, expected {fps}")
    threshold = CONTINUITY_SSIM.get(mode or "", DEFAULT_CONTINUITY_SSIM)
    row["continuity_threshold_ssim"] = threshold
    verified = reading.first is not None
    clip_size = (reading.source_width, reading.source_height)
    if reading.first is not None:
        row["start_ssim"] = keyframe_similarity(reading.first, start_keyframe, clip_size)
        if row["start_ssim"] < threshold:
            verified = False
            failures.append(f"{shot_id}: first frame does not match its start keyframe "
                            f"(SSIM {row['start_ssim']} < {threshold})")
    if (mode or "") in ENDS_ON_KEYFRAME and reading.last is not None:
        row["end_ssim"] = keyframe_similarity(reading.last, end_keyframe, clip_size)
        if row["end_ssim"] < threshold:
            verified = False
            failures.append(f"{shot_id}: last frame does not match its end keyframe "
                            f"(SSIM {row['end_ssim']} < {threshold})")
    row["continuity_verified"] = verified
    duration = reading.frames / fps if fps else 0.0
    black = max((end - start for start, end in reading.black), default=0.0)
    frozen = max((end - start for start, end in reading.frozen), default=0.0)
    frozen_limit = max(MAX_FROZEN_S, MAX_FROZEN_FRACTION * duration)
    row.update(longest_black_s=round(black, 3), longest_frozen_s=round(frozen, 3),
               black_threshold_s=MAX_BLACK_S, frozen_threshold_s=round(frozen_limit, 3))
    if black > MAX_BLACK_S:
        failures.append(f"{shot_id}: black for {black:.2f}s (> {MAX_BLACK_S}s)")
    if frozen > frozen_limit:
        failures.append(f"{shot_id}: frozen for {frozen:.2f}s (> {frozen_limit:.2f}s)")
    return row, failures


def check_clips(store: ArtifactStore, run_id: str) -> CheckOutcome:
    """Every shot's clip decodes with exactly its frames at the film's rate, starts (and for
    first-last-frame models ends) on its keyframes, and holds no black or frozen stretch."""
    judge = _Judge("video_clips", "clips_sound")
    plan = load_run_plan(store, run_id)
    motion = read_stage_json(store, run_id, "video_clips", "motion_manifest.json")
    listed = {clip["shot_id"]: clip for clip in motion.get("clip_assets", [])}
    counts = shot_frame_counts([shot.duration_sec for shot in plan.shots], plan.fps)
    work = []
    for shot, frames in zip(plan.shots, counts):
        entry = listed.get(shot.id)
        if entry is None:
            judge.fail(f"{shot.id}: missing from motion_manifest.json")
            continue
        work.append(dict(
            clip=stage_file(store, run_id, "video_clips", f"{shot.id}.mp4"), shot_id=shot.id, expected_frames=frames,
            fps=plan.fps, mode=entry.get("continuity_mode"),
            start_keyframe=stage_file(store, run_id, "base_images", f"{shot.start_base_image_id}.png"),
            end_keyframe=stage_file(store, run_id, "base_images", f"{shot.end_base_image_id}.png")))
    # Each clip is one ffmpeg decode: two at a time keep two cores busy.
    with ThreadPoolExecutor(max_workers=CLIP_WORKERS) as pool:
        judged = list(pool.map(lambda args: judged_once(**args), work))
    clips = []
    for row, failures in judged:
        clips.append(row)
        for failure in failures:
            judge.fail(failure)
    judge.metadata.update(clips=clips, count=len(clips), expected=len(plan.shots),
                          continuity_verified=all(row.get("continuity_verified") for row in clips) and bool(clips))
    return judge.outcome(f"{len(clips)} clips decode with exact frames, continuity verified, "
                         "no black or frozen stretch")


# ---------------------------------------------------------------------- dialogue_audio


def check_dialogue(store: ArtifactStore, run_id: str) -> CheckOutcome:
    """The stitched track lasts the runtime to the sample, each line's window holds speech,
    planned silences are quiet, and nothing clips."""
    judge = _Judge("dialogue_audio", "dialogue_sound")
    plan = load_run_plan(store, run_id)
    manifest = read_stage_json(store, run_id, "dialogue_audio", "dialogue_timeline_audio.json")
    samples, rate = read_wav(stage_file(store, run_id, "dialogue_audio", "tts_timeline.wav"))
    expected = seconds_to_samples(plan.runtime_sec, rate)
    judge.metadata.update(sample_rate=rate, samples=len(samples), expected_samples=expected)
    if len(samples) != expected:
        judge.fail(f"tts_timeline.wav: {len(samples)} samples, expected {expected} "
                   f"({plan.runtime_sec}s at {rate} Hz)")
    window_s = 0.02
    levels = analysis.frame_dbfs(samples, rate, window_s=window_s)
    lines, spoken = [], np.zeros(len(levels), dtype=bool)
    for line in manifest.get("line_artifacts", []):
        start, end = float(line["start_time_actual_s"]), float(line["end_time_actual_s"])
        first, last = int(start / window_s), max(int(start / window_s) + 1, int(np.ceil(end / window_s)))
        spoken[first:last] = True
        window = levels[first:last]
        speech = float(np.mean(window > SPEECH_FLOOR_DBFS)) if len(window) else 0.0
        part = samples[seconds_to_samples(start, rate):seconds_to_samples(end, rate)]
        clipped = float(np.mean(np.abs(part.astype(np.int32)) >= FULL_SCALE)) if len(part) else 0.0
        row = {"line_id": line["line_id"], "start_s": start, "end_s": end, "speech_fraction": round(speech, 3),
               "peak_dbfs": round(float(window.max()), 2) if len(window) else None,
               "clipped_fraction": round(clipped, 5)}
        lines.append(row)
        if speech < MIN_SPEECH_FRACTION:
            judge.fail(f"{line['line_id']}: speech in {speech:.0%} of its window {start:.2f}-{end:.2f}s "
                       f"(< {MIN_SPEECH_FRACTION:.0%} above {SPEECH_FLOOR_DBFS} dBFS)")
        if clipped > MAX_CLIPPED_FRACTION:
            judge.fail(f"{line['line_id']}: {clipped:.2%} of its samples clip at full scale "
                       f"(> {MAX_CLIPPED_FRACTION:.1%})")
    silences = []
    for entry in plan.dialogue_timeline:
        if isinstance(entry, DialogueEntry):
            continue
        first, last = int(np.ceil(entry.start_time_sec / window_s)), int(entry.end_time_sec / window_s)
        quiet = levels[first:last][~spoken[first:last]]
        loudest = round(float(quiet.max()), 2) if len(quiet) else None
        silences.append({"start_s": entry.start_time_sec, "end_s": round(entry.end_time_sec, 6),
                         "loudest_dbfs": loudest})
        if loudest is not None and loudest > SILENCE_CEILING_DBFS:
            judge.fail(f"silence at {entry.start_time_sec:.2f}s: {loudest} dBFS (> {SILENCE_CEILING_DBFS} dBFS)")
    gaps = levels[~spoken] if len(levels) else levels
    gap_loudest = round(float(gaps.max()), 2) if len(gaps) else None
    if gap_loudest is not None and gap_loudest > SILENCE_CEILING_DBFS:
        at = float(np.flatnonzero(~spoken)[int(np.argmax(gaps))] * window_s)
        judge.fail(f"sound outside every line at {at:.2f}s: {gap_loudest} dBFS (> {SILENCE_CEILING_DBFS} dBFS)")
    judge.metadata.update(lines=lines, silences=silences, loudest_outside_lines_dbfs=gap_loudest,
                          speech_floor_dbfs=SPEECH_FLOOR_DBFS, silence_ceiling_dbfs=SILENCE_CEILING_DBFS)
    return judge.outcome(f"{len(samples)} samples = runtime; {len(lines)} lines spoken, silences quiet, no clipping")


# ---------------------------------------------------------------------- video_final


def check_final(store: ArtifactStore, run_id: str) -> CheckOutcome:
    """The final cut decodes; its frames and audio last the runtime to a frame; its audio is the
    dialogue track, in time; its loudness and true peak are on target; lipsync was applied to the
    talking close-ups when a lipsync model is configured."""
    judge = _Judge("video_final", "final_sound")
    plan = load_run_plan(store, run_id)
    final = stage_file(store, run_id, "video_final", "video_final.mp4")
    alignment = read_stage_json(store, run_id, "video_final", "alignment_map.json")
    expected_frames = sum(shot_frame_counts([shot.duration_sec for shot in plan.shots], plan.fps))
    rate = 16000
    # Each reading is one ffmpeg run; they start together (the true-peak loudness, the longest, first)
    # and are taken in order below, so a failure stops the check where it always did.
    with ThreadPoolExecutor(max_workers=CLIP_WORKERS) as pool:
        reading = {name: pool.submit(read, *args) for name, read, *args in (
            ("loudness", analysis.loudness, final), ("info", probe, final), ("frames", analysis.count_packets, final),
            ("keyframes", analysis.keyframes_decode, final), ("audio", analysis.decode_audio, final, rate),
            ("dialogue", analysis.decode_audio, stage_file(store, run_id, "dialogue_audio", "tts_timeline.wav"), rate))}
        return _judge_final(judge, plan, alignment, expected_frames, rate, {k: f.result for k, f in reading.items()})


def _judge_final(judge: _Judge, plan: MoviePlan, alignment: dict, expected_frames: int, rate: int,
                 reading: dict[str, Callable[[], Any]]) -> CheckOutcome:
    info = reading["info"]()
    judge.metadata.update(expected_frames=expected_frames, runtime_sec=plan.runtime_sec,
                          video_codec=info["video_codec"], audio_codec=info["audio_codec"])
    # The picture is the clips' (checked frame by frame in video_clips) copied or lip-synced: here its frames
    # are counted from the packets and every keyframe (each shot's first) is decoded.
    try:
        frames = reading["frames"]()
        judge.metadata["keyframes_decoded"] = reading["keyframes"]()
    except (FfmpegError, OSError) as error:
        judge.fail(f"video_final.mp4: does not decode ({str(error).splitlines()[0][:160]})")
        return judge.outcome("")
    judge.metadata["frames"] = frames
    if frames != expected_frames:
        judge.fail(f"video_final.mp4: {frames} frames, expected {expected_frames}")
    if not info["audio_codec"]:
        judge.fail("video_final.mp4: no audio track")
        return judge.outcome("")
    audio = reading["audio"]()
    seconds = len(audio) / rate
    judge.metadata["audio_sec"] = round(seconds, 4)
    if abs(seconds - plan.runtime_sec) > 1.0 / plan.fps:
        judge.fail(f"video_final.mp4: audio lasts {seconds:.3f}s, runtime {plan.runtime_sec}s (more than a frame off)")
    dialogue = reading["dialogue"]()
    lag, correlation = analysis.best_lag(dialogue, audio, rate)
    judge.metadata.update(audio_lag_s=round(lag, 4), audio_correlation=round(correlation, 4))
    if abs(lag) > MAX_AUDIO_LAG_S or correlation < MIN_AUDIO_CORRELATION:
        judge.fail(f"video_final.mp4: audio is not the dialogue track in time (offset {lag * 1000:+.0f} ms, "
                   f"correlation {correlation:.2f}; allowed {MAX_AUDIO_LAG_S * 1000:.0f} ms, {MIN_AUDIO_CORRELATION})")
    target = float(alignment.get("loudness", {}).get("target_lufs", target_loudness()))
    measured = reading["loudness"]()
    judge.metadata.update(integrated_lufs=measured["integrated_lufs"], true_peak_dbtp=measured["true_peak_dbtp"],
                          target_lufs=target, true_peak_limit_dbtp=TRUE_PEAK_LIMIT_DBTP)
    if abs(measured["integrated_lufs"] - target) > LOUDNESS_TOLERANCE_LU:
        judge.fail(f"video_final.mp4: integrated loudness {measured['integrated_lufs']} LUFS, target {target} "
                   f"+/- {LOUDNESS_TOLERANCE_LU} LU")
    if measured["true_peak_dbtp"] > TRUE_PEAK_LIMIT_DBTP + TRUE_PEAK_TOLERANCE_DB:
        judge.fail(f"video_final.mp4: true peak {measured['true_peak_dbtp']} dBTP above {TRUE_PEAK_LIMIT_DBTP} dBTP")
    talking = [window for window in alignment.get("windows", [])]
    backend = alignment.get("backend", "")
    lipsync_configured = backend not in ("", "passthrough")
    judge.metadata.update(lipsync_backend=backend, lipsync_configured=lipsync_configured,
                          lipsync_applied=bool(alignment.get("lipsync_applied")), talking_windows=len(talking),
                          lipsync_changed_frames=len(alignment.get("changed_frames", [])))
    if lipsync_configured and talking and not alignment.get("lipsync_applied"):
        judge.fail(f"video_final.mp4: {backend} is configured but lipsync was not applied to "
                   f"{', '.join(sorted({w['shot_id'] for w in talking}))}")
    return judge.outcome(f"{frames} frames and {seconds:.3f}s of dialogue at {measured['integrated_lufs']} LUFS")


# ---------------------------------------------------------------------- the checks, by stage

CHECKS: tuple[tuple[str, str, Callable[[ArtifactStore, str], CheckOutcome]], ...] = (
    ("movie_plan", "plan_invariants", check_plan),
    ("base_images", "keyframes_sound", check_keyframes),
    ("video_clips", "clips_sound", check_clips),
    ("dialogue_audio", "dialogue_sound", check_dialogue),
    ("video_final", "final_sound", check_final),
)


def evaluate(asset: str, name: str, store: ArtifactStore, run_id: str) -> CheckOutcome:
    """Run one check; a file it cannot read is a failure that names the file, never an exception."""
    for key, check_name, check in CHECKS:
        if (key, check_name) == (asset, name):
            try:
                return check(store, run_id)
            except (OSError, ValueError, KeyError, FfmpegError) as error:
                message = f"{asset}: {type(error).__name__}: {error}"
                return CheckOutcome(asset, name, False, message, {"failures": [message]}, [message])
    raise KeyError(f"no check {asset}/{name}")
