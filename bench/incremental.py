"""What regenerating one shot costs against making the whole film.

A 10-shot plan (6 s shots, 1280x720, 24 fps) is filmed once; then one shot's
clip is regenerated with a new seed, which re-renders that clip and re-runs
assembly and the final cut while every other shot is reused. Both are timed
in this process, the same way, against one persistent SQLite Dagster home.
Prints ``regen_one_over_full``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def ten_shot_plan() -> dict:
    frames = [{"id": f"frame_{i:03d}", "prompt": f"Keyframe {i}: a city wakes, street {i}", "metadata": {"seed": 500 + i}}
              for i in range(11)]
    shots = [{"id": f"shot_{i + 1:03d}", "duration_sec": 6.0, "start_base_image_id": f"frame_{i:03d}",
              "end_base_image_id": f"frame_{i + 1:03d}", "motion_prompt": f"slow drift {i}"} for i in range(10)]
    lines = [{"type": "dialogue", "character_id": "ava" if i % 2 else "miko", "text": f"Line number {i}, said clearly.",
              "start_time_sec": 1.0 + 6 * i, "duration_sec": 3.0} for i in range(10)]
    return {"title": "Ten Shots", "characters": [{"id": "ava", "name": "Ava"}, {"id": "miko", "name": "Miko"}],
            "base_images": frames, "shots": shots, "dialogue_timeline": lines,
            "render_profile": {"video": {"model_id": "animatic", "max_fps": 24}}}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sparkle-bench-") as tmp:
        os.environ["SPARKLE_STATE_DIR"] = str(Path(tmp) / "state")
        os.environ.pop("DAGSTER_HOME", None)
        os.environ.pop("ARTIFACTS_FS_ROOT", None)
        from sparkle_motion_dagster.store.locations import ensure_dagster_home

        ensure_dagster_home()
        import dagster as dg

        from sparkle_motion_dagster.definitions import defs
        from sparkle_motion_dagster.orchestration.runner import film_run, submit_run
        from sparkle_motion_dagster.lifecycle.regenerate import plan_regeneration

        instance = dg.DagsterInstance.get()
        store = defs.resources["artifact_store"].store()
        run_id = submit_run(store, instance, ten_shot_plan(), source="bench", preview=False,
                            clip_model_ids=("animatic",), clip_backend="animatic")
        started = time.perf_counter()
        full = film_run(defs, instance, run_id, store=store)
        full_seconds = time.perf_counter() - started
        if not full.success:
            sys.exit(f"full run failed: {full.error}")

        started = time.perf_counter()
        change = plan_regeneration(store, run_id, "shot_005", what="clip", seed=None)
        regen = film_run(defs, instance, run_id, store=store, stages=change["stages"])
        regen_seconds = time.perf_counter() - started
        if not regen.success:
            sys.exit(f"regeneration failed: {regen.error}")
        instance.dispose()

    print("plan: 10 shots x 6 s, 1280x720 at 24 fps (1440 frames)")
    for stage, seconds in full.stage_seconds.items():
        print(f"full  {stage:<18} {seconds:6.2f} s")
    for stage, seconds in regen.stage_seconds.items():
        print(f"regen {stage:<18} {seconds:6.2f} s")
    print(f"full_seconds={full_seconds:.2f}")
    print(f"regen_one_seconds={regen_seconds:.2f}")
    print(f"regen_one_over_full={regen_seconds / full_seconds:.3f}")


if __name__ == "__main__":
    main()
