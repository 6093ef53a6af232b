"""The plan drop-folder sensor: a file dropped in the inbox becomes a film run.

A tick never raises, whatever the inbox holds: each file is filmed, rejected
(moved to ``rejected/`` with its reasons), set aside as a duplicate, or left
where it is with the reason in the tick's log and skip message. One file's
trouble never stops the others.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import dagster as dg

from sparkle_motion_dagster.film.intake import resolve_video_backend
from sparkle_motion_dagster.film.plan import PlanValidationError, parse_plan_document
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.clips import ClipRenderer
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.lifecycle import inbox
from sparkle_motion_dagster.store.run_files import submit_request
from sparkle_motion_dagster.lifecycle.shown import one_line
from sparkle_motion_dagster.store.storage import ArtifactStore
from sparkle_motion_dagster.lifecycle.titles import TITLE_TAG, document_title, shown_title

DEFAULT_BATCH = 5
MAX_LOGGED_CHARS = 2000  # the full reasons are in the error file beside the rejected one


def _batch_cap() -> int:
    """SPARKLE_INBOX_BATCH, or the default when it is not a number."""
    try:
        return max(1, int(os.environ.get("SPARKLE_INBOX_BATCH", DEFAULT_BATCH)))
    except ValueError:
        return DEFAULT_BATCH


def _shown(name: str) -> str:
    """A file name as messages, logs and tags show it: escaped onto one line, at most 200 characters."""
    return one_line(name, 200)


def _problems(exc: Exception) -> list[str]:
    """The reasons a file is rejected: every plan problem, or the error's own message."""
    if isinstance(exc, PlanValidationError):
        return [str(issue) for issue in exc.issues]
    if isinstance(exc, ValueError):
        return [str(exc)]
    return [f"could not be checked: {type(exc).__name__}: {exc}"]


def _read_cursor(cursor: str | None) -> dict[str, list[int]]:
    """The files seen on the last tick; a cursor that cannot be read starts afresh."""
    try:
        seen = json.loads(cursor).get("seen", {}) if cursor else {}
    except (ValueError, AttributeError, RecursionError):
        return {}
    return seen if isinstance(seen, dict) else {}


