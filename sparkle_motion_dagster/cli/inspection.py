"""Inspection and housekeeping commands: artifacts, status, runs, events, review, the
catalog, the artifact service, retention and evacuation.

:func:`register` adds them to the ``sparkle-motion`` subparsers. Handlers return an
exit code and raise ValueError or LookupError for bad input (the main CLI prints
``error: ...`` and exits 2). ``python -m sparkle_motion_dagster.cli.inspection`` runs
them on their own.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.runs.storage import ArtifactStore, UnknownRunError, check_run_id

# The same values as in service.py, repeated so that the CLI loads without FastAPI installed.
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7077
TOKEN_ENV = "ARTIFACTS_FS_TOKEN"


# --- shared -------------------------------------------------------------------------

def _store() -> ArtifactStore:
    from sparkle_motion_dagster.runs import locations as settings

    settings.artifacts_backend()
    return ArtifactStore(settings.artifacts_root())


def _context():
    """The persistent Dagster instance and the artifact store."""
    from sparkle_motion_dagster.runs.locations import dagster_instance

    return dagster_instance(), _store()


def _known_run(store: ArtifactStore, run_id: str) -> str:
    check_run_id(run_id)
    if not store.run_dir(run_id).is_dir():
        raise UnknownRunError(f"run_id: unknown run {run_id!r}: no files under {store.root}")
    return run_id


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) if c is not None else "-" for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def _bar(fraction: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _warn_if_ephemeral(root: Path) -> None:
    from sparkle_motion_dagster.runs.evacuation import ephemeral_root_warning

    warning = ephemeral_root_warning(root)
    if warning:
        print(warning, file=sys.stderr)


# --- artifacts, status, runs, events ----------------------------------------------------

def cmd_artifacts(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.catalog import STAGE_ORDER
    from sparkle_motion_dagster.orchestration.status import artifacts_view

    store = _store()
    payload = artifacts_view(store, _known_run(store, args.run_id), args.stage)
    if args.stage and not payload["artifacts"] and args.stage not in (*STAGE_ORDER, "review"):
        raise ValueError(f"--stage: unknown stage {args.stage!r}; stages are {', '.join(STAGE_ORDER)}, review")
    if args.json:
        _print_json(payload)
        return 0
    run_dir = store.run_dir(args.run_id)
    rows = []
    for row in payload["artifacts"]:
        path = Path(row["local_path"])
        shown = path.relative_to(run_dir) if run_dir in path.parents else path
        duration = f"{row['duration_s']:.2f} s" if row["duration_s"] is not None else None
        rows.append([row["stage"], row["artifact_type"], row["media_type"], human_bytes(row["size_bytes"]),
                     duration, shown])
    if not rows:
        print(f"{args.run_id}: no artifacts" + (f" for stage {args.stage}" if args.stage else ""))
    else:
        print(_table(["STAGE", "TYPE", "MEDIA", "SIZE", "DURATION", "PATH"], rows))
        print(f"{len(rows)} artifact(s) in {len(payload['stages'])} stage(s) under {run_dir}")
    review = payload["review_summary"]
    print(f"review: {review['status']}" + (f" ({review['banner']})" if review["banner"] else ""))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.orchestration.status import film_status

    instance, store = _context()
    status = film_status(instance, store, args.run_id, log_lines=args.log_lines)
    if args.json:
        _print_json(status)
        return 0
    print(f"{status['run_id']}  {status['title'] or '(untitled)'}")
    print(f"status:    {status['status']} ({status['detail']})")
    print(f"progress:  {_bar(status['progress'])} {status['stages_done']}/{status['stages_total']} stages"
          f"   current stage: {status['current_stage']}")
    rows = [[s["name"], s["asset"], s["status"], (s["started_at"] or "")[:19].replace("T", " ") or None,
             f"{s['duration_s']:.2f} s" if s["duration_s"] is not None else None, len(s["artifacts"])]
            for s in status["stages"]]
    print()
    print(_table(["STAGE", "ASSET", "STATUS", "STARTED (UTC)", "DURATION", "FILES"], rows))
    for stage in status["stages"]:
        if stage["error"]:
            print(f"error in {stage['name']}: {stage['error']}")
    review = status["review"]
    if review:
        print(f"\nreview:    {review['status']}" + (f" by {review['reviewer']} at {review['reviewed_at']}"
                                                     if review["reviewer"] else ""))
        if review["banner"]:
            print(f"           {review['banner']}")
    for regeneration in status["regenerations"]:
        print(regeneration["note"])
    if status["dagster_runs"]:
        print("\ndagster runs:")
        for run in status["dagster_runs"]:
            print(f"  {run['dagster_run_id']}  {run['status']:<10} {run['source']:<10} {run['created_at']}")
    if status["log"]:
        print("\nrecent log:")
        for line in status["log"]:
            print(f"  {line['timestamp'][11:19]}  {line['level']:<7} {line['stage'] or '-':<15} {line['message']}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.orchestration.status import list_runs

    instance, store = _context()
    runs = list_runs(instance, store)
    if args.json:
        _print_json(runs)
        return 0
    if not runs:
        print(f"no film runs yet under {store.root}")
    else:
        print(_table(["RUN_ID", "STATUS", "PROGRESS", "AGE", "REVIEW", "TITLE"],
                     [[r["run_id"], r["status"], f"{round(r['progress'] * 100)}%", r["age"], r["review"], r["title"]]
                      for r in runs]))
    _warn_if_ephemeral(store.root)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.events import read_events

    store = _store()
    events = read_events(store.root, _known_run(store, args.run_id))
    if args.json:
        _print_json(events)
        return 0
    if not events:
        print(f"{args.run_id}: no events")
        return 0
    rows = []
    for event in events:
        payload = json.dumps(event["payload"], default=str, separators=(",", ":"))
        rows.append([event["timestamp"][:19].replace("T", " "), event["event_type"], event["actor"],
                     payload if len(payload) <= 90 else payload[:87] + "..."])
    print(_table(["TIME (UTC)", "TYPE", "ACTOR", "PAYLOAD"], rows))
    return 0


# --- review and the catalog ---------------------------------------------------------------

def cmd_review(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.review import record_review, review_state

    store = _store()
    record = record_review(store, args.run_id, args.decision, args.reviewer, args.notes or "", args.attach or [])
    print(f"{args.run_id}: {record['status']} by {record['reviewer']} (review {record['review_id']})")
    for attachment in record["attachments"]:
        print(f"  attached {attachment['source']} -> {attachment['path']}")
    state = review_state(store, args.run_id)
    print("ready to share" if state["ready_to_share"] else "not ready to share: the final video is not approved")
    from sparkle_motion_dagster.definitions import defs
    from sparkle_motion_dagster.orchestration.runner import run_review_gate

    passed = run_review_gate(defs, _context()[0], args.run_id)
    print(f"review gate (asset check approved_by_reviewer): {'passed' if passed else 'failed'}")
    return 0


def cmd_catalog_rebuild(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.catalog import Catalog

    catalog = Catalog(_store().root)
    found = catalog.rebuild()
    print(f"catalog rebuilt: {found} file(s) indexed in {catalog.index_path}")
    return 0


# --- the artifact service -------------------------------------------------------------------

def cmd_serve_artifacts(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.service.app import serve

    root = _store().root
    _warn_if_ephemeral(root)
    serve(args.host, args.port, store_root=root)
    return 0


def cmd_artifacts_env(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.catalog import INDEX_ENV

    root = Path(args.root).expanduser().resolve()
    index = Path(args.index).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ValueError(f"--root: {root} exists and is not a folder")
    if index.is_dir():
        raise ValueError(f"--index: {index} is a folder; give the index file, e.g. {root / 'index.duckdb'}")
    if args.token is not None and not args.token.strip():
        raise ValueError("--token: must not be empty (pass --emit-token to generate one)")
    token = args.token or (secrets.token_urlsafe(32) if args.emit_token else None)
    print("export ARTIFACTS_BACKEND=filesystem")
    print(f"export ARTIFACTS_FS_ROOT={shlex.quote(str(root))}")
    print(f"export {INDEX_ENV}={shlex.quote(str(index))}")
    if token:
        print(f"export {TOKEN_ENV}={shlex.quote(token)}")
    _warn_if_ephemeral(root)
    return 0


def check_health(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    """(healthy, what was seen) for a ``/healthz`` URL."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url: {url!r} must be an http:// or https:// URL, e.g. http://127.0.0.1:7077/healthz")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
            code = response.status
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return False, f"HTTP {exc.code}" + (f": {', '.join(body.get('problems', []))}" if body.get("problems") else "")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))
    if code == 200 and body.get("status") == "ok":
        return True, f"HTTP 200, backend {body.get('backend')}, auth {body.get('auth')}"
    return False, f"HTTP {code}, status {body.get('status')!r}"


