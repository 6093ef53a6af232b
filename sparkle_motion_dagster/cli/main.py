"""The ``sparkle-motion`` command line.

Every command prints a clear message and exits non-zero on bad input; no
traceback reaches the user unless SPARKLE_DEBUG=1.
"""

from __future__ import annotations

import os

# torch's OpenMP threads busy-wait by default, which starves ffmpeg and the other
# stage work on small machines; passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import atexit
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.film.plan import PlanInputError, PlanValidationError, parse_plan_document, plan_json_schema, read_json_file, summarize
from sparkle_motion_dagster.runs.storage import UnknownRunError, UnsafeIdError

EXIT_BAD_INPUT = 2
SAMPLE_PLAN = Path(__file__).resolve().parents[1] / "samples" / "rooftop_revelations.json"


class CliError(Exception):
    """A problem to report in one line, with exit status 2."""


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"title:          {summary['title']}")
    print(f"plan_id:        {summary['plan_id']}")
    print(f"shots:          {summary['shots']}")
    print(f"base images:    {summary['base_images']}")
    print(f"characters:     {summary['characters']}")
    print(f"dialogue lines: {summary['dialogue_lines']}")
    print(f"runtime:        {summary['runtime_sec']:g} s at {summary['fps']:g} fps")
    print(f"video model:    {summary['video_model_id']}")


def cmd_validate(args: argparse.Namespace) -> int:
    document = parse_plan_document(read_json_file(args.file))
    summary = summarize(document.plan)
    if args.json:
        print(json.dumps({"valid": True, "summary": summary}, indent=2))
    else:
        print(f"{args.file}: valid MoviePlan")
        _print_summary(summary)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(plan_json_schema(), indent=2))
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "plan"


