"""The final cut's arithmetic: where lipsync has work to do, and which frame shows the film."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparkle_motion_dagster.film.plan import MoviePlan
from sparkle_motion_dagster.film.quality import NORMALISER_TRUE_PEAK_DBTP, target_loudness
from sparkle_motion_dagster.media.analysis import normalise_loudness


def lipsync_windows(plan: MoviePlan, line_artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dialogue intervals (as measured on the stitched track) that fall on talking-closeup shots."""
    shots, clock = [], 0.0
    for shot in plan.shots:
        shots.append((shot, clock, clock + shot.duration_sec))
        clock += shot.duration_sec
    windows = []
    for line in line_artifacts:
        for shot, start, end in shots:
            lo, hi = max(start, line["start_time_actual_s"]), min(end, line["end_time_actual_s"])
            if shot.is_talking_closeup and hi > lo:
                windows.append({"line_id": line["line_id"], "shot_id": shot.id,
                                "start_s": round(lo, 6), "end_s": round(hi, 6)})
    return windows


def lipsync_shots(plan: MoviePlan, assembly_plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Each shot's frame range in the master and whether it is a talking closeup.

    Frame ranges come from the clips the master was joined from (their real
    frame counts, from ``assembly_plan.json``), the talking-closeup flags from the plan.
    """
    talking = {shot.id: bool(shot.is_talking_closeup) for shot in plan.shots}
    shots, start = [], 0
    for clip in assembly_plan["clips"]:
        shots.append({"shot_id": clip["shot_id"], "start_frame": start, "num_frames": int(clip["num_frames"]),
                      "is_talking_closeup": talking.get(clip["shot_id"], False), "clip_path": clip.get("path")})
        start += int(clip["num_frames"])
    return shots


def middle_shot_start_sec(assembly_plan: dict[str, Any]) -> float:
    """Where the middle shot begins. Every clip starts with a keyframe, so a decoder reads a
    single frame there, where a frame mid-shot would cost decoding the shot up to it."""
    clips = assembly_plan["clips"]
    frames_before = sum(clip["num_frames"] for clip in clips[:len(clips) // 2])
    return frames_before / assembly_plan["fps"]


NORMALISED_FROM = "normalised_from"
"""The fact kept with the normalised mix: what it was made from and what was measured."""


def normalised_dialogue_once(track: Path, out_path: Path, *, sample_rate: int) -> dict[str, Any]:
    """:func:`normalised_dialogue` written atomically to ``out_path``, unless ``out_path`` is still the
    mix made from these very bytes of ``track`` for this target and rate (a regenerated shot leaves the
    dialogue as it was): then its measurements are returned and nothing is written."""
    from sparkle_motion_dagster.store import integrity
    from sparkle_motion_dagster.store.storage import atomic_output

    basis = {"track_sha256": integrity.file_record(track)["sha256"], "target_lufs": target_loudness(),
             "true_peak_db": NORMALISER_TRUE_PEAK_DBTP, "sample_rate": sample_rate}
    kept = integrity.remembered(out_path, NORMALISED_FROM) if out_path.is_file() else None
    if isinstance(kept, dict) and kept.get("basis") == basis:
        return kept["loudness"]
    with atomic_output(out_path) as temp:
        loudness = normalised_dialogue(track, temp, sample_rate=sample_rate)
    integrity.remember(out_path, NORMALISED_FROM, {"basis": basis, "loudness": loudness})
    return loudness


def normalised_dialogue(track: Path, out_path: Path, *, sample_rate: int) -> dict[str, Any]:
    """The dialogue track as the film plays it: EBU R128 loudness at ``SPARKLE_LOUDNESS_LUFS``
    (default -16 LUFS) with the true peak at most -1 dBTP once AAC-encoded (the normaliser aims a
    decibel lower, as AAC raises peaks): gain and a peak limiter, measured until on target. Returns the
    measurements before and after (what the alignment map records)."""
    return normalise_loudness(track, out_path, target_lufs=target_loudness(), true_peak_db=NORMALISER_TRUE_PEAK_DBTP,
                             sample_rate=sample_rate)
