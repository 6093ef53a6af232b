"""Filming commands: ``submit``, ``run`` and ``demo``, and the helpers that film a run.

A run starts from a plan file, a prompt (planned by the run's ``movie_plan`` stage with
the configured planner) or the bundled sample; :func:`film` executes (some of) its stages in this process and prints
one line per stage as it ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sparkle_motion_dagster.cli.context import open_film_context
from sparkle_motion_dagster.cli.errors import CliError
from sparkle_motion_dagster.cli.options import SEED, FrameSize, at_most_one
from sparkle_motion_dagster.cli.plans import echo_plan_summary

SAMPLE_PLAN = Path(__file__).resolve().parents[1] / "samples" / "rooftop_revelations.json"


@dataclass(frozen=True)
class PlanSource:
    """Where a new run's plan comes from, and how to render it."""

    plan: str | None = None
    prompt: str | None = None
    title: str | None = None
    seed: int = 0
    sample: bool = False
    size: tuple[int, int] | None = None
    preview: bool = False


def submit_new_run(instance, defs, store, source: PlanSource, *, check_backend: bool = True) -> str:
    """Validate the plan and register a new run_id for it; nothing is written on bad input."""
    from sparkle_motion_dagster.film.plan import read_json_file, read_plan_file, with_video_size
    from sparkle_motion_dagster.orchestration.runner import submit_prompt_run, submit_run

    if source.plan:
        document, origin = read_plan_file(source.plan), str(Path(source.plan).resolve())
    elif source.sample:
        document, origin = read_json_file(SAMPLE_PLAN), f"sample:{SAMPLE_PLAN.name}"
    else:
        if not (source.prompt and source.title):
            raise CliError("give --plan FILE, or both --prompt and --title")
        # The movie_plan stage asks the planner, so planning is retried and cached like any stage.
        return submit_prompt_run(store, instance, prompt=source.prompt, title=source.title, seed=source.seed,
                                 size=source.size, preview=source.preview)
    if source.size:
        document = with_video_size(document, *source.size)
    clips = defs.resources["clips"]
    return submit_run(store, instance, document, source=origin, preview=source.preview,
                      clip_model_ids=clips.model_ids, clip_backend=clips.backend, check_backend=check_backend)


def echo_stage(stage: str, status: str, seconds: float) -> None:
    """One line as a stage ends: ``  video_clips        ok       3.21 s``."""
    mark = {"succeeded": "ok", "stopped": "stopped"}.get(status, "FAILED")
    try:
        click.echo(f"  {stage:<18} {mark:<6} {seconds:6.2f} s")
    except BrokenPipeError:  # the reader of our output has gone; the film goes on
        pass


def echo_notice(message: str) -> None:
    """Something to know while the film runs (it holds at a pause, it is stopping), on stderr."""
    click.echo(message, err=True)


def stopped_status(result, run_id: str) -> int:
    """Say that the film was stopped and how to continue it (one line); the exit status:
    128 + the signal that stopped it (130 for Ctrl-C, 143 for SIGTERM), 1 for ``control stop``."""
    import signal

    how = f" ({signal.Signals(result.stop_signal).name})" if result.stop_signal else ""
    where = f" at {result.failed_stage}" if result.failed_stage else ""
    click.echo(f"stopped {run_id}{how}{where}; continue it with: sparkle-motion resume {run_id}", err=True)
    return 128 + result.stop_signal if result.stop_signal else 1


def film(instance, defs, store, run_id: str, **kwargs: Any) -> int:
    """Film (some stages of) a run, print progress, and report the outcome (0; 1 when a stage failed
    or the run was stopped with ``control stop``; 128 + the signal when Ctrl-C or SIGTERM stopped it).

    Starting a film starts a stopped run again. A paused film ends its Dagster run at the next stage
    boundary (holding no GPU); this command then waits, saying so, and films the stages left when
    the run is resumed (``control resume``)."""
    import dataclasses

    from sparkle_motion_dagster.orchestration.runner import FILM_STAGES, film_run
    from sparkle_motion_dagster.lifecycle import control
    from sparkle_motion_dagster.store.run_files import stage_file

    if control.read_state(store, run_id)["state"] == "stopped":
        control.set_state(store, run_id, "running")
    started = time.monotonic()
    wanted = list(kwargs.pop("stages", None) or FILM_STAGES)
    subset = len(wanted) < len(FILM_STAGES)
    succeeded: list[str] = []

    def on_stage(stage: str, status: str, seconds: float) -> None:
        if status == "succeeded":
            succeeded.append(stage)
        echo_stage(stage, status, seconds)

    control.set_waiter(store, run_id, True)
    try:
        while True:
            result = film_run(defs, instance, run_id, on_stage=on_stage, store=store, log_level="CRITICAL",
                              stop_on_signals=True, on_notice=echo_notice,
                              stages=wanted if subset else None, **kwargs)
            if not result.paused_at:
                break
            signum = wait_while_held(store, run_id, result.paused_at)
            if signum is not None or control.read_state(store, run_id)["state"] == "stopped":
                return stopped_status(dataclasses.replace(result, stopped=True, stop_signal=signum,
                                                          failed_stage=result.paused_at), run_id)
            wanted, subset = [s for s in wanted if s not in succeeded], True
    finally:
        control.set_waiter(store, run_id, False)
    if "movie_plan" in result.stage_seconds:
        report = stage_file(store, run_id, "movie_plan", "plan_validation.json")
        if report.exists():
            details = json.loads(report.read_text())
            for note in [w["message"] for w in details["warnings"]] + [details["video"].get("substitution")]:
                if note:
                    click.echo(f"note: {note}")
    if result.stopped:
        return stopped_status(result, run_id)
    if not result.success:
        click.echo(f"error: stage {result.failed_stage} failed: {result.error}", err=True)
        click.echo(f"continue it with: sparkle-motion resume {run_id}", err=True)
        return 1
    click.echo(f"done in {time.monotonic() - started:.1f} s")
    echo_check_warnings(store, run_id)
    click.echo(f"run_id: {run_id}")
    if result.final_video:
        click.echo(f"video_final: {result.final_video}")
    return 0


