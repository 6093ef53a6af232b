"""The manual review gate on the final video: a check of each film's partition."""

import warnings

import dagster as dg

from sparkle_motion_dagster.assets.video_final import video_final
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.insight.qa import qa_flags
from sparkle_motion_dagster.lifecycle.review import REVIEW_CHECK, review_state


def approved_by_reviewer(context: dg.AssetCheckExecutionContext, artifact_store: ArtifactStoreResource):
    """Passes only when the latest review of this film's final video approves it
    (`sparkle-motion review RUN_ID --approve --reviewer NAME`, which runs this check for the film's
    partition). While QA automation is removed (QA_AUTOMATION_REMOVED=1, the default) a failure is an
    error that blocks anything downstream; with 0 it is advisory. Re-run it for a film's partition
    from the UI after approving."""
    run_id = context.partition_key
    state = review_state(artifact_store.store(), run_id)
    flags = qa_flags()
    severity = dg.AssetCheckSeverity.ERROR if flags["manual_review_required"] else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=bool(state["ready_to_share"]),
        severity=severity,
        description=f"{run_id}: review {state['status']}" + ("" if state["ready_to_share"] else "; not ready to share"),
        metadata={"run_id": run_id, "review_status": state["status"], "ready_to_share": state["ready_to_share"],
                  "qa_mode": flags["qa_mode"], "reviewer": state["reviewer"] or ""},
    )


# A partitioned check is a preview in Dagster 1.13; the warning would print on every command.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    approved_by_reviewer = dg.asset_check(asset=video_final, name=REVIEW_CHECK["name"], blocking=True,
                                          partitions_def=run_partitions)(approved_by_reviewer)
