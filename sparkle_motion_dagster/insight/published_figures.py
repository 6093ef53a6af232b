"""Published speed and memory figures for real models, for estimates where this installation has
no history yet. Each figure says what it was measured on; estimates scale it by frames, pixels and
steps and label it ``basis: "published"``, never as a measurement of this machine. ``card`` names the
card (``resources/memory_plan.py``'s ``CARDS``) a time is scaled from for another card."""

from __future__ import annotations

from pathlib import Path

GB = 1_000_000_000

# backend -> figures (one per measured size). ``frames`` is per generation (a keyframe is 1).
FIGURES: dict[str, list[dict]] = {
    "wan-2.1": [
        {"model": "Wan2.1-I2V-14B-480P", "frames": 81, "width": 832, "height": 480, "steps": 40,
         "seconds": 366.0, "peak_memory_bytes": 71 * GB, "device": "NVIDIA H200 (bf16)", "card": "h200",
         "source": "LightX2V benchmark, 'Wan2.1 Official' baseline: 480P 5 s video, infer_steps=40, H200"},
        {"model": "Wan2.1-I2V-14B-720P", "frames": 81, "width": 1280, "height": 720, "steps": 40,
         "seconds": 974.0, "peak_memory_bytes": 81 * GB, "device": "NVIDIA H200 (bf16)", "card": "h200",
         "source": "LightX2V benchmark, 'Wan2.1 Official' baseline: 720P 5 s video, infer_steps=40, H200"},
    ],
    "sdxl": [
        {"model": "stable-diffusion-xl-base-1.0", "frames": 1, "width": 1024, "height": 1024, "steps": 30,
         "seconds": 2.5, "peak_memory_bytes": None, "device": "NVIDIA A100/H100 (bf16)", "card": "h100",
         "source": "plain diffusers SDXL, 1024x1024, 30 steps: about 2.5 s on an A100-class GPU in bf16 "
                   "(the figure this README's benchmark notes cite for an H100)"},
    ],
}


BENCH_FILE = "gpu_bench.json"  # what bench/gpu.py writes under <artifact root>/estimates/


def nearest(backend: str, pixels: int, measured: list[dict] | None = None) -> dict | None:
    """The figure for ``backend`` measured at the size closest to ``pixels``: one of ``measured``
    (this installation's ``bench/gpu.py`` figures) when there are any, else a published one."""
    figures = measured or FIGURES.get(backend)
    if not figures:
        return None
    return min(figures, key=lambda f: abs(f["width"] * f["height"] - pixels))


def benchmarked(estimates_folder: Path, backend: str, placement: str | None = None) -> list[dict]:
    """Figures ``bench/gpu.py`` measured on this installation's card for ``backend`` (the given
    placement's where it measured that one), in the form of :data:`FIGURES`."""
    import json

    try:
        report = json.loads((Path(estimates_folder) / BENCH_FILE).read_text())
    except (OSError, ValueError):
        return []
    rows = [r for r in report.get("results", []) if r.get("backend") == backend and r.get("seconds")]
    same = [r for r in rows if placement and r.get("placement") == placement]
    return [{"model": backend, "frames": r["frames"], "width": r["width"], "height": r["height"],
             "steps": r["steps"], "seconds": r["seconds"], "peak_memory_bytes": r.get("peak_allocated_bytes"),
             "device": f"{report.get('card')} ({r['placement']})", "card": report.get("card_key"),
             "benchmark": True,
             "source": f"bench/gpu.py on {report.get('card')}, {r['placement']}, {report.get('measured_at', '')[:10]}"}
            for r in (same or rows)]
