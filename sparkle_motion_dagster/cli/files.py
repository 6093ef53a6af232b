"""File commands: the artifact service (``serve-artifacts``, ``artifacts-env``, ``health``, ``link``),
the catalog (``catalog rebuild``), ``retention`` and ``evacuate``.
"""

from __future__ import annotations

import json
import secrets
import shlex
from pathlib import Path

import click

from sparkle_motion_dagster.cli.context import open_instance_and_store, open_store, warn_if_ephemeral
from sparkle_motion_dagster.cli.options import exactly_one
from sparkle_motion_dagster.cli.output import CopyProgress, echo_table, human_bytes, is_terminal

# The same values as in service/app.py, repeated so that the CLI loads without FastAPI installed.
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7077
TOKEN_ENV = "ARTIFACTS_FS_TOKEN"
DEFAULT_HEALTH_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/healthz"


# --- the artifact service ---------------------------------------------------------------

@click.command("serve-artifacts")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="other hosts need ARTIFACTS_FS_TOKEN")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
def serve_artifacts(host: str, port: int) -> int:
    """Serve /artifacts, /status and files over HTTP (uvicorn)."""
    from sparkle_motion_dagster.service.app import serve

    root = open_store().root
    warn_if_ephemeral(root)
    serve(host, port, store_root=root)
    return 0


@click.command("artifacts-env")
@click.option("--root", required=True, help="the artifact root (ARTIFACTS_FS_ROOT)")
@click.option("--index", required=True, help="the catalog index file (ARTIFACTS_FS_INDEX)")
@click.option("--token", help="the service token to export (ARTIFACTS_FS_TOKEN)")
@click.option("--emit-token", is_flag=True, help="generate a token when --token is not given")
def artifacts_env(root: str, index: str, token: str | None, emit_token: bool) -> int:
    """Print shell exports for the filesystem artifact backend."""
    from sparkle_motion_dagster.insight.catalog import INDEX_ENV

    root_path = Path(root).expanduser().resolve()
    index_path = Path(index).expanduser().resolve()
    if root_path.exists() and not root_path.is_dir():
        raise ValueError(f"--root: {root_path} exists and is not a folder")
    if index_path.is_dir():
        raise ValueError(f"--index: {index_path} is a folder; give the index file, e.g. {root_path / 'index.duckdb'}")
    if token is not None and not token.strip():
        raise ValueError("--token: must not be empty (pass --emit-token to generate one)")
    token = token or (secrets.token_urlsafe(32) if emit_token else None)
    click.echo("export ARTIFACTS_BACKEND=filesystem")
    click.echo(f"export ARTIFACTS_FS_ROOT={shlex.quote(str(root_path))}")
    click.echo(f"export {INDEX_ENV}={shlex.quote(str(index_path))}")
    if token:
        click.echo(f"export {TOKEN_ENV}={shlex.quote(token)}")
    warn_if_ephemeral(root_path)
    return 0


