"""Plan commands: ``validate``, ``schema`` and ``plan`` (write a plan artifact for a prompt).

``validate`` and ``schema`` need only the plan schema, never Dagster, so they answer at once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from sparkle_motion_dagster.cli.errors import CliError
from sparkle_motion_dagster.cli.options import SEED


def echo_plan_summary(summary: dict[str, Any]) -> None:
    """The counts a user checks before paying for a render, one per line."""
    click.echo(f"title:          {summary['title']}")
    click.echo(f"plan_id:        {summary['plan_id']}")
    click.echo(f"shots:          {summary['shots']}")
    click.echo(f"base images:    {summary['base_images']}")
    click.echo(f"characters:     {summary['characters']}")
    click.echo(f"dialogue lines: {summary['dialogue_lines']}")
    click.echo(f"runtime:        {summary['runtime_sec']:g} s at {summary['fps']:g} fps")
    click.echo(f"video model:    {summary['video_model_id']}")


def file_name_for(title: str) -> str:
    """A file name stem for a title: ``Rooftop Revelations!`` -> ``rooftop_revelations``."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:48] or "plan"


def problems_as_json(file: str, exc: Exception) -> dict[str, Any]:
    """``validate --json``'s answer for a plan that failed: every problem with its field path
    (``""`` for the file as a whole)."""
    from sparkle_motion_dagster.film.plan import PlanValidationError

    issues = exc.issues if isinstance(exc, PlanValidationError) else []
    problems = [{"path": issue.path, "reason": issue.reason} for issue in issues] or [{"path": "", "reason": str(exc)}]
    return {"valid": False, "file": file, "problems": problems}


@click.command("validate")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="print the summary, or the problems, as JSON")
def validate(file: str, as_json: bool) -> int:
    """Check a plan file: its summary, or every problem.

    Every problem is listed with its field path; exit 2 when there is one.
    """
    from sparkle_motion_dagster.cli.errors import EXIT_BAD_INPUT
    from sparkle_motion_dagster.film.plan import (
        PlanInputError,
        PlanValidationError,
        parse_plan_document,
        read_json_file,
        summarize,
    )

    try:
        summary = summarize(parse_plan_document(read_json_file(file)).plan)
    except (PlanInputError, PlanValidationError) as exc:
        if not as_json:
            raise
        click.echo(json.dumps(problems_as_json(file, exc), indent=2))
        return EXIT_BAD_INPUT
    if as_json:
        click.echo(json.dumps({"valid": True, "summary": summary}, indent=2))
    else:
        click.echo(f"{file}: valid MoviePlan")
        echo_plan_summary(summary)
    return 0


@click.command("schema")
def schema() -> int:
    """Print the MoviePlan JSON Schema."""
    from sparkle_motion_dagster.film.plan import plan_json_schema

    click.echo(json.dumps(plan_json_schema(), indent=2))
    return 0


@click.command("plan")
@click.option("--prompt", required=True, help="the story prompt")
@click.option("--title", required=True, help="the film's title")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", help="where to write it (default: state/plans/<title>.json)")
@click.option("--force", is_flag=True, help="replace an existing file")
def plan(prompt: str, title: str, seed: int, out: str | None, force: bool) -> int:
    """Write a plan artifact for a prompt.

    The configured planner (the template, or an LLM) plans it; the file is never replaced without --force.
    """
    from sparkle_motion_dagster.definitions import defs
    from sparkle_motion_dagster.film.plan import parse_plan_document, summarize
    from sparkle_motion_dagster.resources.speech.fitting import fit_policy_from_env
    from sparkle_motion_dagster.store.locations import state_dir
    from sparkle_motion_dagster.store.storage import atomic_write_json

    timing = defs.resources["speech"].timing(fit_policy_from_env())  # lines timed for the configured engine
    envelope = defs.resources["planner"].plan(prompt=prompt, title=title, seed=seed, speech=timing)
    target = Path(out) if out else state_dir() / "plans" / f"{file_name_for(title)}.json"
    if target.exists() and not force:
        raise CliError(f"{target} already exists; pass --force to replace it or --out to choose another file")
    atomic_write_json(target.resolve(), envelope)
    click.echo(f"wrote plan artifact {target.resolve()}")
    echo_plan_summary(summarize(parse_plan_document(envelope).plan))
    return 0


COMMANDS = (validate, schema, plan)
