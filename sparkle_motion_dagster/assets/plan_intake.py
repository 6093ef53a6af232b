"""Plan intake: the submitted plan, validated and normalized, for one film run."""

from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from ..intake import ModelNotConfiguredError, resolve_video_backend, validation_report
from ..partitions import run_partitions
from ..plan import PlanInputError, PlanValidationError, parse_plan_document, read_json_file
from ..resources.clips import ClipRenderer
from ..resources.storage import ArtifactStoreResource
from ..storage import atomic_write_json

STAGE = "plan_intake"


class PlanIntakeConfig(dg.Config):
    plan_path: str = Field(default="", description="A plan file to submit for this run_id if none was submitted yet.")
    preview: bool = Field(default=False, description="Render the animatic when the declared video model is not configured.")


def submit_request(store, run_id: str, *, document: dict, source: str, preview: bool) -> None:
    """Record what a film run was asked to make (used by the CLI, the sensor and the launchpad)."""
    store.write_request(run_id, {
        "run_id": run_id,
        "source": source,
        "preview": preview,
        "submitted_at": datetime.now(timezone.utc).isoformat(),
        "document": document,
    })


@dg.asset(partitions_def=run_partitions, group_name="film", kinds={"json"})
def movie_plan(
    context: dg.AssetExecutionContext,
    config: PlanIntakeConfig,
    artifact_store: ArtifactStoreResource,
    clips: ClipRenderer,
) -> dg.MaterializeResult:
    """The run's MoviePlan: validated, gaps in the dialogue timeline filled with silence,
    and checked against the configured video backend before anything is rendered."""
    run_id = context.partition_key
    store = artifact_store.store()
    if config.plan_path and not store.request_path(run_id).exists():
        submit_request(store, run_id, document=load_plan_document_raw(config.plan_path), source=config.plan_path,
                       preview=config.preview)
    request = store.read_request(run_id)
    try:
        document = parse_plan_document(request["document"])
        choice = resolve_video_backend(document.plan, served=clips.model_ids, backend=clips.backend,
                                       preview=bool(request.get("preview") or config.preview))
    except (PlanValidationError, ModelNotConfiguredError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    plan = document.plan
    report = validation_report(plan, choice)
    plan_path = atomic_write_json(store.path(run_id, STAGE, "movie_plan.json"), plan.model_dump(mode="json"))
    report_path = atomic_write_json(store.path(run_id, STAGE, "plan_validation.json"), report)
    for warning in report["warnings"]:
        context.log.warning(warning)
    if choice["substituted"]:
        context.log.warning(choice["substitution"])
    summary = report["summary"]
    return dg.MaterializeResult(metadata={
        "title": summary["title"],
        "plan_id": summary["plan_id"],
        "shots": summary["shots"],
        "base_images": summary["base_images"],
        "dialogue_lines": summary["dialogue_lines"],
        "runtime_sec": summary["runtime_sec"],
        "fps": summary["fps"],
        "declared_model_id": choice["declared_model_id"],
        "video_backend": choice["video_backend"],
        "substituted": choice["substituted"],
        "warnings": len(report["warnings"]),
        "path": dg.MetadataValue.path(str(plan_path)),
        "validation_report": dg.MetadataValue.path(str(report_path)),
    })


def load_plan_document_raw(path: str) -> dict:
    """Read a plan file, validating it so that a bad file fails here, not at render time."""
    try:
        data = read_json_file(path)
        parse_plan_document(data)
    except (PlanInputError, PlanValidationError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    return data
