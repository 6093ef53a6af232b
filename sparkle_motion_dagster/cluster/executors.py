"""The executor of every film job, chosen once from ``SPARKLE_EXECUTOR`` (see
:mod:`sparkle_motion_dagster.cluster.settings`), and the Celery settings that the executor
and ``sparkle-motion worker`` share (they must agree, or workers never see the tasks)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from sparkle_motion_dagster.cluster.settings import ClusterSettings


def celery_config_source(redeliver_seconds: int) -> dict[str, Any]:
    """Celery settings of the executor and the workers: one task at a time per worker,
    acknowledged only when it ends (a worker that dies mid-step hands it back), and the
    pool process kept between tasks (so a model loads once per worker).

    A task whose worker died (kill -9, a lost box) goes back to the queue after
    ``redeliver_seconds`` (SPARKLE_CELERY_REDELIVER_S), for another worker. It must be longer
    than the longest step: a step still running past it would be handed to a second worker."""
    return {
        "worker_prefetch_multiplier": 1,
        # Steps without a queue tag (new_film, the review gate) go to the cpu workers.
        "task_default_queue": "cpu",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_max_tasks_per_child": None,
        "broker_connection_retry_on_startup": True,
        # Workers sweep for tasks of dead workers every few seconds (every 100 s by default).
        "broker_transport_options": {"visibility_timeout": redeliver_seconds,
                                     "unacked_restore_interval": max(1, min(10, redeliver_seconds // 5)),
                                     "unacked_restore_throttle": 1, "max_retries": 3,
                                     "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        "result_expires": 7 * 24 * 3600,
    }


def celery_executor_config(settings: ClusterSettings) -> dict[str, Any]:
    return {"broker": settings.broker, "backend": settings.result_backend,
            "config_source": celery_config_source(settings.redeliver_seconds)}


def film_executor(settings: ClusterSettings | None = None) -> dg.ExecutorDefinition:
    """The executor of the film jobs: in process (the default), a process per step, or Celery."""
    settings = settings or ClusterSettings.from_env()
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_executor_config(settings), name="celery")
    # One process per film run: a process per step costs ~1.7 s here and models load once per process.
    return dg.in_process_executor
