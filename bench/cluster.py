"""An 8-shot film on one GPU-queue worker and on two, in the same run, on real Redis and
PostgreSQL (as tests/test_cluster.py starts them), plus the same film in process.

Prints ``two_workers_over_one`` (the film's time with two GPU workers over its time with
one: below 1 means the second GPU helped) and ``celery_step_overhead_ms``: what a step costs
on Celery beyond its own work, measured as (Celery film with one GPU worker - the same film
in process) / the number of Celery steps. On a 2-core machine the embedded animatic is
CPU-bound and the two workers share the cores, so the ratio is bounded by the CPU, not by
the GPUs a real cluster would add. Not a test: run it by hand (`python bench/cluster.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cluster_services import (  # noqa: E402
    Worker,
    missing_programs,
    postgres_server,
    redis_server,
    sparkle_motion,
)
from film_checks import small_plan  # noqa: E402
from helpers import wait_for  # noqa: E402

SHOTS = 8


def _film(env: dict, plan: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sparkle_motion(), "run", "--plan", str(plan)], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"film failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout.split()[1]


def _steps(env: dict, run_id: str) -> int:
    status = json.loads(subprocess.run([sparkle_motion(), "status", run_id, "--json"], env=env, capture_output=True,
                                       text=True, check=True).stdout)
    return sum(len(stage["steps"]) for stage in status["stages"])


def _start_workers(env: dict, folder: Path, names: list[tuple[str, str]]) -> list[Worker]:
    workers = [Worker(env, queues, name, folder / f"{name}.log") for name, queues in names]
    for worker in workers:
        wait_for(lambda: worker.ready() or worker.process.poll() is not None, f"worker {worker.name}")
        if not worker.ready():
            raise SystemExit(worker.log.read_text()[-3000:])
    return workers


def main() -> None:
    missing = missing_programs()
    if missing:
        raise SystemExit(f"bench/cluster.py needs Redis and PostgreSQL: {missing}")
    folder = Path(tempfile.mkdtemp(prefix="sparkle-bench-cluster-"))
    plan = small_plan(folder, shots=SHOTS, size=(160, 90))
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_INDEX", "DAGSTER_HOME"):
        base.pop(name, None)

    alone = {**base, "SPARKLE_EXECUTOR": "in_process", "SPARKLE_STATE_DIR": str(folder / "alone")}
    _film(alone, plan)  # the first film creates the instance's storage: not timed
    in_process, _ = _film(alone, _variant(plan, 1))

    with redis_server() as redis, postgres_server() as postgres:
        env = {**base, "SPARKLE_EXECUTOR": "celery", "SPARKLE_CELERY_BROKER": f"{redis}/0",
               "SPARKLE_CELERY_BACKEND": f"{redis}/1", "SPARKLE_POSTGRES_URL": postgres,
               "SPARKLE_STATE_DIR": str(folder / "cluster")}
        subprocess.run([sparkle_motion(), "paths", "--create"], env=env, capture_output=True, check=True)
        workers = _start_workers(env, folder, [("cpu", "cpu"), ("gpu0", "gpu")])
        try:
            _film(env, _variant(plan, 2))  # warms the workers (first imports in each pool process)
            one, run_id = _film(env, _variant(plan, 3))
            steps = _steps(env, run_id)
            workers += _start_workers(env, folder, [("gpu1", "gpu")])
            _film(env, _variant(plan, 4))  # warms the second GPU worker
            two, _ = _film(env, _variant(plan, 5))
        finally:
            for worker in workers:
                worker.stop()
            shutil.rmtree(folder, ignore_errors=True)
    print(f"shots={SHOTS} size=160x90")
    print(f"in_process_seconds={in_process:.2f}")
    print(f"one_gpu_worker_seconds={one:.2f}")
    print(f"two_gpu_workers_seconds={two:.2f}")
    print(f"celery_steps={steps}")
    print(f"two_workers_over_one={two / one:.2f}")
    print(f"celery_step_overhead_ms={(one - in_process) / steps * 1000:.0f}")


def _variant(plan: Path, number: int) -> Path:
    """The same film under another title, so that each film is a new run with nothing to reuse."""
    data = json.loads(plan.read_text())
    data["title"] = f"{data['title']} {number}"
    path = plan.with_name(f"plan_{number}.json")
    path.write_text(json.dumps(data))
    return path


if __name__ == "__main__":
    main()
