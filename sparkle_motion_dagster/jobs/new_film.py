"""The ``new_film`` job: film a new run from the Dagster UI's launchpad alone.

Its one op reads a pasted plan (JSON or YAML), a plan file or a prompt and title,
validates it, registers a new ``run_id`` partition and tags its own Dagster run with
that id; the ``new_film_launcher`` sensor (:mod:`sparkle_motion_dagster.sensors`) then
launches the ``film`` job for the new partition.
"""

import re

import dagster as dg
from pydantic import Field

from sparkle_motion_dagster.film.plan import (
    PlanValidationError,
    decode_plan_text,
    read_plan_file,
    with_video_size,
)
from sparkle_motion_dagster.orchestration.runner import submit_prompt_run, submit_run
from sparkle_motion_dagster.resources.clips import ClipRenderer
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource

NEW_FILM_TAG = "sparkle/new_film_run_id"
"""The tag on a ``new_film`` Dagster run naming the film run it registered."""

JOB_DESCRIPTION = """\
Start a new film from the launchpad. Give ONE of: `plan_text` (a MoviePlan or plan artifact
pasted as JSON or YAML), `plan_path` (a plan file on this machine), or `prompt` with `title`
(planned by the movie_plan stage). *Scaffold missing config* shows every field.

The plan is validated first (a bad plan fails this run, naming each bad field), then a new
`run_id` partition is added and the `new_film_launcher` sensor launches the `film` job for it
(the daemon of `dagster dev` runs it within seconds). Follow it in *Runs*, or with
`sparkle-motion status RUN_ID`; the run_id is in this run's output and its
`sparkle/new_film_run_id` tag.

To resume a failed or stopped film: launch `film` again for its partition (only what is
missing or failed is rendered again), select an asset and *Materialize selected and
downstream* to redo from a stage, or `sparkle-motion resume RUN_ID`."""

_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


class NewFilmConfig(dg.Config):
    plan_text: str = Field(default="", description="A MoviePlan or plan artifact pasted as JSON or YAML text.")
    plan_path: str = Field(default="", description="Or a plan file on the machine running Dagster.")
    prompt: str = Field(default="", description="Or a story prompt for the planner (give a title too).")
    title: str = Field(default="", description="The film's title, with prompt.")
    seed: int = Field(default=0, description="The planner's seed, with prompt.")
    size: str = Field(default="", description="Render at WIDTHxHEIGHT (e.g. 640x360) instead of the plan's size.")
    preview: bool = Field(default=False, description="Render the animatic when the plan declares a video model "
                                                      "that is not configured (e.g. the sample's wan-2.1).")


def pasted_plan(text: str) -> dict:
    """A plan pasted as JSON or YAML text, as a document, read by the same bounded decoder as
    every plan file; a clear error naming ``plan_text`` for anything else."""
    document = decode_plan_text(text, source="plan_text")
    if not isinstance(document, dict):
        raise ValueError(f"plan_text: expected a MoviePlan object, got {type(document).__name__}")
    return document


def frame_size(text: str) -> tuple[int, int] | None:
    if not text.strip():
        return None
    match = _SIZE.match(text)
    if not match or not all(16 <= int(n) <= 7680 for n in match.groups()):
        raise ValueError(f"size: expected WIDTHxHEIGHT such as 640x360, got {text!r}")
    return int(match.group(1)), int(match.group(2))


@dg.op(name="submit_new_film", out=dg.Out(str, description="The new film run's run_id."))
def submit_new_film(context: dg.OpExecutionContext, config: NewFilmConfig, artifact_store: ArtifactStoreResource,
                    clips: ClipRenderer) -> str:
    """Validate the launchpad's plan (pasted, a file, or a prompt), register a new run_id
    partition for it, and tag this run with it so that the `new_film_launcher` sensor films it."""
    given = [name for name in ("plan_text", "plan_path", "prompt") if getattr(config, name).strip()]
    if len(given) != 1:
        raise dg.Failure(description="give exactly one of plan_text, plan_path or prompt (with title); "
                                     f"got {', '.join(given) or 'none'}")
    store = artifact_store.store()
    try:
        size = frame_size(config.size)
        if config.prompt.strip():
            run_id = submit_prompt_run(store, context.instance, prompt=config.prompt, title=config.title,
                                       seed=config.seed, size=size, preview=config.preview, source="ui:new_film")
        else:
            document = pasted_plan(config.plan_text) if config.plan_text.strip() else read_plan_file(config.plan_path)
            if size:
                document = with_video_size(document, *size)
            run_id = submit_run(store, context.instance, document, preview=config.preview,
                                source=config.plan_path or "ui:new_film", clip_model_ids=clips.model_ids,
                                clip_backend=clips.backend)
    except PlanValidationError as exc:
        raise dg.Failure(description=str(exc), metadata={
            "problems": dg.MetadataValue.json([{"field": issue.path, "problem": issue.reason}
                                               for issue in exc.issues])}) from None
    except (ValueError, OSError) as exc:
        raise dg.Failure(description=str(exc)) from None
    context.instance.add_run_tags(context.run_id, {NEW_FILM_TAG: run_id})
    context.log.info(f"registered {run_id}; the new_film_launcher sensor launches the film job for it")
    context.add_output_metadata({"run_id": run_id, "status": f"sparkle-motion status {run_id}",
                                 "resume": f"sparkle-motion resume {run_id}"})
    return run_id


@dg.job(name="new_film", description=JOB_DESCRIPTION, tags={"sparkle/source": "ui"})
def new_film_job():
    """Validate and register a new film from the launchpad; the sensor films it (see JOB_DESCRIPTION)."""
    submit_new_film()
