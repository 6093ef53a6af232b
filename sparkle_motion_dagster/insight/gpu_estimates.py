"""What estimates need to know about the GPU models: the generations a video model really makes
(segments and first-last-frame guides, not output frames), how a card's speed and a placement
scale a published time, the memory plan of each configured model for a film, and the pre-flight
for a card this machine may not have (``sparkle-motion run --mode dry --gpu NAME_OR_GB``).

Dagster-free; memory plans come from ``resources/memory_plan.py`` (configs only, no weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Stage -> how its model is planned: the video model at the film's largest shot, keyframes at the film's size.
PLANNED_STAGES = {"base_images": "keyframes", "video_clips": "clips"}


def generated_frames(plan, settings: Mapping[str, Any], first_last_frame: bool) -> dict[str, int]:
    """Frames and generations a Wan-style video model makes for the film's shots: each shot's
    chained segments (their seam frames counted in each) and, for a first-last-frame model, the
    guide generation of every shot longer than one generation."""
    from sparkle_motion_dagster.film.timeline import shot_frame_counts
    from sparkle_motion_dagster.resources.clips.wan import segment_lengths

    gen_fps = float(settings.get("gen_fps") or 16)
    max_frames = int(settings.get("max_frames_per_generation") or 81)
    frames = generations = largest = 0
    for count in shot_frame_counts([s.duration_sec for s in plan.shots], plan.fps):
        lengths = segment_lengths(count, plan.fps, gen_fps, max_frames)
        frames += sum(lengths)
        generations += len(lengths)
        largest = max(largest, *lengths)
        if first_last_frame and len(lengths) > 1:
            frames += max_frames
            generations += 1
            largest = max(largest, max_frames)
    return {"generated_frames": frames, "generations": generations, "largest_generation": largest}


def card_speed_factor(measured_on: str | None, card) -> float | None:
    """How many times longer a figure measured on the card ``measured_on`` (a ``CARDS`` key) takes
    on ``card``, from their dense 16-bit TFLOPS; None when either is unknown."""
    from sparkle_motion_dagster.resources.memory_plan import CARDS

    source = CARDS.get(measured_on or "", {}).get("tflops")
    if card is None or not source or not card.tflops:
        return None
    return source / card.tflops


def memory_plans(plan, resources: Mapping[str, Any], backends: Mapping[str, Mapping[str, Any]], *,
                 card=None) -> dict[str, Any]:
    """Per planned stage, the memory plan of its configured model for this film on ``card`` (this
    machine's GPU when None; no plan without one). A model whose configs cannot be read has none."""
    from sparkle_motion_dagster.resources.memory_plan import plan_for_resource
    from sparkle_motion_dagster.store.run_files import output_size

    width, height = output_size(plan)
    plans = {}
    for stage, key in PLANNED_STAGES.items():
        resource = resources.get(key)
        if resource is None:
            continue
        frames = backends.get(stage, {}).get("largest_generation") or 81
        try:
            found = plan_for_resource(resource, width=width, height=height, frames=frames,
                                      fps=float(backends.get(stage, {}).get("settings", {}).get("gen_fps") or 16),
                                      card=card)
        except Exception:  # noqa: BLE001 - no configs: the estimate falls back to published figures
            found = None
        if found is not None:
            plans[stage] = found
    return plans


def fit_hint(memory_plan, backend: Mapping[str, Any]) -> str:
    """What to change when a stage's plan does not fit: never the setting already in force."""
    name = backend.get("backend")
    if memory_plan.chosen_by != "auto":
        variable = "VIDEOS_WAN_DEVICE_PRESET" if name == "wan-2.1" else "IMAGES_SDXL_CPU_OFFLOAD"
        return f"{variable}=auto (or unset) to let the memory plan choose a placement that fits"
    if name == "wan-2.1":
        return "a smaller VIDEOS_WAN_MAX_PIXELS or VIDEOS_WAN_MAX_FRAMES: no placement fits even with group offload"
    return "a smaller IMAGES_SDXL_MAX_PIXELS"


def preflight(estimated: Mapping[str, Any], plans: Mapping[str, Any], card) -> dict[str, Any]:
    """The ``estimate.gpu`` answer for a card: per stage the placement, predicted peak (GB), whether
    it fits and seconds; for the film whether every stage fits, the largest peak and the total."""
    from sparkle_motion_dagster.resources.memory_plan import gb

    rows = {}
    for stage, figure in estimated["stages"].items():
        memory = plans.get(stage)
        rows[stage] = {
            "placement": memory.label if memory is not None else figure.get("device") or "cpu",
            "peak_gb": gb(memory.predicted_peak_bytes) if memory is not None else 0.0,
            "fits": memory.fits if memory is not None else True,
            "seconds": figure.get("seconds"),
            "basis": figure.get("basis"),
        }
    known = [row["seconds"] for row in rows.values() if row["seconds"] is not None]
    return {
        "name": card.name,
        "memory_gb": card.memory_gb,
        "fits": all(row["fits"] for row in rows.values()),
        "peak_gb": max((row["peak_gb"] for row in rows.values()), default=0.0),
        "total_seconds": estimated.get("total_seconds") if known else None,
        "complete": all(row["seconds"] is not None for row in rows.values()),
        "stages": rows,
    }
