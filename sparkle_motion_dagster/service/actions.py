"""The artifact service's control surface (the seed's production_agent endpoints), for the
notebook panel and any other thin client:

* ``POST /runs`` — register a new film run from ``{"prompt", "title", "seed", "size", "preview"}``
  or ``{"plan": <MoviePlan or plan artifact>, "size", "preview", "source"}``; answers ``{"run_id"}``.
  Nothing is launched: the client launches ``plan_dry_run`` or ``film`` for the partition through
  the Dagster webserver, so the run belongs to Dagster's daemon and shows in its UI;
* ``POST /control/pause|resume|stop`` ``{"run_id"}`` — the run's control state: a paused film's
  Dagster run ends at the next stage boundary (status ``paused``, then ``held``, keeping no
  GPU); ``resume`` of a held or stopped run answers ``needs_launch: true`` (nothing is filming
  it: the client launches the film job, which films only what is missing);
* ``POST /review`` ``{"run_id", "decision", "reviewer", "notes", "sha256"}`` — the
  ``finalize_manual_review`` decision (:func:`review.record_review`) on the video the reviewer
  watched (``sha256``, required to approve); 409 with the reason when that is not the current
  final, when the run is being filmed again (approve), or when the final no longer matches its record;
* ``POST /regenerate`` ``{"run_id", "shot_id", "what", "seed"}`` — records the new seed(s)
  and answers the stages to launch (``launch: {"job": "film", "assets": [...]}``); the client
  launches them, as for ``/runs``.

Every route here needs the token when the service has one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from sparkle_motion_dagster import stages as stage_table
from sparkle_motion_dagster.film.plan import (
    PlanInputError,
    PlanValidationError,
    Seed,
    parse_plan_document,
    with_video_size,
)
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.lifecycle.events import read_events, write_event
from sparkle_motion_dagster.store.storage import ArtifactStore, UnknownRunError, check_run_id

ACTIVE = {"queued", "running", "paused"}
ACTOR = "service"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRun(_Body):
    prompt: str = ""
    title: str = ""
    seed: Seed = 0
    plan: dict[str, Any] | None = None
    size: str = ""
    preview: bool = False
    source: str = Field(default="panel", max_length=200)


class RunRef(_Body):
    run_id: str


class ReviewBody(_Body):
    run_id: str
    decision: Literal["approve", "reject", "skip"]
    reviewer: str
    notes: str = ""
    sha256: str | None = Field(default=None, description="the sha256 of the final video the reviewer watched")


class RegenerateBody(_Body):
    run_id: str
    shot_id: str
    what: Literal["clip", "keyframe"] = "clip"
    seed: Seed | None = None


def _known(store: ArtifactStore, run_id: str) -> str:
    run_id = check_run_id(run_id)
    if not store.run_dir(run_id).is_dir():
        raise UnknownRunError(f"run_id: unknown run {run_id!r}")
    return run_id


def actions_router(store: ArtifactStore, instance_getter: Callable[[], Any], instance_lock: threading.Lock,
                   status_of: Callable[[str], dict[str, Any]]) -> APIRouter:
    """The routes above over ``store``; ``status_of(run_id)`` is the ``/status`` payload."""
    router = APIRouter()

    @router.post("/runs")
    def new_run(body: NewRun) -> dict[str, Any]:
        from sparkle_motion_dagster.jobs.new_film import frame_size
        from sparkle_motion_dagster.orchestration.runner import submit_prompt_run, submit_run

        try:
            size = frame_size(body.size)
            with instance_lock:
                if body.plan is not None:
                    if body.prompt.strip():
                        raise ValueError("give a plan or a prompt, not both")
                    document = with_video_size(body.plan, *size) if size else body.plan
                    # The video model is checked again by plan intake, against the code location's backends.
                    run_id = submit_run(store, instance_getter(), document, source=body.source, preview=body.preview,
                                        clip_model_ids=(), clip_backend="", check_backend=False)
                else:
                    run_id = submit_prompt_run(store, instance_getter(), prompt=body.prompt, title=body.title,
                                               seed=body.seed, size=size, preview=body.preview, source=body.source)
        except PlanValidationError as exc:
            raise HTTPException(status_code=422, detail={
                "message": str(exc), "problems": [{"field": i.path, "problem": i.reason} for i in exc.issues]}) from None
        except (PlanInputError, ValueError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"run_id": run_id}

    @router.post("/control/{action}")
    def control_run(action: Literal["pause", "resume", "stop"], body: RunRef) -> dict[str, Any]:
        run_id = _known(store, body.run_id)
        current = control.read_state(store, run_id)["state"]
        film = status_of(run_id)["status"]
        if (action == "pause" and film not in ACTIVE) or (action == "stop" and film not in ACTIVE | {"held"}):
            raise HTTPException(status_code=409, detail=f"{run_id} is {film}: there is nothing to {action}")
        if action == "resume":
            # A held film's Dagster run has ended: the caller launches the rest, unless a command waits to.
            if current == "paused":
                launch = control.resume(store, run_id, actor=ACTOR)
            else:
                control.set_state(store, run_id, "running", actor=ACTOR)
                launch = film not in ACTIVE
            record = control.read_state(store, run_id)
            needs_launch = launch and film != "succeeded"
        else:
            record = control.set_state(store, run_id, {"pause": "paused", "stop": "stopped"}[action], actor=ACTOR)
            needs_launch = False
        write_event(store.root, run_id, f"control.{action}", {"previous": current}, actor=ACTOR)
        answer = {"run_id": run_id, "state": record["state"], "previous": current, "needs_launch": needs_launch}
        if needs_launch:  # what the held run was to make and did not; else the stages missing and what follows
            from sparkle_motion_dagster.orchestration.liveness import stages_left

            with instance_lock:
                assets, run_config = stages_left(instance_getter(), run_id)
            if not assets:
                missing = {s["asset"] for s in status_of(run_id)["stages"] if s["status"] != "succeeded"}
                rest = {later for key in missing for later in stage_table.downstream(key)}
                assets = [key for key in stage_table.STAGE_KEYS if key in rest]
            answer["launch"] = {"job": "film", "assets": assets, "run_config": run_config}
        return answer

    @router.post("/review")
    def review(body: ReviewBody) -> dict[str, Any]:
        from sparkle_motion_dagster.lifecycle.review import (
            REVIEW_CHECK,
            NothingToReviewError,
            ReviewRefusedError,
            filming_again,
            record_review,
            review_state,
        )

        run_id = _known(store, body.run_id)
        if body.decision == "approve" and body.sha256 is None:
            raise HTTPException(status_code=422, detail="sha256: the sha256 of the final video the reviewer watched "
                                                        "is required to approve it")
        try:
            record = record_review(store, run_id, body.decision, body.reviewer, body.notes, sha256=body.sha256,
                                   refilming=filming_again(store, run_id, status_of(run_id)["status"]))
        except (NothingToReviewError, ReviewRefusedError) as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"run_id": run_id, "record": record, "review": review_state(store, run_id),
                "launch": {"checks": [REVIEW_CHECK], "partition": run_id}}

    @router.post("/regenerate")
    def regenerate(body: RegenerateBody) -> dict[str, Any]:
        from sparkle_motion_dagster.lifecycle.regenerate import plan_regeneration

        run_id = _known(store, body.run_id)
        if status_of(run_id)["status"] in ACTIVE:
            raise HTTPException(status_code=409, detail=f"{run_id} is being filmed; regenerate once it has ended")
        try:
            change = plan_regeneration(store, run_id, body.shot_id, what=body.what, seed=body.seed)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc).replace("--shot", "shot_id").replace("--seed", "seed")
                                .replace("--what", "what")) from None
        count = 1 + sum(1 for e in read_events(store.root, run_id, "regeneration")
                        if e["payload"].get("shot_id") == body.shot_id)
        write_event(store.root, run_id, "regeneration", {**change, "count": count}, actor=ACTOR)
        if control.read_state(store, run_id)["state"] != "running":
            control.set_state(store, run_id, "running", actor=ACTOR)
        return {**change, "run_id": run_id, "count": count, "launch": {"job": "film", "assets": change["stages"]}}

    return router
