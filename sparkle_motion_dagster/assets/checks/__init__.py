"""Automated quality checks, one partitioned asset check per stage (``film/quality.py`` measures).

Each check judges its stage's files for one film run (the partition) and carries the measured
values in its metadata. They are blocking checks: with ``QA_AUTOMATION_REMOVED=0`` a failure is an
ERROR and what depends on the stage does not run; with ``1`` (the default) it is a WARN and
the film goes on.
"""

import warnings

import dagster as dg

from sparkle_motion_dagster.film.quality import CHECKS, evaluate
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.insight.qa import check_severity, record_result


def _metadata_value(value):
    if isinstance(value, (list, dict)):
        return dg.MetadataValue.json(value)
    if value is None:
        return dg.MetadataValue.text("")
    return value


def _build(asset: str, name: str, doc: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, partitions_def=run_partitions, blocking=True, description=doc,
                    op_tags={"dagster-celery/queue": "cpu"})
    def quality_check(context: dg.AssetCheckExecutionContext, artifact_store: ArtifactStoreResource):
        run_id = context.partition_key
        store = artifact_store.store()
        outcome = evaluate(asset, name, store, run_id).as_dict()
        record_result(store, run_id, outcome)
        severity = dg.AssetCheckSeverity.ERROR if check_severity() == "ERROR" else dg.AssetCheckSeverity.WARN
        if not outcome["passed"]:
            context.log.warning(f"{run_id} {asset}/{name} failed: {outcome['description']}")
        return dg.AssetCheckResult(
            passed=outcome["passed"], severity=severity, description=outcome["description"][:2000],
            metadata={"run_id": run_id, **{key: _metadata_value(value) for key, value in outcome["metadata"].items()}})

    return quality_check


# A partitioned check is a preview in Dagster 1.13; the warning would print on every command.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    QA_CHECKS: list[dg.AssetChecksDefinition] = [_build(asset, name, check.__doc__ or "")
                                                 for asset, name, check in CHECKS]


def qa_check_keys(assets=None) -> set[dg.AssetCheckKey]:
    """The keys of the quality checks (of these asset keys only, when given)."""
    return {dg.AssetCheckKey(dg.AssetKey(asset), name) for asset, name, _ in CHECKS
            if assets is None or asset in assets}
