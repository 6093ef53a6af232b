"""`sparkle-motion worker`: serve a film's steps from this box (see README, "Outgrowing one machine")."""

from __future__ import annotations

import click


@click.command("worker")
@click.option("--queues", default="gpu", show_default=True, metavar="gpu|cpu|gpu,cpu",
              help="the Celery queues to serve: GPU stages (keyframes, clips, lipsync) go to gpu, the rest to cpu")
@click.option("--gpu", type=click.IntRange(min=0), default=None, metavar="N",
              help="the GPU this worker owns (sets CUDA_VISIBLE_DEVICES=N); start one worker per GPU")
@click.option("--name", default=None, help="the worker's name in the run's events and in status (NAME@host)")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="steps at once (always 1 on the gpu queue; default 2 on cpu alone)")
def worker(queues: str, gpu: int | None, name: str | None, concurrency: int | None) -> int:
    """Run a Celery worker for this code location (SPARKLE_CELERY_BROKER, SPARKLE_POSTGRES_URL,
    ARTIFACTS_FS_ROOT as on the box that owns the runs). It checks at start that it sees the
    same artifact root and Dagster storage as the runs, and keeps its process (and any model it
    loaded) between steps."""
    from sparkle_motion_dagster.cli.errors import CliError
    from sparkle_motion_dagster.cluster.identity import ClusterMismatchError
    from sparkle_motion_dagster.cluster.worker import parse_queues, run_worker

    chosen = parse_queues(queues)
    if name is not None and "@" not in name:
        name = f"{name}@%h"
    try:
        run_worker(chosen, gpu=gpu, name=name, concurrency=concurrency)
    except ClusterMismatchError as mismatch:
        raise CliError(f"worker not started: {mismatch}") from None
    return 0


COMMANDS = (worker,)