def check_health(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    """(healthy, what was seen) for a ``/healthz`` URL."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url: {url!r} must be an http:// or https:// URL, e.g. {DEFAULT_HEALTH_URL}")
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


@click.command("health")
@click.option("--url", default=DEFAULT_HEALTH_URL, show_default=True)
def health(url: str) -> int:
    """Probe the artifact service (exit 1 when unhealthy)."""
    healthy, seen = check_health(url)
    if healthy:
        click.echo(f"healthy: {url} ({seen})")
        return 0
    click.echo(f"unhealthy: {url} ({seen})", err=True)
    return 1


@click.command("link")
@click.argument("target", metavar="LINK_OR_FILE")
@click.option("--open", "open_it", is_flag=True, help="also open it in the browser")
def link(target: str, open_it: bool) -> int:
    """Print the link that plays a file now: give an old play link (any port), a file, or a path
    under the artifact root. The service's address is SPARKLE_ARTIFACTS_URL, else where the
    running serve-artifacts recorded it, else http://127.0.0.1:7077."""
    from sparkle_motion_dagster.service.links import current_link

    url = current_link(open_store().root, target)
    click.echo(url)
    if open_it:
        import webbrowser

        webbrowser.open(url)
    return 0


# --- the catalog ----------------------------------------------------------------------------

@click.command("rebuild")
def catalog_rebuild() -> int:
    """Recreate the catalog from the files under the artifact root."""
    from sparkle_motion_dagster.insight.catalog import Catalog

    catalog_index = Catalog(open_store().root)
    found = catalog_index.rebuild()
    click.echo(f"catalog rebuilt: {found} file(s) indexed in {catalog_index.index_path}")
    return 0


catalog = click.Group("catalog", help="Maintain the artifact catalog.", commands=[catalog_rebuild])


# --- retention and evacuation -----------------------------------------------------------------

@click.command("retention")
@click.option("--keep-last", type=int, metavar="N", help="keep the N newest runs")
@click.option("--older-than", metavar="AGE", help="delete runs older than AGE: 7d, 12h, 30m")
@click.option("--include-unfilmed", is_flag=True,
              help="also delete runs submitted but never filmed (kept by default: they may be about to start)")
@click.option("--yes", is_flag=True, help="really delete (default: only list)")
def retention(keep_last: int | None, older_than: str | None, include_unfilmed: bool, yes: bool) -> int:
    """Delete old film runs (a dry run unless --yes)."""
    from sparkle_motion_dagster.lifecycle.retention import apply_retention, parse_age, plan_retention

    exactly_one(keep_last=keep_last, older_than=older_than)
    age = parse_age(older_than) if older_than is not None else None
    if keep_last is not None and keep_last < 0:
        raise ValueError(f"--keep-last: must be 0 or more, got {keep_last}")
    instance, store = open_instance_and_store()
    doomed = plan_retention(store, instance, keep_last=keep_last, older_than=age, include_unfilmed=include_unfilmed)
    if not doomed:
        click.echo("nothing to delete")
        return 0
    echo_table(["RUN_ID", "AGE", "SIZE", "TITLE", "REASON"],
               [[r["run_id"], r["age"], human_bytes(r["size_bytes"]), r["title"], r["reason"]] for r in doomed])
    total = human_bytes(sum(r["size_bytes"] for r in doomed))
    if not yes:
        click.echo(f"dry run: {len(doomed)} run(s), {total}, would be deleted; pass --yes to delete them")
        return 0
    report = apply_retention(store, instance, keep_last=keep_last, older_than=age, include_unfilmed=include_unfilmed)
    for skipped in report["skipped"]:
        click.echo(f"kept {skipped['run_id']}: {skipped['skipped_because']}")
    click.echo(f"deleted {len(report['deleted'])} run(s), freed {human_bytes(report['freed_bytes'])}; "
               f"logged to {report['log']}")
    return 0


class RunLineProgress:
    """Evacuation progress for a log, not a terminal: one plain line per run as it is done
    (no carriage returns, no redrawn bar)."""

    def __init__(self, label: str):
        self.label = label
        self._run: dict | None = None

    def __call__(self, info: dict) -> None:
        if self._run and self._run["run_id"] != info["run_id"]:
            self._say()
        if not self._run or self._run["run_id"] != info["run_id"]:
            self._run = {"run_id": info["run_id"], "files": 0, "start_bytes": info["bytes_done"]}
        self._run.update(files=self._run["files"] + 1, bytes_done=info["bytes_done"], files_done=info["files_done"],
                         files_total=info["files_total"])

    def _say(self) -> None:
        run = self._run
        click.echo(f"{self.label} {run['run_id']}: {run['files']} file(s), "
                   f"{human_bytes(run['bytes_done'] - run['start_bytes'])} "
                   f"({run['files_done']}/{run['files_total']} files in all)", err=True)

    def close(self) -> None:
        if self._run:
            self._say()
            self._run = None


@click.command("evacuate")
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option("--all", "every_run", is_flag=True, help="every run under the artifact root")
@click.option("--to", "destination", required=True, metavar="DEST",
              help="the destination artifact root (e.g. on Drive)")
@click.option("--allow-incomplete", is_flag=True,
              help="copy a run that is being filmed as it is (recorded as incomplete, naming the missing stages)")
def evacuate(run_ids: tuple[str, ...], every_run: bool, destination: str, allow_incomplete: bool) -> int:
    """Copy runs to another artifact root, verified.

    For an artifact root that will vanish (a notebook VM); an interrupted copy resumes. A run
    being filmed (running, paused, queued) is refused, naming its missing stages, unless
    --allow-incomplete; a run lacking stages is recorded as incomplete, never completed.
    """
    from sparkle_motion_dagster.lifecycle.evacuation import evacuate as copy_runs

    if every_run and run_ids:
        raise ValueError("give run ids or --all, not both")
    if not every_run and not run_ids:
        raise ValueError("give the run ids to evacuate, or --all")
    store = open_store()
    chosen = store.run_ids() if every_run else list(run_ids)
    if not chosen:
        click.echo(f"no film runs under {store.root}")
        return 0
    import sys

    active = _filmed_runs(store, chosen)
    progress = CopyProgress("evacuating") if is_terminal(sys.stderr) else RunLineProgress("evacuating")
    try:
        report = copy_runs(store, chosen, destination, progress=progress, allow_incomplete=allow_incomplete,
                           active=active)
    finally:
        progress.close()
    for run in report["runs"]:
        links = f", {run['links_copied']} link(s) copied as links" if run["links_copied"] else ""
        incomplete = ""
        if run["status"] == "incomplete":
            incomplete = (f" (incomplete: missing {', '.join(run['missing_stages']) or 'nothing yet'}"
                          + (f"; it was {run['filming']}" if run["filming"] else "") + ")")
        click.echo(f"{run['run_id']}: {run['files_copied']} copied, {run['files_skipped']} already there{links} "
                   f"-> {run['destination']}{incomplete}")
        for left in run["left_out"]:
            click.echo(f"  left out {left['path']}: {left['reason']}")
    partial = [r["run_id"] for r in report["runs"] if r["status"] == "incomplete"]
    click.echo(f"evacuated {len(report['runs'])} run(s) to {report['destination']}"
               + (f", {len(partial)} of them incomplete ({', '.join(partial)})" if partial else "")
               + f": {report['files_copied']} file(s) copied ({human_bytes(report['bytes_copied'])}), "
               f"{report['files_skipped']} unchanged, all verified")
    click.echo(f"to use the copy: export ARTIFACTS_FS_ROOT={shlex.quote(report['destination'])} "
               "&& sparkle-motion catalog rebuild")
    return 0


def _filmed_runs(store, run_ids: list[str]) -> dict[str, str]:
    """The runs among ``run_ids`` that the Dagster instance shows being filmed (queued, running,
    paused); empty where there is no instance to ask (the run's own files still tell)."""
    from sparkle_motion_dagster.orchestration.status import film_status
    from sparkle_motion_dagster.store.locations import dagster_instance

    try:
        instance = dagster_instance(create=False)
    except Exception:  # noqa: BLE001 - no instance here: the files decide
        return {}
    found = {}
    for run_id in run_ids:
        try:
            status = film_status(instance, store, run_id, log_lines=0, artifacts=False)["status"]
        except (LookupError, ValueError):
            continue
        if status in ("queued", "running", "paused"):
            found[run_id] = status
    return found


COMMANDS = (serve_artifacts, artifacts_env, health, link, catalog, retention, evacuate)