def echo_check_warnings(store, run_id: str) -> None:
    """Quality checks that failed as warnings (QA_AUTOMATION_REMOVED=1): the film went on, but say so."""
    from sparkle_motion_dagster.insight.qa import status_checks

    for check in status_checks(store, run_id):
        if not check["passed"]:
            click.echo(f"warning: check {check['asset']}/{check['name']} failed: {check['description']}", err=True)


def wait_while_held(store, run_id: str, stage: str) -> int | None:
    """The film's Dagster run ended at a pause, before ``stage``: say so, and wait (holding no
    slot) until it is resumed (None) or stopped (None; the record says so), or a signal comes
    (the signal, and the run is recorded as stopped)."""
    from sparkle_motion_dagster.cli.waiting import say, signal_name, wait_until
    from sparkle_motion_dagster.lifecycle import control

    hold = control.read_hold(store, run_id)
    if hold is None and control.read_state(store, run_id)["state"] != "paused":
        return None  # resumed (or stopped) before the run had ended
    held = time.monotonic()
    state, signum = wait_until(
        lambda: (s := control.read_state(store, run_id)["state"]) != "paused" and s,
        announce=lambda: say(control.hold_message(run_id, (hold or {}).get("stage", stage), (hold or {}).get("since"))))
    if signum is not None:
        control.set_state(store, run_id, "stopped", actor=f"signal:{signal_name(signum)}")
        return signum
    if state == "running":
        say(f"{run_id} resumed after {time.monotonic() - held:.1f} s held before {stage}")
    return None


def dry_run(instance, defs, store, source: PlanSource, run_id: str | None, *, as_json: bool = False,
            budget: str | None = None, gpu: str | None = None) -> int:
    """Plan intake only: validate, report warnings and the estimated cost, render nothing. ``as_json``
    prints the validation report (its warnings as dicts, its estimate) on stdout, the progress on stderr.
    ``gpu`` (a card name or GB): the estimate is made for that card instead (``estimate.gpu``)."""
    import contextlib
    import sys

    from sparkle_motion_dagster.cli.estimate_output import echo_estimate
    from sparkle_motion_dagster.orchestration.runner import dry_run_config
    from sparkle_motion_dagster.store.run_files import stage_file

    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        # An unconfigured video model is reported as a warning instead of refused.
        run_id = run_id or submit_new_run(instance, defs, store, source, check_backend=False)
        click.echo(f"run_id: {run_id} (dry run)")
        status = film(instance, defs, store, run_id, stages=["movie_plan"], run_config=dry_run_config(budget),
                      job_name="plan_dry_run")  # plan intake only: no quality checks, nothing else written
    if as_json:
        report_path = stage_file(store, run_id, "movie_plan", "plan_validation.json")
        if report_path.exists():
            report = json.loads(report_path.read_text())
            if gpu and status == 0:
                report = _for_card(store, run_id, report, gpu, budget)
            click.echo(json.dumps({"run_id": run_id, "ok": status == 0, "report": str(report_path),
                                   **report}, indent=2))
        return status
    if status == 0:
        report_path = stage_file(store, run_id, "movie_plan", "plan_validation.json")
        report = json.loads(report_path.read_text())
        if gpu:
            report = _for_card(store, run_id, report, gpu, budget)
        echo_plan_summary(report["summary"])
        echo_estimate(report.get("estimate"))
        for warning in report["warnings"]:
            click.echo(f"warning: {warning['message']}")
        if not report["warnings"]:
            click.echo("warnings: none")
        click.echo(f"report: {report_path}")
    return status


