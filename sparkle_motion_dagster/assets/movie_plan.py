"""Plan intake: the submitted plan, validated and normalized, for one film run."""

import json

import dagster as dg
from pydantic import Field

from sparkle_motion_dagster.assets.stage import film_asset, stage_run
from sparkle_motion_dagster.film.cast import inferred_cast
from sparkle_motion_dagster.film.characters import check_reference_images
from sparkle_motion_dagster.film.intake import resolve_video_backend, validation_report
from sparkle_motion_dagster.film.plan import (
    PlanIssue,
    PlanValidationError,
    parse_plan_document,
    read_plan_file,
    with_video_size,
)
from sparkle_motion_dagster.film.speech_fit import SpeechTiming, line_fields, overrun_failure
from sparkle_motion_dagster.film.timeline import shot_frame_counts
from sparkle_motion_dagster.resources.clips import ClipRenderer
from sparkle_motion_dagster.resources.keyframes import KeyframeRenderer
from sparkle_motion_dagster.resources.lipsync import LipsyncEngine
from sparkle_motion_dagster.resources.planning import Planner
from sparkle_motion_dagster.resources.speech import SpeechEngine
from sparkle_motion_dagster.resources.speech.fitting import fit_policy_from_env, line_speech, refused_lines
from sparkle_motion_dagster.resources.selection import adapters_from_env, embedded_resources
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.insight.estimates import estimate_for_run
from sparkle_motion_dagster.lifecycle.evacuation import ephemeral_root_warning
from sparkle_motion_dagster.lifecycle.events import write_event
from sparkle_motion_dagster.store.items import Item, render_items
from sparkle_motion_dagster.insight.qa import qa_flags
from sparkle_motion_dagster.store.run_files import submit_request
from sparkle_motion_dagster.lifecycle.shown import one_line
from sparkle_motion_dagster.store.storage import atomic_write_json


class PlanIntakeConfig(dg.Config):
    plan_path: str = Field(default="", description="A plan file to submit for this run_id if none was submitted yet.")
    prompt: str = Field(default="", description="Or a story prompt for the planner, when no plan was submitted yet.")
    title: str = Field(default="", description="The film's title (with prompt).")
    seed: int = Field(default=0, description="The planner's seed (with prompt).")
    preview: bool = Field(default=False, description="Render the animatic when the declared video model is not configured.")
    dry_run: bool = Field(default=False, description="Only validate: report problems as warnings, render nothing.")
    force: bool = Field(default=False, description="Ask the planner again even when the prompt did not change.")
    budget: str = Field(default="", description="Warn when the estimated film time exceeds this (e.g. 30m, 90s, 2h).")


def video_generations(plan, clips: ClipRenderer) -> dict:
    """How many generations and generated frames the clips stage will pay for, per shot and in all."""
    shots = {shot.id: clips.generations(frames, plan.fps)
             for shot, frames in zip(plan.shots, shot_frame_counts([s.duration_sec for s in plan.shots], plan.fps))}
    return {"backend": clips.backend, "shots": shots,
            "generations": sum(s["generations"] for s in shots.values()),
            "model_frames": sum(s["model_frames"] for s in shots.values())}


def planned_document(stage, planner: Planner, prompt: dict, *, force: bool, timing: SpeechTiming) -> dict:
    """The plan artifact the planner writes for a prompt, its lines timed for the speech engine:
    made once, reused while the prompt, title, seed, planner and speech timing stay the same
    (a retry or a re-materialization does not pay again)."""
    item = Item("plan_artifact", stage.path("plan_artifact.json"),
                inputs={"planner": planner.fingerprint(), "speech_timing": timing.fingerprint(), **prompt})

    def render(item: Item) -> dict:
        document = planner.plan(prompt=prompt["prompt"], title=prompt["title"], seed=prompt.get("seed", 0),
                                speech=timing)
        parse_plan_document(document)  # a planner that returns a broken plan fails here, before it is kept
        atomic_write_json(item.path, document)
        return {"planner": type(planner).__name__}

    done = render_items([item], render, force=force, on_problem=stage.context.log.warning)[0]
    stage.made_by = planner
    stage.publish(item.path, artifact_type="plan_artifact", metadata={"planner": done.record["planner"],
                                                                      "reused": not done.rendered},
                  sources=[], settings=item.inputs)
    return json.loads(item.path.read_text(encoding="utf-8"))


