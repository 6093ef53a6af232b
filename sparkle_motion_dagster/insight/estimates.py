"""What a film will cost before it is rendered: wall time and peak memory per stage and in total.

After every whole film this installation records, per stage, how many units of work it did
(keyframes, frames of clip, seconds of speech, seconds of lipsync) at which size, on which
backend and device, how long that took and its peak memory, and the film's fixed overhead
(process and Dagster bookkeeping: the film's time less its stages' time). An estimate fits
``seconds = fixed + rate x units x pixels`` to the closest measurements (same backend and
device; the same size and steps when there are some). Where there is no history for a real
model it scales a figure measured on a GPU by frames (as the model generates them: chained
segments and first-last-frame guides), pixels and steps, by the card's speed and by the
placement's slowdown, and says so: this installation's ``bench/gpu.py`` figures when there are
some (``benchmark``), else a published one (``published_figures.py``). Each stage's figure
carries its ``basis``: ``history``, ``benchmark``, ``published`` or ``none``; a GPU model's peak
memory is its memory plan's for the placement it would use (``peak_basis``).

The history lives in ``<artifact root>/estimates/history.json`` (replaced atomically, under a
lock). Dagster-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import statistics
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.insight import published_figures
from sparkle_motion_dagster.store.storage import atomic_write_json

HISTORY = Path("estimates") / "history.json"
MAX_ENTRIES = 500
RECENT = 20  # measurements per stage an estimate fits at most (the newest)
OVERHEAD_RECENT = 5
# stage -> (its unit of work, whether its cost grows with the frame's pixels), from the stage table
UNITS: dict[str, tuple[str, bool]] = {s.key: (s.work_unit, s.cost_grows_with_pixels) for s in stages.STAGES}
# resource key -> the stages it serves (the keyframe model draws portraits and keyframes)
RESOURCE_STAGES = {resource: [s.key for s in stages.STAGES if s.resource == resource]
                   for resource in dict.fromkeys(s.resource for s in stages.STAGES if s.resource)}
# What to set when a model's estimated peak memory does not fit, per backend.
FITTING_PRESETS = {
    "wan-2.1": "VIDEOS_WAN_DEVICE_PRESET=cuda-offload (each sub-model on the GPU only while it runs)",
    "sdxl": "IMAGES_SDXL_CPU_OFFLOAD=1 and IMAGES_SDXL_DTYPE=float16",
    "wav2lip": "WAV2LIP_DTYPE=float16 and a smaller WAV2LIP_BATCH_SIZE",
    "vits": "TTS_VITS_DEVICE=cpu",
}
BUDGET_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*\Z", re.IGNORECASE)


# --- what a plan asks for -----------------------------------------------------------

def plan_units(plan) -> dict[str, float]:
    """Units of work per stage for a MoviePlan."""
    from sparkle_motion_dagster.film.timeline import shot_frame_counts

    frames = sum(shot_frame_counts([s.duration_sec for s in plan.shots], plan.fps))
    amounts = {
        "run": 1,
        "second of speech": round(sum(entry.duration_sec for _, entry in plan.dialogue_lines()), 6),
        "keyframe": len(plan.base_images),
        "character": sum(1 for c in plan.characters if not c.reference_image),
        "frame": frames,
        "second of film": plan.runtime_sec,
    }
    return {stage: amounts[unit] for stage, (unit, _) in UNITS.items()}


def backends_of(resources: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stage: the backend, device, steps and settings of the configured resources (resource key ->
    resource). A real model's device (and a video model's continuity mode) is resolved without loading it."""
    from sparkle_motion_dagster.insight.provenance import model_provenance

    found: dict[str, dict[str, Any]] = {}
    for key, resource in resources.items():
        if resource is None or key not in RESOURCE_STAGES:
            continue
        described = model_provenance(resource)
        settings = described.get("settings") or {}
        for stage in RESOURCE_STAGES[key]:
            found[stage] = {"backend": described["backend"], "device": described.get("device") or "cpu",
                            "steps": settings.get("steps"), "settings": settings}
            if described["backend"] == "wan-2.1":
                with contextlib.suppress(Exception):
                    found[stage]["continuity_mode"] = resource.runtime()["continuity_mode"]
    return found


# --- memory ---------------------------------------------------------------------------

