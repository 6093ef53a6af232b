"""The plan drop-folder sensor: a file dropped in the inbox becomes a film run."""

from __future__ import annotations

import json
import os

import dagster as dg

from sparkle_motion_dagster.film.intake import resolve_video_backend
from sparkle_motion_dagster.film.plan import PlanValidationError, parse_plan_document
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.clips import ClipRenderer
from sparkle_motion_dagster.resources.storage import ArtifactStoreResource
from sparkle_motion_dagster.runs import inbox
from sparkle_motion_dagster.runs.run_files import submit_request

DEFAULT_BATCH = 5


def _batch_cap() -> int:
    return max(1, int(os.environ.get("SPARKLE_INBOX_BATCH", DEFAULT_BATCH)))


def _problems(exc: Exception) -> list[str]:
    if isinstance(exc, PlanValidationError):
        return [str(issue) for issue in exc.issues]
    return [str(exc)]


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
        cursor = json.loads(context.cursor) if context.cursor else {}
        drops = inbox.scan(folder)
        ready, waiting = inbox.split_stable(drops, cursor.get("seen", {}))
        batch, deferred = ready[:_batch_cap()], ready[_batch_cap():]

        run_requests, new_keys, notes = [], [], []
        for drop in batch:
            try:
                raw, data = inbox.load_drop(drop)
                run_id, digest = inbox.content_run_id(raw)
                if store.request_path(run_id).exists():
                    inbox.mark_duplicate(folder, drop, run_id)
                    notes.append(f"{drop.name}: same content as {run_id}, not filmed twice")
                    continue
                item = inbox.classify(data)
                if item.kind == "plan":
                    plan = parse_plan_document(item.document).plan
                    resolve_video_backend(plan, served=clips.model_ids, backend=clips.backend, preview=item.preview)
            except (ValueError, OSError) as exc:
                inbox.reject(folder, drop, _problems(exc))
                context.log.warning(f"rejected {drop.name}: {'; '.join(_problems(exc))}")
                notes.append(f"{drop.name}: rejected")
                continue
            # A prompt is planned by the run's movie_plan stage, not here: a tick must stay short.
            submit_request(store, run_id, source=f"inbox:{drop.name}", preview=item.preview,
                           **({"document": item.document} if item.kind == "plan" else
                              {"prompt": {"prompt": item.prompt, "title": item.title, "seed": item.seed}}))
            inbox.accept(folder, drop, run_id)
            new_keys.append(run_id)
            run_requests.append(dg.RunRequest(run_key=f"{run_id}:{digest[:16]}", partition_key=run_id,
                                              tags={"sparkle/source": "inbox", "sparkle/inbox_file": drop.name}))
            context.log.info(f"{drop.name} accepted as {run_id}")

        # A request whose partition never got added (the daemon stopped mid-tick) is picked up again.
        for accepted in sorted((folder / "accepted").glob("run_*.json")):
            run_id = accepted.stem.split(".")[0]
            if run_id not in new_keys and store.request_path(run_id).exists() \
                    and not context.instance.has_dynamic_partition("run_id", run_id):
                digest = inbox.content_run_id(accepted.read_bytes())[1]
                new_keys.append(run_id)
                run_requests.append(dg.RunRequest(run_key=f"{run_id}:{digest[:16]}", partition_key=run_id,
                                                  tags={"sparkle/source": "inbox"}))

        seen = {d.name: d.observation for d in waiting + deferred}
        new_cursor = json.dumps({"seen": seen})
        if not run_requests:
            reasons = notes + [f"{d.name}: waiting until it stops changing" for d in waiting]
            if deferred:
                reasons.append(f"{len(deferred)} more next tick (batch cap {_batch_cap()})")
            return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(reasons) or f"no new plans in {folder}"),
                                   cursor=new_cursor)
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[run_partitions.build_add_request(new_keys)],
            cursor=new_cursor,
        )

    return plan_inbox
