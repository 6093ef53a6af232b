"""The artifact service's control surface (the seed's production_agent endpoints), for the
notebook panel and any other thin client:

* ``POST /runs`` — register a new film run from ``{"prompt", "title", "seed", "size", "preview"}``
  or ``{"plan": <MoviePlan or plan artifact>, "size", "preview", "source"}``; answers ``{"run_id"}``.
  Nothing is launched: the client launches ``plan_dry_run`` or ``film`` for the partition through
  the Dagster webserver, so the run belongs to Dagster's daemon and shows in its UI;
* ``POST /control/pause|resume|stop`` ``{"run_id"}`` — the run's control state (the stages wait
  at their gate); ``resume`` of a stopped run answers ``needs_launch: true`` (nothing is filming
  it: the client launches the stages to continue);
* ``POST /review`` ``{"run_id", "decision", "reviewer", "notes"}`` — the
  ``finalize_manual_review`` decision (:func:`review.record_review`);
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

from sparkle_motion_dagster.film.plan import PlanInputError, PlanValidationError, parse_plan_document, with_video_size
from sparkle_motion_dagster.runs import control
from sparkle_motion_dagster.runs.events import read_events, write_event
from sparkle_motion_dagster.runs.storage import ArtifactStore, UnknownRunError, check_run_id

ACTIVE = {"queued", "running", "paused"}
ACTOR = "service"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRun(_Body):
    prompt: str = ""
    title: str = ""
    seed: int = 0
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


class RegenerateBody(_Body):
    run_id: str
    shot_id: str
    what: Literal["clip", "keyframe"] = "clip"
    seed: int | None = None


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
        if action in ("pause", "stop") and film not in ACTIVE:
            raise HTTPException(status_code=409, detail=f"{run_id} is {film}: there is nothing to {action}")
        target = {"pause": "paused", "resume": "running", "stop": "stopped"}[action]
        record = control.set_state(store, run_id, target, actor=ACTOR)
        write_event(store.root, run_id, f"control.{action}", {"previous": current}, actor=ACTOR)
        needs_launch = action == "resume" and film not in ACTIVE and film != "succeeded"
        return {"run_id": run_id, "state": record["state"], "previous": current, "needs_launch": needs_launch}

    @router.post("/review")
    def review(body: ReviewBody) -> dict[str, Any]:
        from sparkle_motion_dagster.runs.review import (
            REVIEW_CHECK,
            NothingToReviewError,
            record_review,
            review_state,
        )

        run_id = _known(store, body.run_id)
        try:
            record = record_review(store, run_id, body.decision, body.reviewer, body.notes)
        except NothingToReviewError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"run_id": run_id, "record": record, "review": review_state(store, run_id),
                "launch": {"checks": [REVIEW_CHECK], "partition": run_id}}

    @router.post("/regenerate")
    def regenerate(body: RegenerateBody) -> dict[str, Any]:
        from sparkle_motion_dagster.runs.regenerate import plan_regeneration

        run_id = _known(store, body.run_id)
        if status_of(run_id)["status"] in ACTIVE:
            raise HTTPException(status_code=409, detail=f"{run_id} is being filmed; regenerate once it has ended")
        try:
            change = plan_regeneration(store, run_id, body.shot_id, what=body.what, seed=body.seed)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc).replace("--shot", "shot_id")
                                .replace("--what", "what")) from None
        count = 1 + sum(1 for e in read_events(store.root, run_id, "regeneration")
                        if e["payload"].get("shot_id") == body.shot_id)
        write_event(store.root, run_id, "regeneration", {**change, "count": count}, actor=ACTOR)
        if control.read_state(store, run_id)["state"] != "running":
            control.set_state(store, run_id, "running", actor=ACTOR)
        return {**change, "run_id": run_id, "count": count, "launch": {"job": "film", "assets": change["stages"]}}

    return router
