"""Plan intake: the submitted plan, validated and normalized, for one film run."""

from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from sparkle_motion_dagster.runs.evacuation import ephemeral_root_warning
from sparkle_motion_dagster.runs.events import write_event
from sparkle_motion_dagster.film.intake import resolve_video_backend, validation_report
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.film.plan import parse_plan_document, read_json_file
from sparkle_motion_dagster.resources.clips import ClipRenderer
from sparkle_motion_dagster.resources.speech import SpeechEngine
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.runs.qa import qa_flags
from sparkle_motion_dagster.runs.storage import atomic_write_json
from sparkle_motion_dagster.assets.stage import stage_run

STAGE = "plan_intake"


class PlanIntakeConfig(dg.Config):
    plan_path: str = Field(default="", description="A plan file to submit for this run_id if none was submitted yet.")
    preview: bool = Field(default=False, description="Render the animatic when the declared video model is not configured.")
    dry_run: bool = Field(default=False, description="Only validate: report problems as warnings, render nothing.")


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
    speech: SpeechEngine,
) -> dg.MaterializeResult:
    """The run's MoviePlan: validated, gaps in the dialogue timeline filled with silence,
    and checked against the configured backends before anything is rendered
    (`plan_validation.json` lists the warnings a user wants before paying for GPU time)."""
    with stage_run(context, artifact_store, STAGE) as stage:
        store, run_id = stage.store, stage.run_id
        if config.plan_path and not store.request_path(run_id).exists():
            data = read_json_file(config.plan_path)
            parse_plan_document(data)  # a bad file fails here, before it is recorded
            submit_request(store, run_id, document=data, source=config.plan_path, preview=config.preview)
        request = store.read_request(run_id)
        plan = parse_plan_document(request["document"]).plan
        preview = bool(request.get("preview") or config.preview)
        try:
            choice = resolve_video_backend(plan, served=clips.model_ids, backend=clips.backend, preview=preview)
        except ValueError as exc:
            if not config.dry_run:
                raise
            choice = {"declared_model_id": plan.render_profile.video.model_id, "video_backend": None,
                      "substituted": False, "problem": str(exc)}
        report = validation_report(plan, choice, max_line_chars=speech.max_chunk_chars,
                                   max_generation_sec=clips.max_seconds_per_generation)
        report.update(mode="dry" if config.dry_run else "run", **qa_flags())
        stage.plan_id = plan.plan_id()
        plan_path = atomic_write_json(stage.path("movie_plan.json"), plan.model_dump(mode="json"))
        report_path = atomic_write_json(stage.path("plan_validation.json"), report)
        stage.publish(plan_path, artifact_type="movie_plan")
        stage.publish(report_path, artifact_type="plan_validation")
        for warning in report["warnings"]:
            context.log.warning(warning)
        ephemeral = ephemeral_root_warning(store.root)
        if ephemeral:
            context.log.warning(ephemeral)
            write_event(store.root, run_id, "filesystem_artifacts.ephemeral_root",
                        {"storage_backend": "filesystem", "root": str(store.root), "status": "warning_emitted"})
        if choice.get("substituted"):
            context.log.warning(choice["substitution"])
            write_event(store.root, run_id, "backend.substitution",
                        {"stage": "video_clips", "declared_model_id": choice["declared_model_id"],
                         "backend": choice["video_backend"]})
        summary = report["summary"]
        return dg.MaterializeResult(metadata={
            "title": summary["title"],
            "plan_id": summary["plan_id"],
            "mode": report["mode"],
            "shots": summary["shots"],
            "base_images": summary["base_images"],
            "dialogue_lines": summary["dialogue_lines"],
            "runtime_sec": summary["runtime_sec"],
            "fps": summary["fps"],
            "declared_model_id": choice["declared_model_id"],
            "video_backend": choice["video_backend"] or "not configured",
            "substituted": choice["substituted"],
            "warnings": dg.MetadataValue.json(report["warnings"]),
            "path": dg.MetadataValue.path(str(plan_path)),
            "validation_report": dg.MetadataValue.path(str(report_path)),
            **stage.catalog_metadata(),
        })