@film_asset("movie_plan", kinds={"json"})
def movie_plan(
    context: dg.AssetExecutionContext,
    config: PlanIntakeConfig,
    artifact_store: ArtifactStoreResource,
    clips: ClipRenderer,
    speech: SpeechEngine,
    planner: Planner,
    keyframes: KeyframeRenderer,
    lipsync: LipsyncEngine,
) -> dg.MaterializeResult:
    """The run's MoviePlan: validated, gaps in the dialogue timeline filled with silence,
    and checked against the configured backends before anything is rendered
    (`plan_validation.json` lists the warnings a user wants before paying for GPU time, among
    them every line whose speech will not fit before the next line: refused under
    `SPARKLE_SPEECH_OVERRUN=fail`).
    A run submitted with a prompt gets its plan from the planner here (`plan_artifact.json`)."""
    with stage_run(context, artifact_store, "movie_plan") as stage:
        store, run_id = stage.store, stage.run_id
        if not store.request_path(run_id).exists():
            if config.plan_path:
                data = read_plan_file(config.plan_path)
                parse_plan_document(data)  # a bad file fails here, before it is recorded
                submit_request(store, run_id, document=data, source=config.plan_path, preview=config.preview)
            elif config.prompt:
                submit_request(store, run_id, source="launchpad", preview=config.preview,
                               prompt={"prompt": config.prompt, "title": config.title or "Untitled", "seed": config.seed})
        request = store.read_request(run_id)
        policy = fit_policy_from_env()
        document = request.get("document")
        if document is None:
            prompt = request["prompt"]
            document = planned_document(stage, planner, {k: prompt[k] for k in ("prompt", "title", "seed")},
                                        force=config.force, timing=speech.timing(policy))
            if prompt.get("size"):
                document = with_video_size(document, *prompt["size"])
        plan = parse_plan_document(document).plan
        unusable = check_reference_images(plan, artifact_root=store.root)
        if unusable:
            raise PlanValidationError([PlanIssue(field, why) for field, why in unusable])
        preview = bool(request.get("preview") or config.preview)
        try:
            choice = resolve_video_backend(plan, served=clips.model_ids, backend=clips.backend, preview=preview)
        except ValueError as exc:
            if not config.dry_run:
                raise
            choice = {"declared_model_id": plan.render_profile.video.model_id, "video_backend": None,
                      "substituted": False, "problem": str(exc)}
        # What was asked for, preview or not: video_clips checks the model against it again before rendering.
        choice["preview"] = preview
        lines = line_speech(plan, speech, line_fields(document), between=stage.check_stop)
        report = validation_report(plan, choice, max_line_chars=speech.max_chunk_chars,
                                   max_generation_sec=clips.max_seconds_per_generation, speech=lines, policy=policy)
        report.update(mode="dry" if config.dry_run else "run", **qa_flags(),
                      speech_fit={**policy.as_dict(), "engine": speech.backend,
                                  "basis": sorted({line.basis for line in lines})})
        raw_plan = document.get("validated_plan", document) if isinstance(document, dict) else None
        report["cast"] = {"keyframes": {image.id: list(image.characters or []) for image in plan.base_images},
                          "inferred_from_prompts": inferred_cast(raw_plan, plan)}
        # The estimate scales with the run's steps: the adapters as this plan's render_profile sets them.
        if not choice.get("substituted") and not choice.get("problem"):
            clips = clips.with_settings(plan.render_profile.video.model_dump(exclude_none=True))
        images = plan.render_profile.images.model_dump(exclude_none=True) if plan.render_profile.images else {}
        # Every stage's resource as configured (the stage table's), with this run's own where it has one.
        resources = {**embedded_resources(), **adapters_from_env()[0], "planner": planner, "speech": speech, "clips": clips,
                     "keyframes": keyframes.with_settings(images), "lipsync": lipsync}
        report["estimate"] = estimate_for_run(store.root, plan, resources, budget=config.budget)
        report["warnings"] += report["estimate"]["warnings"]
        report["video_generations"] = video_generations(plan, clips)
        stage.plan_id = plan.plan_id()
        plan_path = atomic_write_json(stage.path("movie_plan.json"), plan.model_dump(mode="json"))
        report_path = atomic_write_json(stage.path("plan_validation.json"), report)
        stage.publish(plan_path, artifact_type="movie_plan", sources=[store.request_path(run_id)])
        stage.publish(report_path, artifact_type="plan_validation", sources=[plan_path])
        for warning in report["warnings"]:
            context.log.warning(one_line(warning["message"]))
        # Under the fail policy a dry run refuses what would fail; a run refuses it here when it was
        # measured (an estimate is not worth refusing a render for: the dialogue stage decides then).
        refused = refused_lines(lines, policy, estimates=config.dry_run) if policy.overrun == "fail" else []
        if refused:
            raise overrun_failure(refused)
        ephemeral = ephemeral_root_warning(store.root)
        if ephemeral:
            context.log.warning(ephemeral)
            write_event(store.root, run_id, "filesystem_artifacts.ephemeral_root",
                        {"storage_backend": "filesystem", "root": str(store.root), "status": "warning_emitted"})
        if choice.get("substituted"):
            context.log.warning(one_line(choice["substitution"]))
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
            "estimate": dg.MetadataValue.json(report["estimate"]),
            "path": dg.MetadataValue.path(str(plan_path)),
            "validation_report": dg.MetadataValue.path(str(report_path)),
            **stage.catalog_metadata(),
        })
