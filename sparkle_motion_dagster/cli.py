"""The ``sparkle-motion`` command line.

Every command prints a clear message and exits non-zero on bad input; no
traceback reaches the user unless SPARKLE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .plan import PlanInputError, PlanValidationError, parse_plan_document, plan_json_schema, read_json_file, summarize
from .storage import UnknownRunError, UnsafeIdError

EXIT_BAD_INPUT = 2
SAMPLE_PLAN = Path(__file__).parent / "samples" / "rooftop_revelations.json"


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
    from .definitions import defs
    from .settings import state_dir
    from .storage import atomic_write_json

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
    from .settings import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg

    from .definitions import defs

    store = defs.resources["artifact_store"].store()
    return dg.DagsterInstance.get(), defs, store


def _submit(args: argparse.Namespace, instance, defs, store) -> str:
    from .runner import submit_run

    if getattr(args, "plan", None):
        document, source = read_json_file(args.plan), str(Path(args.plan).resolve())
    elif getattr(args, "sample", False):
        source = f"sample:{SAMPLE_PLAN.name}"
        document = read_json_file(SAMPLE_PLAN)
    else:
        if not (args.prompt and args.title):
            raise CliError("give --plan FILE, or both --prompt and --title")
        document, source = _planner(defs).plan(prompt=args.prompt, title=args.title, seed=args.seed), "prompt"
    clips = defs.resources["clips"]
    return submit_run(store, instance, document, source=source, preview=args.preview,
                      clip_model_ids=clips.model_ids, clip_backend=clips.backend)


def cmd_submit(args: argparse.Namespace) -> int:
    instance, defs, store = _context()
    run_id = _submit(args, instance, defs, store)
    print(f"submitted {run_id}")
    print(f"film it with: sparkle-motion run --run-id {run_id}   (or materialize partition {run_id} in the UI)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import film_run

    instance, defs, store = _context()
    run_id = args.run_id or _submit(args, instance, defs, store)
    print(f"run_id: {run_id}")
    started = time.monotonic()

    def on_stage(stage: str, status: str, seconds: float) -> None:
        mark = "ok" if status == "succeeded" else "FAILED"
        print(f"  {stage:<18} {mark:<6} {seconds:6.2f} s", flush=True)

    result = film_run(defs, instance, run_id, on_stage=on_stage, store=store)
    if not result.success:
        print(f"error: stage {result.failed_stage} failed: {result.error}", file=sys.stderr)
        print(f"after fixing it, film the same run again with: sparkle-motion run --run-id {run_id}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f} s")
    print(f"run_id: {run_id}")
    print(f"video_final: {result.final_video}")
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    from .settings import artifacts_root, ensure_dagster_home, state_dir

    print(f"state:         {state_dir()}")
    print(f"DAGSTER_HOME:  {ensure_dagster_home()}")
    print(f"artifact root: {artifacts_root()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.sample, args.preview, args.run_id, args.plan = True, True, None, None
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
        p.add_argument("--title")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--preview", action="store_true",
                       help="render the embedded animatic when the plan's video model is not configured")
        p.set_defaults(func=func)

    p = sub.add_parser("paths", help="print (and create) the state folder, DAGSTER_HOME and the artifact root")
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("demo", help="film the bundled sample plan on the embedded backends")
    p.set_defaults(func=cmd_demo)
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
    except Exception as exc:  # a bug or an environment problem: say what, not where
        if os.environ.get("SPARKLE_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc} (set SPARKLE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
