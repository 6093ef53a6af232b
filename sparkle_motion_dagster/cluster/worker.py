"""``sparkle-motion worker``: a Celery worker (dagster-celery's task) for this code location.

One worker per GPU: concurrency 1 on the ``gpu`` queue is what keeps a GPU to one step at a
time (the Celery executor does not apply Dagster's concurrency pools), with
``CUDA_VISIBLE_DEVICES`` pinned to its GPU. Prefetch 1 and late acknowledgement: a worker
holds one task at a time and a task whose worker dies goes back to the queue. The prefork
pool keeps its process between tasks, so a model loaded by one step (SDXL, Wan) is still
loaded for the next step on that worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

QUEUES = ("gpu", "cpu")


def parse_queues(text: str) -> list[str]:
    """``gpu``, ``cpu`` or ``gpu,cpu``; anything else is refused with the valid names."""
    queues = [q.strip() for q in text.split(",") if q.strip()]
    bad = [q for q in queues if q not in QUEUES]
    if not queues or bad:
        raise ValueError(f"--queues: {text!r}: expected gpu, cpu or gpu,cpu")
    return list(dict.fromkeys(queues))


def worker_argv(queues: Sequence[str], *, name: str, concurrency: int, loglevel: str = "INFO") -> list[str]:
    """The arguments of Celery's worker: the queues, one task at a time per process, the pool
    process kept (no max tasks per child), and events on so that monitors see the steps."""
    return ["worker", "-Q", ",".join(queues), "-n", name, f"--concurrency={concurrency}",
            "--prefetch-multiplier=1", "--pool=prefork", f"--loglevel={loglevel}", "--without-gossip",
            "--without-mingle", "-E"]


def default_name(queues: Sequence[str], gpu: int | None) -> str:
    queue = "+".join(queues)
    return f"{queue}{gpu if gpu is not None else ''}-{os.getpid()}@{socket.gethostname()}"


def prepare_environment(queues: Sequence[str], gpu: int | None) -> None:
    """What every step this worker runs must see: the Celery executor's graph (stages as
    several steps), and its GPU alone."""
    os.environ["SPARKLE_EXECUTOR"] = "celery"
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def check_view() -> dict:
    """The cluster marker when this box sees the runs' artifact root and storage (else raises
    :class:`~sparkle_motion_dagster.cluster.identity.ClusterMismatchError`)."""
    from sparkle_motion_dagster.cluster.identity import check_worker_view, storage_description
    from sparkle_motion_dagster.store.locations import _home_path, artifacts_root

    return check_worker_view(artifacts_root(), storage_description(
        os.environ.get("SPARKLE_POSTGRES_URL", "").strip(), _home_path()))


def celery_app(settings):
    """dagster-celery's app with the executor's settings and its step task registered: the app
    the executor makes from the same settings (retries travel with each task, not with the app)."""
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    from sparkle_motion_dagster.cluster.executors import celery_executor_config

    config = celery_executor_config(settings)
    app = make_app({"broker": config["broker"], "backend": config["backend"], "include": [],
                    "config_source": config["config_source"]})
    create_task(app)
    return app


def run_worker(queues: Sequence[str], *, gpu: int | None, name: str | None, concurrency: int | None) -> None:
    """Check the settings and what this box sees, then serve the queues until stopped."""
    from sparkle_motion_dagster.cluster.settings import ClusterSettings

    prepare_environment(queues, gpu)
    settings = ClusterSettings.from_env()
    check_view()
    if concurrency is None:
        concurrency = 1 if "gpu" in queues else 2
    if "gpu" in queues and concurrency != 1:
        raise ValueError("--concurrency: a worker on the gpu queue runs one step at a time (start one worker per GPU)")
    app = celery_app(settings)
    app.worker_main(worker_argv(queues, name=name or default_name(queues, gpu), concurrency=concurrency))
