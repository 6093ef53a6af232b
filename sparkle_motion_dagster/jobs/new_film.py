"""The ``new_film`` job: film a new run from the Dagster UI's launchpad alone.

Its one op reads a plan pasted into ``plan`` (JSON is YAML: the JSON itself, no quotes),
pasted as text into ``plan_text``, a plan file or a prompt and title, validates it,
registers a new ``run_id`` partition and tags its own Dagster run with that id and the
film's title; the ``new_film_launcher`` sensor (:mod:`sparkle_motion_dagster.sensors`)
then launches the ``film`` job for the new partition, and ``new_film_backlink`` tags this
run with the film run it started.
"""

import re
from typing import Any
from urllib.parse import urlencode

import dagster as dg
from pydantic import Field

from sparkle_motion_dagster.film.plan import (
    PlanInputError,
    PlanValidationError,
    decode_plan_text,
    read_plan_file,
    with_video_size,
)
from sparkle_motion_dagster.orchestration.submission import submit_prompt_run, submit_run
from sparkle_motion_dagster.resources.clips import ClipRenderer
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.lifecycle.titles import TITLE_TAG, title_tags

NEW_FILM_TAG = "sparkle/new_film_run_id"
"""The tag on a ``new_film`` Dagster run naming the film run it registered."""
FILM_DAGSTER_RUN_TAG = "sparkle/film_dagster_run"
"""The tag on a ``new_film`` Dagster run naming the ``film`` Dagster run it started."""
NEW_FILM_DAGSTER_RUN_TAG = "sparkle/new_film_dagster_run"
"""The tag on a ``film`` Dagster run naming the ``new_film`` Dagster run that started it."""

HOW_TO_PASTE = (
    "To paste a plan's JSON in the launchpad, replace the {} of `plan: {}` with the JSON as it is: JSON is "
    "YAML, so it needs no quotes around it and its quotes and apostrophes need no escaping (indent its lines "
    "under `plan:` when it spans several: select them and press Tab). Or write `plan_text: |` and the JSON "
    "on the lines below it, each indented further than `plan_text`. Do not paste between the quotes of "
    "`plan_text: ''`: the first apostrophe in the plan ends the quoted text."
)

JOB_DESCRIPTION = """\
Start a new film from the launchpad. Give ONE of: `plan` (a MoviePlan or plan artifact: replace
the `{}` of `plan: {}` with its JSON, pasted as it is, no quotes around it), `plan_text` (the same
as text, in a `plan_text: |` block), `plan_path` (a plan file on this machine), or `prompt` with
`title` (planned by the movie_plan stage). *Scaffold missing config* shows every field.

The plan is validated first (a bad plan fails this run, naming each bad field), then a new
`run_id` partition is added and the `new_film_launcher` sensor launches the `film` job for it
(the daemon of `dagster dev` runs it within seconds). Follow it in *Runs*, or with
`sparkle-motion status RUN_ID`; the run_id is in this run's output and its
`sparkle/new_film_run_id` tag, the film's title in its `sparkle/title` tag, and the film's
Dagster run in its `sparkle/film_dagster_run` tag once that run starts (the film run points
back with `sparkle/new_film_dagster_run`).

To resume a failed or stopped film: launch `film` again for its partition (only what is
missing or failed is rendered again), select an asset and *Materialize selected and
downstream* to redo from a stage, or `sparkle-motion resume RUN_ID`."""

_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


class NewFilmConfig(dg.Config):
    plan: dict[str, Any] = Field(default={}, description="The plan itself: replace {} with a MoviePlan or plan "
                                                         "artifact's JSON, pasted as it is (JSON is YAML: no quotes "
                                                         "around it, nothing to escape).")
    plan_text: str = Field(default="", description="Or the plan as JSON or YAML text, written as a block: "
                                                   "`plan_text: |` and the plan on the lines below, indented.")
    plan_path: str = Field(default="", description="Or a plan file on the machine running Dagster.")
    prompt: str = Field(default="", description="Or a story prompt for the planner (give a title too).")
    title: str = Field(default="", description="The film's title, with prompt.")
    seed: int = Field(default=0, description="The planner's seed, with prompt.")
    size: str = Field(default="", description="Render at WIDTHxHEIGHT (e.g. 640x360) instead of the plan's size.")
    preview: bool = Field(default=False, description="Render the animatic when the plan declares a video model "
                                                      "that is not configured (e.g. the sample's wan-2.1).")


def pasted_plan(text: str) -> dict:
    """A plan pasted as JSON or YAML text, as a document, read by the same bounded decoder as
    every plan file; a clear error naming ``plan_text`` and saying how to paste for anything else."""
    try:
        document = decode_plan_text(text, source="plan_text")
    except PlanInputError as exc:
        raise PlanInputError(f"{exc}. {HOW_TO_PASTE}") from None
    if not isinstance(document, dict):
        raise ValueError(f"plan_text: expected a MoviePlan object, got {type(document).__name__} "
                         f"(the text was read as one {type(document).__name__}, not as a plan). {HOW_TO_PASTE}")
    return document


def given_plan(config: NewFilmConfig) -> dict:
    """The plan document from whichever of ``plan``, ``plan_text`` and ``plan_path`` is given."""
    if config.plan:
        return dict(config.plan)
    if config.plan_text.strip():
        return pasted_plan(config.plan_text)
    return read_plan_file(config.plan_path)


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
    partition for it, and tag this run with it and the film's title so that the
    `new_film_launcher` sensor films it."""
    given = [name for name in ("plan", "plan_text", "plan_path", "prompt")
             if (getattr(config, name).strip() if name != "plan" else config.plan)]
    if len(given) != 1:
        raise dg.Failure(description="give exactly one of plan, plan_text, plan_path or prompt (with title); "
                                     f"got {', '.join(given) or 'none'}. {HOW_TO_PASTE}")
    store = artifact_store.store()
    try:
        size = frame_size(config.size)
        if config.prompt.strip():
            run_id = submit_prompt_run(store, context.instance, prompt=config.prompt, title=config.title,
                                       seed=config.seed, size=size, preview=config.preview, source="ui:new_film")
        else:
            document = given_plan(config)
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
    titled = title_tags(store, run_id)
    context.instance.add_run_tags(context.run_id, {NEW_FILM_TAG: run_id, **titled})
    context.log.info(f"registered {run_id} ({titled.get(TITLE_TAG, 'untitled')}); the new_film_launcher sensor "
                     f"launches the film job for it, and this run gets a {FILM_DAGSTER_RUN_TAG} tag naming it")
    context.add_output_metadata({
        "run_id": run_id,
        **({"title": dg.MetadataValue.text(titled[TITLE_TAG])} if titled else {}),
        # Relative to the webserver that shows this: the film run this run starts (the Runs page
        # filtered by the tag it carries), and the film's partition page.
        "film_run": dg.MetadataValue.url("/runs?" + urlencode({"q[0]": f"tag:{NEW_FILM_DAGSTER_RUN_TAG}="
                                                                       f"{context.run_id}"})),
        "film": dg.MetadataValue.url(f"/assets/video_final?view=partitions&partition={run_id}"),
        "status": f"sparkle-motion status {run_id}",
        "resume": f"sparkle-motion resume {run_id}",
    })
    return run_id


@dg.job(name="new_film", description=JOB_DESCRIPTION, tags={"sparkle/source": "ui"})
def new_film_job():
    """Validate and register a new film from the launchpad; the sensor films it (see JOB_DESCRIPTION)."""
    submit_new_film()