class MemoryWatch:
    """Peak memory of this process between :meth:`reset` and :meth:`peak`: resident memory (Linux's
    high-water mark, reset through ``/proc/self/clear_refs``) and, when torch has CUDA in use, the
    CUDA allocator's peak."""

    def reset(self) -> None:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        cuda = _cuda()
        if cuda is not None:
            with contextlib.suppress(Exception):
                cuda.reset_peak_memory_stats()

    def peak(self) -> dict[str, int | None]:
        rss = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) * 1024
        cuda, used = _cuda(), None
        if cuda is not None:
            with contextlib.suppress(Exception):
                used = int(cuda.max_memory_allocated()) or None
        return {"rss": rss, "cuda": used}


def _cuda():
    """torch.cuda when this process already uses it (never imports torch)."""
    torch = sys.modules.get("torch")
    try:
        return torch.cuda if torch is not None and torch.cuda.is_initialized() else None
    except Exception:  # noqa: BLE001 - a broken CUDA setup only means no CUDA figure
        return None


def free_memory(device: str) -> int | None:
    """Free memory of a device in bytes: a CUDA device's (torch, when installed), else the machine's
    available memory. None when it cannot be told."""
    if str(device).startswith("cuda"):
        try:
            import torch

            if not torch.cuda.is_available():
                return None
            match = re.match(r"cuda:(\d+)", str(device))
            return int(torch.cuda.mem_get_info(int(match.group(1)) if match else 0)[0])
        except Exception:  # noqa: BLE001
            return None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


# --- history -------------------------------------------------------------------------

def history_path(root: Path) -> Path:
    return Path(root) / HISTORY