def cmd_health(args: argparse.Namespace) -> int:
    healthy, seen = check_health(args.url)
    if healthy:
        print(f"healthy: {args.url} ({seen})")
        return 0
    print(f"unhealthy: {args.url} ({seen})", file=sys.stderr)
    return 1


# --- retention and evacuation --------------------------------------------------------------

def cmd_retention(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.retention import apply_retention, parse_age, plan_retention

    older_than = parse_age(args.older_than) if args.older_than is not None else None
    if args.keep_last is not None and args.keep_last < 0:
        raise ValueError(f"--keep-last: must be 0 or more, got {args.keep_last}")
    instance, store = _context()
    doomed = plan_retention(store, instance, keep_last=args.keep_last, older_than=older_than)
    if not doomed:
        print("nothing to delete")
        return 0
    print(_table(["RUN_ID", "AGE", "SIZE", "TITLE", "REASON"],
                 [[r["run_id"], r["age"], human_bytes(r["size_bytes"]), r["title"], r["reason"]] for r in doomed]))
    total = human_bytes(sum(r["size_bytes"] for r in doomed))
    if not args.yes:
        print(f"dry run: {len(doomed)} run(s), {total}, would be deleted; pass --yes to delete them")
        return 0
    report = apply_retention(store, instance, keep_last=args.keep_last, older_than=older_than)
    for skipped in report["skipped"]:
        print(f"kept {skipped['run_id']}: {skipped['skipped_because']}")
    print(f"deleted {len(report['deleted'])} run(s), freed {human_bytes(report['freed_bytes'])}; "
          f"logged to {report['log']}")
    return 0


class ProgressBar:
    """One line on stderr, rewritten in place."""

    def __init__(self, stream=None, width: int = 100):
        self.stream = stream or sys.stderr
        self.width = width
        self.shown = False

    def __call__(self, info: dict[str, Any]) -> None:
        files = f"{info['files_done']}/{info['files_total']} files"
        size = f"{human_bytes(info['bytes_done'])}/{human_bytes(info['bytes_total'])}"
        fraction = info["bytes_done"] / info["bytes_total"] if info["bytes_total"] else 1.0
        line = f"evacuating {_bar(fraction)} {files} {size} {info['run_id']}/{info['path']}"
        self.stream.write("\r" + line[:self.width].ljust(self.width))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def cmd_evacuate(args: argparse.Namespace) -> int:
    from sparkle_motion_dagster.runs.evacuation import evacuate

    if args.all and args.run_ids:
        raise ValueError("give run ids or --all, not both")
    if not args.all and not args.run_ids:
        raise ValueError("give the run ids to evacuate, or --all")
    store = _store()
    run_ids = store.run_ids() if args.all else args.run_ids
    if not run_ids:
        print(f"no film runs under {store.root}")
        return 0
    bar = ProgressBar()
    try:
        report = evacuate(store, run_ids, args.to, progress=bar)
    finally:
        bar.close()
    for run in report["runs"]:
        print(f"{run['run_id']}: {run['files_copied']} copied, {run['files_skipped']} already there "
              f"-> {run['destination']}")
    print(f"evacuated {len(report['runs'])} run(s) to {report['destination']}: {report['files_copied']} file(s) "
          f"copied ({human_bytes(report['bytes_copied'])}), {report['files_skipped']} unchanged, all verified")
    print(f"to use the copy: export ARTIFACTS_FS_ROOT={shlex.quote(report['destination'])} "
          "&& sparkle-motion catalog rebuild")
    return 0


# --- wiring ---------------------------------------------------------------------------------

def register(subparsers) -> None:
    """Add the inspection and housekeeping commands to an argparse subparsers object."""
    p = subparsers.add_parser("artifacts", help="list a run's artifacts (the /artifacts payload)")
    p.add_argument("run_id")
    p.add_argument("--stage", help="only this stage (e.g. dialogue_audio, finalize)")
    p.add_argument("--json", action="store_true", help="print the /artifacts JSON")
    p.set_defaults(func=cmd_artifacts)

    p = subparsers.add_parser("status", help="where a film run stands: stages, times, progress, recent log")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="print the /status JSON")
    p.add_argument("--log-lines", type=int, default=10, help="how many recent log lines (default 10)")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("runs", help="every film run with its status, progress and age")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser("events", help="a run's event log (reviews, evacuations, control, regenerations)")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_events)

    p = subparsers.add_parser("review", help="record a manual review of a run's final video")
    p.add_argument("run_id")
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", dest="decision", action="store_const", const="approve")
    decision.add_argument("--reject", dest="decision", action="store_const", const="reject")
    decision.add_argument("--skip", dest="decision", action="store_const", const="skip",
                          help="record that review was deliberately skipped (e.g. a test run)")
    p.add_argument("--reviewer", required=True, help="who reviewed it")
    p.add_argument("--notes", default="", help="what the reviewer saw")
    p.add_argument("--attach", nargs="+", metavar="FILE", help="screenshots, transcripts, notes to keep with it")
    p.set_defaults(func=cmd_review)

    p = subparsers.add_parser("catalog", help="maintain the artifact catalog")
    catalog = p.add_subparsers(dest="catalog_command", required=True)
    rebuild = catalog.add_parser("rebuild", help="recreate the catalog from the files under the artifact root")
    rebuild.set_defaults(func=cmd_catalog_rebuild)

    p = subparsers.add_parser("serve-artifacts", help="serve /artifacts, /status and files over HTTP (uvicorn)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}; other hosts need ARTIFACTS_FS_TOKEN")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.set_defaults(func=cmd_serve_artifacts)

    p = subparsers.add_parser("artifacts-env", help="print shell exports for the filesystem artifact backend")
    p.add_argument("--root", required=True, help="the artifact root (ARTIFACTS_FS_ROOT)")
    p.add_argument("--index", required=True, help="the catalog index file (ARTIFACTS_FS_INDEX)")
    p.add_argument("--token", help="the service token to export (ARTIFACTS_FS_TOKEN)")
    p.add_argument("--emit-token", action="store_true", help="generate a token when --token is not given")
    p.set_defaults(func=cmd_artifacts_env)

    p = subparsers.add_parser("health", help="probe the artifact service; exit 1 when it is not healthy")
    p.add_argument("--url", default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/healthz")
    p.set_defaults(func=cmd_health)

    p = subparsers.add_parser("retention", help="delete old film runs (a dry run unless --yes)")
    policy = p.add_mutually_exclusive_group(required=True)
    policy.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest runs")
    policy.add_argument("--older-than", metavar="AGE", help="delete runs older than AGE: 7d, 12h, 30m")
    p.add_argument("--yes", action="store_true", help="really delete (default: only list)")
    p.set_defaults(func=cmd_retention)

    p = subparsers.add_parser("evacuate", help="copy runs off an ephemeral artifact root, verified and resumable")
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p.add_argument("--all", action="store_true", help="every run under the artifact root")
    p.add_argument("--to", required=True, metavar="DEST", help="the destination artifact root (e.g. on Drive)")
    p.set_defaults(func=cmd_evacuate)


def main(argv: list[str] | None = None) -> int:
    """These commands through the whole command line (``python -m sparkle_motion_dagster.cli.inspection``)."""
    from sparkle_motion_dagster.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
