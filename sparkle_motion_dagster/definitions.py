"""Everything Sparkle Motion runs, assembled once: assets, jobs, resources and the executor."""

import dagster as dg

from sparkle_motion_dagster.assets import film_assets
from sparkle_motion_dagster.assets.checks import QA_CHECKS
from sparkle_motion_dagster.assets.review_check import approved_by_reviewer
from sparkle_motion_dagster.cluster.executors import film_executor
from sparkle_motion_dagster.jobs.new_film import new_film_job
from sparkle_motion_dagster.orchestration.liveness import build_dead_runs_sensor
from sparkle_motion_dagster.orchestration.submission import DRY_RUN_CONFIG
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.selection import configured_resources
from sparkle_motion_dagster.resources.step_values import STEP_VALUES, StepValuesIOManager
from sparkle_motion_dagster.sensors import (
    build_new_film_backlink_sensor,
    build_new_film_sensor,
    build_plan_inbox_sensor,
)

FILM_ASSETS = film_assets()

film_job = dg.define_asset_job(
    "film",
    selection=dg.AssetSelection.assets(*FILM_ASSETS).without_checks() | dg.AssetSelection.checks(*QA_CHECKS),
    partitions_def=run_partitions,
    description="Make the whole film for one run_id: plan intake through the final video. "
                "A new film starts with the new_film job (paste a plan or give a prompt), or pick a run_id "
                "partition already submitted (`sparkle-motion submit`). To resume a failed or stopped film, "
                "launch this job again for its partition: finished items are reused and only what is missing "
                "or failed is rendered; to redo from a stage, select that asset and choose "
                "*Materialize selected and downstream* (`force: true` in its config renders it all again).",
)

qa_checks_job = dg.define_asset_job(
    "qa_checks",
    selection=dg.AssetSelection.checks(*QA_CHECKS),
    partitions_def=run_partitions,
    description="Evaluate every automated quality check on one film's files as they are on disk, rendering "
                "nothing (`sparkle-motion check RUN_ID`).",
)

plan_dry_run_job = dg.define_asset_job(
    "plan_dry_run",
    selection=dg.AssetSelection.assets("movie_plan").without_checks(),
    partitions_def=run_partitions,
    config=DRY_RUN_CONFIG,
    description="Plan intake only: validation report and warnings before paying for a render.",
)


defs = dg.Definitions(
    assets=FILM_ASSETS,
    asset_checks=[approved_by_reviewer, *QA_CHECKS],
    jobs=[film_job, new_film_job, plan_dry_run_job, qa_checks_job],
    sensors=[build_plan_inbox_sensor(film_job), build_new_film_sensor(new_film_job, film_job),
             build_new_film_backlink_sensor(film_job), build_dead_runs_sensor()],
    # The values between a rendering stage's steps (assets/shot_steps.py).
    resources={**configured_resources(), STEP_VALUES: StepValuesIOManager()},
    # SPARKLE_EXECUTOR: in process (the default), a process per step, or Celery workers.
    executor=film_executor(),
)