def cmd_plan(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.definitions import defs
    from sparkle_motion_dagster.runs.locations import state_dir
    from sparkle_motion_dagster.runs.storage import atomic_write_json

    envelope = _planner(defs).plan(prompt=args.prompt, title=args.title, seed=args.seed)
    out = Path(args.out) if args.out else state_dir() / "plans" / f"{_slug(args.title)}.json"
    if out.exists() and not args.force:
        raise CliError(f"{out} already exists; pass --force to replace it or --out to choose another file")
    atomic_write_json(out.resolve(), envelope)
    print(f"wrote plan artifact {out.resolve()}")
    _print_summary(summarize(parse_plan_document(envelope).plan))
    return 0


def _planner(defs):
    return defs.resources["planner"]


def _context():
    """The Dagster instance (persistent DAGSTER_HOME), the definitions and the artifact store."""
    from sparkle_motion_dagster.runs.locations import artifacts_backend, dagster_instance

    artifacts_backend()
    instance = dagster_instance()
    from sparkle_motion_dagster.definitions import defs

    return instance, defs, defs.resources["artifact_store"].store()


def _submit(args: argparse.Namespace, instance, defs, store, *, check_backend: bool = True) -> str:
    from sparkle_motion_dagster.orchestration.runner import submit_run

    if getattr(args, "plan", None):
        document, source = read_json_file(args.plan), str(Path(args.plan).resolve())
    elif getattr(args, "sample", False):
        source = f"sample:{SAMPLE_PLAN.name}"
        document = read_json_file(SAMPLE_PLAN)
    else:
        if not (args.prompt and args.title):
            raise CliError("give --plan FILE, or both --prompt and --title")
        document, source = _planner(defs).plan(prompt=args.prompt, title=args.title, seed=args.seed), "prompt"
    if getattr(args, "size", None):
        document = _with_size(document, *args.size)
    clips = defs.resources["clips"]
    return submit_run(store, instance, document, source=source, preview=args.preview,
                      clip_model_ids=clips.model_ids, clip_backend=clips.backend, check_backend=check_backend)


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"--size: expected WxH such as 640x360, got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise argparse.ArgumentTypeError(f"--size: {text} must be even numbers of at least 64")
    return width, height


def _with_size(document: dict, width: int, height: int) -> dict:
    """The same plan with render_profile.video width and height set (the envelope's or the bare plan's)."""
    document = json.loads(json.dumps(document))
    plan = document["validated_plan"] if isinstance(document.get("validated_plan"), dict) else document
    video = plan.setdefault("render_profile", {}).setdefault("video", {})
    if isinstance(video, dict):
        video.update(width=width, height=height)
    return document


def cmd_submit(args: argparse.Namespace) -> int:
    instance, defs, store = _context()
    run_id = _submit(args, instance, defs, store)
    print(f"submitted {run_id}")
    print(f"film it with: sparkle-motion run --run-id {run_id}   (or materialize partition {run_id} in the UI)")
    return 0


def _print_stage(stage: str, status: str, seconds: float) -> None:
    mark = "ok" if status == "succeeded" else "FAILED"
    try:
        print(f"  {stage:<18} {mark:<6} {seconds:6.2f} s", flush=True)
    except BrokenPipeError:  # the reader of our output has gone; the film goes on
        pass


def _film(instance, defs, store, run_id: str, **kwargs) -> int:
    """Film (some stages of) a run, print progress, and report the outcome."""
    from sparkle_motion_dagster.orchestration.runner import film_run

    started = time.monotonic()
    result = film_run(defs, instance, run_id, on_stage=_print_stage, store=store, log_level="CRITICAL", **kwargs)
    if "movie_plan" in result.stage_seconds:
        report = store.path(run_id, "plan_intake", "plan_validation.json")
        if report.exists():
            details = json.loads(report.read_text())
            for note in details["warnings"] + [details["video"].get("substitution")]:
                if note:
                    print(f"note: {note}")
    if not result.success:
        print(f"error: stage {result.failed_stage} failed: {result.error}", file=sys.stderr)
        print(f"continue it with: sparkle-motion resume {run_id}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f} s")
    print(f"run_id: {run_id}")
    if result.final_video:
        print(f"video_final: {result.final_video}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    instance, defs, store = _context()
    if args.mode == "dry":
        return _dry_run(args, instance, defs, store)
    run_id = args.run_id or _submit(args, instance, defs, store)
    print(f"run_id: {run_id}")
    return _film(instance, defs, store, run_id)


def _dry_run(args: argparse.Namespace, instance, defs, store) -> int:
    """Plan intake only: validate, report warnings, render nothing."""
    from sparkle_motion_dagster.orchestration.runner import DRY_RUN_CONFIG

    if args.run_id:
        run_id = args.run_id
    else:  # an unconfigured model is reported as a warning instead of refused
        run_id = _submit(args, instance, defs, store, check_backend=False)
    print(f"run_id: {run_id} (dry run)")
    status = _film(instance, defs, store, run_id, stages=["movie_plan"], run_config=DRY_RUN_CONFIG)
    if status == 0:
        report = json.loads(store.path(run_id, "plan_intake", "plan_validation.json").read_text())
        _print_summary(report["summary"])
        for warning in report["warnings"] or ["none"]:
            print(f"warning: {warning}" if warning != "none" else "warnings: none")
        print(f"report: {store.path(run_id, 'plan_intake', 'plan_validation.json')}")
    return status


def _known_run(instance, store, run_id: str) -> str:
    from sparkle_motion_dagster.runs.storage import check_run_id

    check_run_id(run_id)
    if not instance.has_dynamic_partition("run_id", run_id):
        raise LookupError(f"unknown run_id {run_id!r}: it was never submitted to this Dagster instance")
    return run_id


def cmd_rerun(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.events import write_event
    from sparkle_motion_dagster.orchestration.runner import downstream_of, force_config

    instance, defs, store = _context()
    run_id = _known_run(instance, store, args.run_id)
    stages = downstream_of(defs, args.from_stage)
    write_event(store.root, run_id, "rerun", {"from": args.from_stage, "stages": stages}, actor="cli")
    print(f"re-materializing {', '.join(stages)} for {run_id}")
    return _film(instance, defs, store, run_id, stages=stages, run_config=force_config([args.from_stage]))


def cmd_regenerate(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.events import read_events, write_event
    from sparkle_motion_dagster.runs.regenerate import plan_regeneration

    instance, defs, store = _context()
    run_id = _known_run(instance, store, args.run_id)
    change = plan_regeneration(store, run_id, args.shot, what=args.what, seed=args.seed)
    count = 1 + sum(1 for e in read_events(store.root, run_id, "regeneration") if e["payload"].get("shot_id") == args.shot)
    write_event(store.root, run_id, "regeneration", {**change, "count": count}, actor="cli")
    print(f"{args.shot}: regenerating the {args.what} with seed(s) {change['seeds']} (regenerations: {count})")
    return _film(instance, defs, store, run_id, stages=change["stages"])


def cmd_resume(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs import control
    from sparkle_motion_dagster.runs.events import write_event
    from sparkle_motion_dagster.orchestration.runner import mark_abandoned_runs, missing_stages

    instance, defs, store = _context()
    run_id = _known_run(instance, store, args.run_id)
    if control.read_state(store, run_id)["state"] != "running":
        control.set_state(store, run_id, "running")
    abandoned = mark_abandoned_runs(instance, run_id)
    stages = missing_stages(defs, instance, store, run_id)
    write_event(store.root, run_id, "resume", {"stages": stages, "abandoned_dagster_runs": abandoned}, actor="cli")
    if not stages:
        print(f"{run_id} is complete; nothing to do")
        print(f"video_final: {store.path(run_id, 'finalize', 'video_final.mp4')}")
        return 0
    print(f"resuming {run_id}: {', '.join(stages)}")
    return _film(instance, defs, store, run_id, stages=stages)


def cmd_control(args: argparse.Namespace) -> int:
    import dagster as dg

    from sparkle_motion_dagster.runs import control
    from sparkle_motion_dagster.runs.events import write_event

    instance, defs, store = _context()
    run_id = _known_run(instance, store, args.run_id)
    current = control.read_state(store, run_id)["state"]
    target = {"pause": "paused", "resume": "running", "stop": "stopped"}[args.action]
    if args.action == "resume" and current == "stopped":
        raise CliError(f"{run_id} was stopped; continue it with `sparkle-motion resume {run_id}`")
    control.set_state(store, run_id, target)
    write_event(store.root, run_id, f"control.{args.action}", {"previous": current}, actor="cli")
    if args.action == "stop":
        queued = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": run_id},
                                                         statuses=[dg.DagsterRunStatus.QUEUED]))
        for run in queued:
            instance.report_run_canceled(run, message="stopped with sparkle-motion control stop")
    print({"pause": f"{run_id} paused: the running stage finishes, then the run holds",
           "resume": f"{run_id} resumed",
           "stop": f"{run_id} stopped: it ends at the next item or stage; continue later with "
                   f"`sparkle-motion resume {run_id}`"}[args.action])
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.locations import artifacts_root, dagster_instance, ensure_dagster_home, state_dir

    dagster_instance().dispose()  # creates the storage of a new home, once
    print(f"state:         {state_dir()}")
    print(f"DAGSTER_HOME:  {ensure_dagster_home()}")
    print(f"artifact root: {artifacts_root()}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.cli.doctor import diagnose

    report = diagnose()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["ok"] else 1
    for stage, info in report["stages"].items():
        state = "ok" if info.get("ok") else "PROBLEM"
        print(f"{stage:<17} {info['backend']:<18} {state:<8} {info.get('device', '-'):<6} {info['why']}")
        if info.get("problem"):
            print(f"{'':<17} {info['problem']}")
    print(f"ffmpeg: {report['ffmpeg']}")
    cuda = report["cuda"]
    print("cuda: " + ("torch not installed" if cuda is None else
                      ", ".join(cuda["devices"]) if cuda["available"] else "not available (CPU only)"))
    print("packages: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items() if v))
    absent = [k for k, v in report["packages"].items() if not v]
    if absent:
        print("not installed: " + ", ".join(absent) + " (the [models] extra adds torch, diffusers, transformers)")
    for problem in report["missing"]:
        print(f"missing: {problem}")
    return 0 if report["ok"] else 1


def cmd_make_tiny_models(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.dev.tiny_models import build_all

    built = build_all(Path(args.dir))
    for name, path in built.items():
        print(f"built {name}: {path}")
    print("try the real adapters on them:")
    print(f"  export IMAGES_SDXL_MODEL={built['sdxl']}")
    print(f"  export VIDEOS_WAN_MODEL={built['wan-flf2v']}   # or {built['wan-i2v']} (image-to-video only)")
    print(f"  export TTS_VITS_MODEL={built['vits']}")
    print(f"  export WAV2LIP_CHECKPOINT={built['wav2lip']}")
    print("  sparkle-motion run --sample --size 64x64")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.sample, args.preview, args.run_id, args.plan, args.mode = True, True, None, None, "run"
    return cmd_run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparkle-motion", description="Turn a story prompt into a short film.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a plan file and print its summary or every problem")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the MoviePlan JSON Schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plan", help="write a plan artifact for a prompt with the configured planner")
    p.add_argument("--prompt", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="where to write it (default: state/plans/<title>.json)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_plan)

    for name, func, helptext in (
        ("submit", cmd_submit, "register a new film run (a run_id partition) without filming it"),
        ("run", cmd_run, "make a film: a new run_id from a plan or a prompt, or film a submitted run_id"),
    ):
        p = sub.add_parser(name, help=helptext)
        source = p.add_mutually_exclusive_group()
        source.add_argument("--plan", help="a MoviePlan or plan artifact JSON file")
        source.add_argument("--prompt", help="a story prompt for the planner (with --title)")
        source.add_argument("--sample", action="store_true", help="the bundled sample plan (Rooftop Revelations)")
        if name == "run":
            source.add_argument("--run-id", help="film a run already submitted")
            p.add_argument("--mode", choices=["run", "dry"], default="run",
                           help="dry: plan intake only (validation report and warnings, nothing rendered)")
        p.add_argument("--title")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--preview", action="store_true",
                       help="render the embedded animatic when the plan's video model is not configured")
        p.add_argument("--size", type=_size, help="output size WxH (multiples of 2), e.g. 640x360 for a fast proof")
        p.set_defaults(func=func)

    p = sub.add_parser("rerun", help="re-materialize a stage and everything downstream (the seed's resume_from)")
    p.add_argument("run_id")
    p.add_argument("--from", dest="from_stage", required=True, help="the stage (asset) to redo")
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("regenerate", help="re-render one shot's clip or keyframes, then assembly and the final cut")
    p.add_argument("run_id")
    p.add_argument("--shot", required=True)
    p.add_argument("--what", choices=["clip", "keyframe"], default="clip")
    p.add_argument("--seed", type=int, help="the new seed (default: the current one + 1)")
    p.set_defaults(func=cmd_regenerate)

    p = sub.add_parser("resume", help="materialize only what is missing or failed for a run")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("control", help="pause, resume or stop a running film run")
    p.add_argument("action", choices=["pause", "resume", "stop"])
    p.add_argument("run_id")
    p.set_defaults(func=cmd_control)

    p = sub.add_parser("paths", help="print (and create) the state folder, DAGSTER_HOME and the artifact root")
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("doctor", help="which backend each stage uses, the device, and what is missing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

    dev = sub.add_parser("dev", help="developer tools").add_subparsers(dest="dev_command", required=True)
    p = dev.add_parser("make-tiny-models", help="build tiny random SDXL and Wan models (diffusers format) in DIR")
    p.add_argument("dir")
    p.set_defaults(func=cmd_make_tiny_models)

    p = sub.add_parser("demo", help="film the bundled sample plan on the embedded backends")
    p.set_defaults(func=cmd_demo)

    from sparkle_motion_dagster.cli import inspection as cli_inspect

    cli_inspect.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PlanValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (PlanInputError, UnsafeIdError, UnknownRunError, LookupError, FileExistsError, CliError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, LookupError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sparkle-motion runs | head`: the reader has gone, say nothing
        sys.stdout = open(os.devnull, "w")
        return 141
    except Exception as exc:  # a bug or an environment problem: say what, not where
        if os.environ.get("SPARKLE_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc} (set SPARKLE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    """The console script. Everything is written and flushed when main returns; tearing down
    Dagster's module graph at interpreter exit would add ~0.4 s to every command, so the exit
    handlers run here and the process leaves at once."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
