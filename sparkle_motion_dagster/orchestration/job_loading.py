"""The film jobs as the steps' processes load them again: a job of the definitions, or the part
of it that some stages make.

Executors that run steps apart (a process per step, Celery workers) rebuild the job in each step's
process from a pointer (:func:`dagster.build_reconstructable_job` to :func:`film_job` and its
arguments), so the part of the job a run executes must be built the same way everywhere: here.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

MODULE = __name__
# The jobs that evaluate the quality checks of the stages they run (a dry run checks nothing).
JOBS_WITH_CHECKS = ("film",)


def job_for(defs: dg.Definitions, job_name: str, stages: Sequence[str] | None = None) -> dg.JobDefinition:
    """The job ``job_name``, or only the assets ``stages`` of it with the job's own checks of those
    assets and of the stages they read (a failed blocking check of an input stops the stage; the
    film job leaves the review gate out: it runs when a person has reviewed)."""
    from sparkle_motion_dagster import stages as stage_table

    job = defs.resolve_job_def(job_name)
    if stages is None:
        return job
    selection = {dg.AssetKey(stage) for stage in stages}
    judged = selection | {dg.AssetKey(dep) for stage in stages for dep in stage_table.stage(stage).deps}
    checks = {key for key in job.asset_layer.asset_graph.asset_check_keys
              if key.asset_key in judged and job_name in JOBS_WITH_CHECKS}
    return job.get_subset(asset_selection=selection, asset_check_selection=checks)


def film_job(job_name: str = "film", stages: list[str] | None = None) -> dg.JobDefinition:
    """The reconstructor every step's process calls: the job from the code location's definitions."""
    from sparkle_motion_dagster.definitions import defs

    return job_for(defs, job_name, stages)


def reconstructable_job(job_name: str, stages: Sequence[str] | None = None):
    """A pointer to :func:`film_job` with these arguments, which :func:`dagster.execute_job` and
    each step's process follow to load the same job."""
    return dg.build_reconstructable_job(MODULE, film_job.__name__, reconstructable_kwargs={
        "job_name": job_name, "stages": list(stages) if stages is not None else None})
