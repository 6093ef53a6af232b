"""The manual review gate on the final video."""

import dagster as dg
from pydantic import Field

from sparkle_motion_dagster.assets.video_final import video_final
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.runs.qa import qa_flags
from sparkle_motion_dagster.runs.review import review_state


class ReviewGateConfig(dg.Config):
    run_id: str = Field(default="", description="The film run to check when the run is not partitioned "
                                                 "(the review_gate job); a film run's partition otherwise.")


@dg.asset_check(asset=video_final, blocking=True)
def approved_by_reviewer(
    context: dg.AssetCheckExecutionContext, config: ReviewGateConfig, artifact_store: ArtifactStoreResource,
):
    """Passes only when the latest review of this run's final video approves it
    (`sparkle-motion review RUN_ID --approve --reviewer NAME`). While QA automation is removed
    (QA_AUTOMATION_REMOVED=1, the default) a failure is an error that blocks anything downstream;
    with 0 it is advisory. Re-run it from the UI after approving."""
    run_id = config.run_id or context.run.tags.get("dagster/partition")
    if not run_id:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description="run this check for one run_id partition")
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