def _for_card(store, run_id: str, report: dict, gpu: str, budget: str | None) -> dict:
    """The dry run's report with its estimate made for the card ``gpu`` (from the models' configs:
    no GPU and no weights needed), its memory warnings those of that card."""
    from sparkle_motion_dagster.resources.memory_plan import named_card
    from sparkle_motion_dagster.resources.selection import configured_resources
    from sparkle_motion_dagster.insight.estimates import estimate_for_run
    from sparkle_motion_dagster.store.run_files import load_run_plan

    card = named_card(gpu)
    plan = load_run_plan(store, run_id)
    estimated = estimate_for_run(store.root, plan, configured_resources(), budget=budget, card=card)
    others = [w for w in report.get("warnings", []) if not str(w.get("field", "")).startswith("estimate.")]
    return {**report, "estimate": estimated, "warnings": others + estimated["warnings"]}


def film_a_run(source: PlanSource, run_id: str | None = None, mode: str = "run", *, as_json: bool = False,
               budget: str | None = None, gpu: str | None = None) -> int:
    """``run``: film a submitted run_id, or submit a new one and film it (or only its intake)."""
    if (as_json or budget or gpu) and mode != "dry":
        raise CliError("--json, --budget and --gpu go with --mode dry (the estimate is made before filming)")
    if budget:
        from sparkle_motion_dagster.insight.estimates import parse_budget

        parse_budget(budget)  # a bad value fails here, before anything is submitted
    if gpu:
        from sparkle_motion_dagster.resources.memory_plan import named_card

        try:
            named_card(gpu)
        except ValueError as error:
            raise CliError(str(error)) from None
    instance, defs, store = open_film_context()
    if mode == "dry":
        return dry_run(instance, defs, store, source, run_id, as_json=as_json, budget=budget, gpu=gpu)
    run_id = run_id or submit_new_run(instance, defs, store, source)
    click.echo(f"run_id: {run_id}")
    return film(instance, defs, store, run_id)


def plan_source_options(command):
    """The options that say which plan a new run films (shared by ``submit`` and ``run``)."""
    options = [
        click.option("--plan", help="a MoviePlan or plan artifact JSON file"),
        click.option("--prompt", help="a story prompt for the planner (with --title)"),
        click.option("--sample", is_flag=True, help="the bundled sample plan (Rooftop Revelations)"),
        click.option("--title", help="the film's title (with --prompt)"),
        click.option("--seed", type=SEED, default=0, show_default=True, help="the planner's seed (with --prompt)"),
        click.option("--preview", is_flag=True,
                     help="render the embedded animatic when the plan's video model is not configured"),
        click.option("--size", type=FrameSize(),
                     help="output size WxH (multiples of 2), e.g. 640x360 for a fast proof"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("submit")
@plan_source_options
def submit(plan: str | None, prompt: str | None, sample: bool, title: str | None, seed: int, preview: bool,
           size: tuple[int, int] | None) -> int:
    """Register a new film run without filming it.

    The run_id partition is added; film it with ``run --run-id`` or from the UI.
    """
    at_most_one(plan=plan, prompt=prompt, sample=sample)
    source = PlanSource(plan=plan, prompt=prompt, title=title, seed=seed, sample=sample, size=size, preview=preview)
    instance, defs, store = open_film_context()
    run_id = submit_new_run(instance, defs, store, source)
    click.echo(f"submitted {run_id}")
    click.echo(f"film it with: sparkle-motion run --run-id {run_id}   (or materialize partition {run_id} in the UI)")
    return 0


@click.command("run")
@plan_source_options
@click.option("--run-id", help="film a run already submitted")
@click.option("--mode", type=click.Choice(["run", "dry"]), default="run", show_default=True,
              help="dry: plan intake only (validation report, warnings and estimated cost, nothing rendered)")
@click.option("--budget", metavar="DURATION", help="with --mode dry: warn when the estimate exceeds it (30m, 90s, 2h)")
@click.option("--json", "as_json", is_flag=True, help="with --mode dry: print the report (with its estimate) as JSON")
@click.option("--gpu", metavar="NAME_OR_GB",
              help="with --mode dry: estimate for this card (t4, l4, a100-40gb, a100-80gb, h100, h200, or GB): "
                   "each stage's placement, peak memory, fit and time, from the models' configs")
def run(plan: str | None, prompt: str | None, sample: bool, title: str | None, seed: int, preview: bool,
        size: tuple[int, int] | None, run_id: str | None, mode: str, budget: str | None, as_json: bool,
        gpu: str | None) -> int:
    """Make a film from a plan, a prompt or a submitted run.

    A new run_id from --plan, --prompt/--title or --sample, or --run-id of a run
    already submitted; prints the stages as they end and the video's path.
    """
    at_most_one(plan=plan, prompt=prompt, sample=sample, run_id=run_id)
    source = PlanSource(plan=plan, prompt=prompt, title=title, seed=seed, sample=sample, size=size, preview=preview)
    return film_a_run(source, run_id=run_id, mode=mode, as_json=as_json, budget=budget, gpu=gpu)


@click.command("demo")
def demo() -> int:
    """Film the bundled sample plan on the embedded backends."""
    return film_a_run(PlanSource(sample=True, preview=True))


COMMANDS = (submit, run, demo)