@dataclass
class Tick:
    """What one tick did: the runs it requests, the partitions they need, notes for the skip
    message, and the files that changed while they were read (looked at again later)."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    new_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changed: list[inbox.Drop] = field(default_factory=list)

    def request(self, run_id: str, digest: str, **tags: str) -> None:
        self.new_keys.append(run_id)
        self.run_requests.append(dg.RunRequest(run_key=f"{run_id}:{digest[:16]}", partition_key=run_id,
                                               tags={"sparkle/source": "inbox", **tags}))


def _reject(context: dg.SensorEvaluationContext, folder, drop: inbox.Drop, problems: list[str], tick: Tick) -> None:
    """Move a drop to rejected/ with its reasons; when even that fails, leave it and say why."""
    name, reasons = _shown(drop.name), one_line("; ".join(problems), MAX_LOGGED_CHARS)
    try:
        inbox.reject(folder, drop, problems)
    except Exception as exc:  # noqa: BLE001 - the tick goes on with the other files
        context.log.error(f"{name}: could not be moved to rejected/ ({type(exc).__name__}: {one_line(exc)}); "
                          f"left in the inbox. Its problems: {reasons}")
        tick.notes.append(f"{name}: left in the inbox, it could not be moved to rejected/ ({one_line(exc)})")
        return
    context.log.warning(f"rejected {name}: {reasons}")
    tick.notes.append(f"{name}: rejected")


def _take(context: dg.SensorEvaluationContext, folder, store: ArtifactStore, clips: ClipRenderer,
          drop: inbox.Drop, tick: Tick) -> None:
    """Film, reject, set aside or leave one stable drop. Never raises."""
    name = _shown(drop.name)
    try:
        loaded = inbox.load_drop(drop)
        item = inbox.classify(loaded.data)
        if item.kind == "plan":
            plan = parse_plan_document(item.document).plan
            resolve_video_backend(plan, served=clips.model_ids, backend=clips.backend, preview=item.preview)
    except inbox.DropChanged:
        tick.changed.append(drop)
        tick.notes.append(f"{name}: changed while it was read; read again once it stops changing")
        return
    except Exception as exc:  # noqa: BLE001 - whatever a file holds, it is rejected with the reason
        _reject(context, folder, drop, _problems(exc), tick)
        return

    digest = inbox.content_run_id(loaded.raw)[1]
    try:
        run_id, filmed = inbox.run_id_for_content(store, digest)
        if filmed:
            inbox.mark_duplicate(folder, drop, run_id)
            tick.notes.append(f"{name}: same content as {run_id}, not filmed twice")
            return
        # A prompt is planned by the run's movie_plan stage, not here: a tick must stay short.
        submit_request(store, run_id, source=f"inbox:{drop.name}", preview=item.preview, content_sha256=digest,
                       **({"document": item.document} if item.kind == "plan" else
                          {"prompt": {"prompt": item.prompt, "title": item.title, "seed": item.seed}}))
    except Exception as exc:  # noqa: BLE001 - the storage, not the file: leave it for a later tick
        context.log.error(f"{name}: left in the inbox, it could not be submitted "
                          f"({type(exc).__name__}: {one_line(exc)})")
        tick.notes.append(f"{name}: left in the inbox, it could not be submitted ({one_line(exc)})")
        return
    title = document_title(item.document) if item.kind == "plan" else (item.title and shown_title(item.title))
    tick.request(run_id, digest, **{"sparkle/inbox_file": name, **({TITLE_TAG: title} if title else {})})
    try:
        inbox.accept(folder, drop, run_id, loaded)
    except Exception as exc:  # noqa: BLE001 - the run is submitted; the file waits as a duplicate
        context.log.error(f"{name}: submitted as {run_id} but not moved to accepted/ "
                          f"({type(exc).__name__}: {one_line(exc)})")
        return
    context.log.info(f"{name} accepted as {run_id}")


def _request_lost_runs(context: dg.SensorEvaluationContext, folder, store: ArtifactStore, tick: Tick) -> None:
    """A request whose partition never got added (the daemon stopped mid-tick) is requested again."""
    accepted_dir = folder / "accepted"
    if not accepted_dir.is_dir():
        return
    for accepted in sorted(accepted_dir.glob("run_*.json")):
        run_id = accepted.stem.split(".")[0]
        try:
            if run_id in tick.new_keys or not store.request_path(run_id).exists() \
                    or context.instance.has_dynamic_partition("run_id", run_id):
                continue
            raw, _ = inbox.read_regular_file(accepted, name=accepted.name)
        except Exception as exc:  # noqa: BLE001 - one odd file in accepted/ stops nothing
            context.log.warning(f"accepted/{_shown(accepted.name)}: not requested again: {one_line(exc)}")
            continue
        tick.request(run_id, inbox.content_run_id(raw)[1])


def build_plan_inbox_sensor(job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="plan_inbox",
        job=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Films every plan (MoviePlan, plan artifact or {title, prompt} request) dropped into "
                    "SPARKLE_PLAN_INBOX (default state/inbox); invalid files go to rejected/ with their errors.",
    )
    def plan_inbox(
        context: dg.SensorEvaluationContext,
        artifact_store: ArtifactStoreResource,
        clips: ClipRenderer,
    ):
        folder = inbox.inbox_dir()
        store = artifact_store.store()
        try:
            drops = inbox.scan(folder)
        except OSError as exc:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"the inbox {folder} cannot be read: {one_line(exc)}"),
                                   cursor=context.cursor)
        ready, waiting = inbox.split_stable(drops, _read_cursor(context.cursor))
        batch, deferred = ready[:_batch_cap()], ready[_batch_cap():]

        tick = Tick()
        for drop in batch:
            _take(context, folder, store, clips, drop, tick)
        _request_lost_runs(context, folder, store, tick)

        seen = {d.name: d.observation for d in waiting + deferred}
        new_cursor = json.dumps({"seen": seen})
        if not tick.run_requests:
            reasons = tick.notes + [f"{_shown(d.name)}: waiting until it stops changing" for d in waiting]
            if deferred:
                reasons.append(f"{len(deferred)} more next tick (batch cap {_batch_cap()})")
            return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(reasons) or f"no new plans in {folder}"),
                                   cursor=new_cursor)
        return dg.SensorResult(
            run_requests=tick.run_requests,
            dynamic_partitions_requests=[run_partitions.build_add_request(tick.new_keys)],
            cursor=new_cursor,
        )

    return plan_inbox


def build_new_film_sensor(new_film: dg.JobDefinition, film: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    """The sensor that films what the ``new_film`` job registered: as each ``new_film`` run
    succeeds, it requests ``film`` for the run_id partition named in that run's tag (once: the
    run key), tagged with the film's title and the ``new_film`` run. Dagster's run-status cursor
    starts at the sensor's first tick; a film registered while no daemon ran is filmed with
    ``sparkle-motion resume RUN_ID``."""
    from sparkle_motion_dagster.jobs.new_film import NEW_FILM_DAGSTER_RUN_TAG, NEW_FILM_TAG

    @dg.run_status_sensor(
        name="new_film_launcher",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[new_film],
        request_job=film,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches the film job for the run_id registered by each successful new_film run "
                    "(the launchpad's way to start a film).",
    )
    def new_film_launcher(context: dg.RunStatusSensorContext):
        run_id = context.dagster_run.tags.get(NEW_FILM_TAG)
        if not run_id or not context.instance.has_dynamic_partition("run_id", run_id):
            return dg.SkipReason(f"new_film run {context.dagster_run.run_id} registered no known run_id")
        title = context.dagster_run.tags.get(TITLE_TAG)
        return dg.RunRequest(run_key=f"new_film:{run_id}", partition_key=run_id,
                             tags={"sparkle/source": "ui:new_film", **({TITLE_TAG: title} if title else {}),
                                   NEW_FILM_DAGSTER_RUN_TAG: context.dagster_run.run_id})

    return new_film_launcher


def build_new_film_backlink_sensor(film: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    """The sensor that links a ``new_film`` run to the ``film`` run it started: as a film run that
    names its ``new_film`` run (``sparkle/new_film_dagster_run``) starts, the ``new_film`` run is
    tagged with it (``sparkle/film_dagster_run``), so each run's page leads to the other."""
    from sparkle_motion_dagster.jobs.new_film import FILM_DAGSTER_RUN_TAG, NEW_FILM_DAGSTER_RUN_TAG

    @dg.run_status_sensor(
        name="new_film_backlink",
        run_status=dg.DagsterRunStatus.STARTED,
        monitored_jobs=[film],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Tags each new_film run with the film run it started (sparkle/film_dagster_run), "
                    "as that run starts.",
    )
    def new_film_backlink(context: dg.RunStatusSensorContext):
        film_run = context.dagster_run
        new_film_run_id = film_run.tags.get(NEW_FILM_DAGSTER_RUN_TAG)
        if not new_film_run_id or context.instance.get_run_by_id(new_film_run_id) is None:
            return dg.SkipReason(f"film run {film_run.run_id} was not started by a new_film run")
        context.instance.add_run_tags(new_film_run_id, {FILM_DAGSTER_RUN_TAG: film_run.run_id})
        context.log.info(f"new_film run {new_film_run_id} started film run {film_run.run_id}")
        return dg.SkipReason(f"tagged new_film run {new_film_run_id} with film run {film_run.run_id}")

    return new_film_backlink