def read_history(root: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(history_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data.get("films", []) if isinstance(data, dict) else []


def record_film(root: Path, *, run_id: str, plan, backends: Mapping[str, Mapping[str, Any]],
                stage_seconds: Mapping[str, float], peaks: Mapping[str, Mapping[str, int | None]],
                film_seconds: float) -> dict[str, Any]:
    """Add one whole film's measurements to the history (kept to the newest ``MAX_ENTRIES``)."""
    from sparkle_motion_dagster.store.run_files import output_size

    units = plan_units(plan)
    width, height = output_size(plan)
    measured = {}
    for stage, seconds in stage_seconds.items():
        if stage not in UNITS:
            continue
        backend = backends.get(stage, {})
        peak = peaks.get(stage, {})
        measured[stage] = {"backend": backend.get("backend"), "device": backend.get("device", "cpu"),
                           "steps": backend.get("steps"), "units": units[stage], "unit": UNITS[stage][0],
                           "seconds": round(seconds, 4), "peak_rss_bytes": peak.get("rss"),
                           "peak_cuda_bytes": peak.get("cuda")}
    entry = {"run_id": run_id, "recorded_at": datetime.now(timezone.utc).isoformat(), "size": [width, height],
             "film_seconds": round(film_seconds, 4),
             "overhead_seconds": round(max(0.0, film_seconds - sum(stage_seconds.values())), 4),
             "stages": measured}
    path = history_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # one entry per film: a later measurement of the same run (the CLI's, with its overhead) replaces it
            films = [*(f for f in read_history(root) if f.get("run_id") != run_id), entry][-MAX_ENTRIES:]
            atomic_write_json(path, {"films": films})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return entry


# --- the estimate -----------------------------------------------------------------------

SIZE_EXPONENTS = tuple(i / 8 for i in range(13))  # how a stage's time may grow with pixels: pixels ** 0 ... 1.5


def _work(stage: str, units: float, size: tuple[int, int], steps: int | None, exponent: float = 1.0) -> float:
    """The amount of work a stage's time is proportional to: units, times pixels (to ``exponent``)
    where size matters, times steps."""
    scaled = units * ((size[0] * size[1]) ** exponent if UNITS[stage][1] else 1)
    return scaled * (steps or 1)


def _size_exponent(stage: str, chosen: list[tuple[dict, dict]]) -> float:
    """How the stage's time grows with pixels, fitted when the measurements span several sizes (the
    exponent with the least squared error); 1 (proportional, as for a model's compute) otherwise."""
    if not UNITS[stage][1] or len({tuple(film["size"]) for film, _ in chosen}) < 2:
        return 1.0

    def error(exponent: float) -> float:
        points = [(_work(stage, m["units"], tuple(film["size"]), m.get("steps"), exponent), m["seconds"])
                  for film, m in chosen]
        predict = _fit(points)
        return sum((predict(x) - y) ** 2 for x, y in points)

    return min(SIZE_EXPONENTS, key=error)


def _fit(points: list[tuple[float, float]]) -> Callable[[float], float]:
    """``seconds = fixed + rate x work`` through the points (least squares, neither negative); a single
    work amount scales in proportion."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if len(set(xs)) < 2:
        x0, y0 = xs[0], statistics.fmean(ys)
        return (lambda x: y0 * x / x0) if x0 > 0 else (lambda x: y0)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    rate = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    if rate < 0:
        return lambda x: my
    fixed = my - rate * mx
    if fixed < 0:
        rate = sum(x * y for x, y in points) / sum(x * x for x in xs)
        return lambda x: rate * x
    return lambda x: fixed + rate * x


def _from_history(stage: str, units: float, size: tuple[int, int], backend: Mapping[str, Any],
                  history: list[dict[str, Any]]) -> dict[str, Any] | None:
    matching = [(film, film["stages"][stage]) for film in history if stage in film.get("stages", {})
                and film["stages"][stage].get("backend") == backend.get("backend")
                and film["stages"][stage].get("device") == backend.get("device", "cpu")]
    if not matching:
        return None
    closest = [m for m in matching if (not UNITS[stage][1] or tuple(m[0]["size"]) == tuple(size))
               and m[1].get("steps") == backend.get("steps")]
    if len(closest) < 2 and len(matching) > len(closest):
        closest = []  # one film at this size says less than several at others (with how size matters)
    chosen = (closest or matching)[-RECENT:]
    exponent = 1.0 if closest else _size_exponent(stage, chosen)
    points = [(_work(stage, m["units"], tuple(film["size"]), m.get("steps"), exponent), m["seconds"])
              for film, m in chosen]
    seconds = max(0.0, _fit(points)(_work(stage, units, size, backend.get("steps"), exponent)))
    memory_key = "peak_cuda_bytes" if str(backend.get("device", "cpu")).startswith("cuda") else "peak_rss_bytes"
    peaks = [m[memory_key] for _, m in chosen if m.get(memory_key)]
    return {"seconds": round(seconds, 3), "peak_memory_bytes": max(peaks) if peaks else None, "basis": "history",
            "measurements": len(chosen), "same_size": bool(closest)}


def _from_published(stage: str, units: float, size: tuple[int, int], fps: float,
                    backend: Mapping[str, Any], memory: Any = None, card: Any = None,
                    measured: list[dict] | None = None) -> dict[str, Any] | None:
    """A published figure scaled by frames (as generated), pixels and steps; by the card's speed where
    both cards are known; by the placement's slowdown. Its peak is the memory plan's, else the figure's
    own where the placement is the one it was measured with (everything resident)."""
    from sparkle_motion_dagster.insight.gpu_estimates import card_speed_factor

    name = backend.get("backend") or ""
    settings = backend.get("settings") or {}
    pixels = size[0] * size[1]
    if settings.get("max_pixels"):
        pixels = min(pixels, int(settings["max_pixels"]))
    figure = published_figures.nearest(name, pixels, measured)
    if figure is None:
        return None
    frames = units
    if backend.get("generated_frames"):
        frames = backend["generated_frames"]  # segments and guides, as the model makes them
    elif stage == "video_clips" and settings.get("gen_fps") and fps:
        frames = units * float(settings["gen_fps"]) / fps  # Wan generates at its own frame rate
    scale = (frames / figure["frames"]) * (pixels / (figure["width"] * figure["height"]))
    if backend.get("steps") and figure.get("steps"):
        scale *= backend["steps"] / figure["steps"]
    found = {"basis": "benchmark" if figure.get("benchmark") else "published", "source": figure["source"],
             "measured_on": figure["device"]}
    speed = card_speed_factor(figure.get("card"), card)
    if speed is not None:
        scale *= speed
        found["scaled_to"] = f"{card.name} ({speed:.2f}x the time, by 16-bit TFLOPS)"
    if memory is not None:
        scale *= memory.slowdown
        found.update(peak_memory_bytes=memory.predicted_peak_bytes, peak_basis="memory plan", placement=memory.label)
    elif str(backend.get("device", "")).endswith("offload"):
        found.update(peak_memory_bytes=None, peak_basis="none: the published peak is for everything resident")
    elif str(backend.get("device", "cpu")) == "cpu":
        found.update(peak_memory_bytes=None, peak_basis="none: the published peak is a GPU's, this runs on the CPU")
    else:
        found.update(peak_memory_bytes=figure["peak_memory_bytes"], peak_basis="published")
    if backend.get("generated_frames"):
        found.update(generated_frames=backend["generated_frames"], generations=backend["generations"])
    return {"seconds": round(figure["seconds"] * scale, 3), **found}


def parse_budget(text: str | None) -> float | None:
    """``30m``, ``90s``, ``1.5h`` or plain seconds -> seconds; a clear error for anything else."""
    if text is None or not str(text).strip():
        return None
    match = BUDGET_PATTERN.match(str(text))
    if not match:
        raise ValueError(f"budget: {text!r} is not a duration; expected e.g. 90s, 30m or 1.5h")
    unit = (match.group(2) or "s").lower()[0]
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]


def estimate(plan, backends: Mapping[str, Mapping[str, Any]], history: list[dict[str, Any]], *,
             budget_seconds: float | None = None,
             free: Callable[[str], int | None] | None = None,
             memory_plans: Mapping[str, Any] | None = None, card: Any = None,
             benchmarks: Mapping[str, list[dict]] | None = None) -> dict[str, Any]:
    """Per stage and in total: estimated seconds and peak memory with their basis, and the warnings
    (a stage's peak above its device's free memory, the total above ``budget_seconds``).

    ``memory_plans`` (stage -> MemoryPlan) give a GPU model's peak for its placement; ``card`` is a
    card this machine may not have (a pre-flight): its stages are timed from published figures
    scaled to it, never from this machine's history. ``benchmarks`` (backend -> figures measured by
    ``bench/gpu.py`` here) take the place of published figures."""
    from sparkle_motion_dagster.insight.gpu_estimates import generated_frames
    from sparkle_motion_dagster.store.run_files import output_size

    free = free or free_memory
    memory_plans = memory_plans or {}
    size = output_size(plan)
    units = plan_units(plan)
    estimated: dict[str, dict[str, Any]] = {}
    for stage in stages.STAGE_KEYS:
        backend = backends.get(stage, {"backend": None, "device": "cpu"})
        if backend.get("backend") == "wan-2.1" and "generated_frames" not in backend:
            backend = {**backend, **generated_frames(plan, backend.get("settings") or {},
                                                     backend.get("continuity_mode") == "first_last_frame")}
        memory = memory_plans.get(stage)
        from_history = None if (card is not None and memory is not None) else \
            _from_history(stage, units[stage], size, backend, history)
        figure = (from_history
                  or _from_published(stage, units[stage], size, plan.fps, backend, memory, card,
                                     (benchmarks or {}).get(backend.get("backend")))
                  or {"seconds": None, "peak_memory_bytes": None, "basis": "none"})
        if memory is not None and figure.get("basis") == "history":
            figure = {**figure, "peak_memory_bytes": memory.predicted_peak_bytes, "peak_basis": "memory plan",
                      "placement": memory.label}
        device = f"cuda ({memory.card})" if card is not None and memory is not None else backend.get("device", "cpu")
        estimated[stage] = {**figure, "backend": backend.get("backend"), "device": device,
                            "units": units[stage], "unit": UNITS[stage][0]}
    overheads = [film["overhead_seconds"] for film in history if "overhead_seconds" in film][-OVERHEAD_RECENT:]
    overhead = round(statistics.median(overheads), 3) if overheads else None
    known = [s["seconds"] for s in estimated.values() if s["seconds"] is not None]
    peaks = [s["peak_memory_bytes"] for s in estimated.values() if s["peak_memory_bytes"]]
    result = {
        "total_seconds": round(sum(known) + (overhead or 0.0), 3) if known else None,
        "peak_memory_bytes": max(peaks) if peaks else None,
        "overhead_seconds": overhead,
        "complete": all(s["seconds"] is not None for s in estimated.values()),
        "size": list(size),
        "stages": estimated,
        "warnings": [],
    }
    for stage, figure in estimated.items():
        memory = memory_plans.get(stage)
        if memory is not None:
            if not memory.fits:
                from sparkle_motion_dagster.insight.gpu_estimates import fit_hint

                result["warnings"].append({
                    "field": f"estimate.stages.{stage}", "kind": "memory",
                    "peak_memory_bytes": memory.predicted_peak_bytes, "free_memory_bytes": memory.free_bytes,
                    "message": f"{stage}: predicted peak {memory.predicted_peak_bytes / 2**30:.1f} GB at "
                               f"{memory.label} does not fit the {memory.free_bytes / 2**30:.1f} GB free on "
                               f"{memory.card}; try {fit_hint(memory, backends.get(stage, {}))}"})
            continue
        available = free(figure["device"]) if figure["peak_memory_bytes"] else None
        if available is not None and figure["peak_memory_bytes"] > available:
            fix = FITTING_PRESETS.get(figure["backend"], "a smaller --size")
            if str(figure["device"]) in fix:  # already set: the next step down
                fix = "VIDEOS_WAN_DEVICE_PRESET=cuda-group-offload, or auto (the memory plan chooses)"
            result["warnings"].append({
                "field": f"estimate.stages.{stage}", "kind": "memory",
                "peak_memory_bytes": figure["peak_memory_bytes"], "free_memory_bytes": available,
                "message": f"{stage}: estimated peak memory {_gb(figure['peak_memory_bytes'])} ({figure['basis']}) "
                           f"exceeds the {_gb(available)} free on {figure['device']}; try {fix}"})
    if budget_seconds is not None and result["total_seconds"] is not None and result["total_seconds"] > budget_seconds:
        result["warnings"].append({
            "field": "estimate.total_seconds", "kind": "budget", "total_seconds": result["total_seconds"],
            "budget_seconds": budget_seconds,
            "message": f"estimated film time {format_seconds(result['total_seconds'])} exceeds the budget "
                       f"of {format_seconds(budget_seconds)}"})
    missing = [stage for stage, figure in estimated.items() if figure["seconds"] is None]
    if missing:
        result["note"] = (f"no history or published figure for {', '.join(missing)}: the total leaves them out; "
                          "it improves after the first film with these backends")
    return result


def estimate_for_run(root: Path, plan, resources: Mapping[str, Any], *, budget: str | None = None,
                     card: Any = None) -> dict[str, Any]:
    """The estimate for a plan with the configured resources (resource key -> resource) and this
    installation's history under ``root``; on ``card`` (a pre-flight) when given, else this machine's
    GPU. With a card, ``gpu`` answers whether and how each stage fits it."""
    from sparkle_motion_dagster.insight.gpu_estimates import generated_frames, memory_plans, preflight

    backends = backends_of(resources)
    clips = backends.get("video_clips", {})
    if clips.get("backend") == "wan-2.1":
        clips.update(generated_frames(plan, clips.get("settings") or {},
                                      clips.get("continuity_mode") == "first_last_frame"))
    plans = memory_plans(plan, resources, backends, card=card)
    benchmarks = {b["backend"]: published_figures.benchmarked(history_path(root).parent, b["backend"],
                                                              plans[s].label if s in plans else None)
                  for s, b in backends.items() if b.get("backend")}
    result = estimate(plan, backends, read_history(root), budget_seconds=parse_budget(budget), memory_plans=plans,
                      card=card, benchmarks={k: v for k, v in benchmarks.items() if v})
    for stage, memory in plans.items():
        result["stages"][stage]["memory_plan"] = memory.summary()
    if card is not None:
        result["gpu"] = preflight(result, plans, card)
    return result


def time_left(estimated: Mapping[str, Any], done: set[str], running: str | None = None,
              running_for: float = 0.0) -> float | None:
    """Seconds left of a film from its estimate: the stages not done, less what the running one has
    spent already (never below zero), plus the fixed overhead's share still to come."""
    if not estimated or not estimated.get("stages"):
        return None
    left = 0.0
    for stage, figure in estimated["stages"].items():
        if stage in done or figure.get("seconds") is None:
            continue
        seconds = figure["seconds"]
        left += max(0.0, seconds - running_for) if stage == running else seconds
    overhead = estimated.get("overhead_seconds") or 0.0
    total = len(estimated["stages"]) or 1
    return round(left + overhead * (total - len(done)) / total, 1)


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def format_seconds(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
