"""What every stage does around its own work: pass the run's control gate (a paused film ends
its Dagster run there), tag the run with its process,
clear temporary files a killed process left behind, catalog what it publishes,
and turn permanent problems into failures that are not retried (the one place
that tells permanent from transient: :func:`is_permanent`)."""

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.assets import film_history
from sparkle_motion_dagster.cluster.identity import ClusterMismatchError, check_step_view
from sparkle_motion_dagster.film.intake import ModelNotConfiguredError
from sparkle_motion_dagster.film.plan import PlanInputError, PlanValidationError
from sparkle_motion_dagster.media.ffmpeg import FfmpegError
from sparkle_motion_dagster.orchestration import liveness
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources import memory_plan
from sparkle_motion_dagster.resources.settings import SettingsError
from sparkle_motion_dagster.lifecycle import control
from sparkle_motion_dagster.insight import provenance
from sparkle_motion_dagster.insight.catalog import Catalog
from sparkle_motion_dagster.store.run_files import MissingUpstreamError, stage_file
from sparkle_motion_dagster.store.storage import (
    TEMP_MARKER,
    ArtifactStore,
    UnknownRunError,
    UnsafeIdError,
    process_alive,
)
from sparkle_motion_dagster.lifecycle.titles import TITLE_TAG, requested_title, title_tags

# Problems that another attempt cannot fix: fail at once instead of retrying.
PERMANENT_ERRORS = (PlanValidationError, PlanInputError, ModelNotConfiguredError, MissingUpstreamError,
                    UnknownRunError, UnsafeIdError, SettingsError, control.RunStopped, ClusterMismatchError,
                    memory_plan.OutOfGpuMemory)
# The id of the artifact root's cluster marker where the run was started (cluster/identity.py).
CLUSTER_TAG = "sparkle/cluster"
# ValueErrors that can come from a read at the wrong moment (a file or a reply cut short), not from the input.
UNSETTLED_VALUE_ERRORS = (UnicodeDecodeError, json.JSONDecodeError)

# Set on the failure of a stage that ended because the run was stopped (the runner reports it as stopped).
STOPPED_METADATA = "stopped"
# Set on the failure of a stage that ended its run because the film run is paused (it holds, holding nothing).
PAUSED_METADATA = "paused"

# Transient errors (a busy GPU, a flaky network filesystem) get two more tries.
RENDER_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)


# The op tag dagster-celery routes a step by: GPU stages to the workers of the gpu queue, the rest to cpu.
QUEUE_TAG = "dagster-celery/queue"


def queue_tags(key: str) -> dict[str, str]:
    """The Celery queue of a stage's (rendering) steps: gpu for a stage that wants the GPU."""
    return {QUEUE_TAG: "gpu" if stages.stage(key).gpu else "cpu"}


def gpu_pool(key: str) -> str | None:
    """The concurrency pool of a stage's GPU steps: ``gpu``, whatever the executor. Its limit is the
    Dagster instance's: 1 on one machine (one GPU step at a time); a Celery cluster's instance leaves
    it unlimited, since one worker per GPU with concurrency 1 is what keeps each GPU to one step
    (see ``store/locations.py``)."""
    return "gpu" if stages.stage(key).gpu else None


def film_asset(key: str, *, kinds: set[str]):
    """The asset decorator of one stage: its key, dependencies, GPU pool and Celery queue come from the
    stage table. Every stage retries transient errors (a busy GPU, a planner's server, a flaky filesystem)."""
    row = stages.stage(key)
    return dg.asset(name=key, partitions_def=run_partitions, group_name="film", deps=list(row.deps), kinds=kinds,
                    retry_policy=RENDER_RETRY, pool=gpu_pool(key), op_tags=queue_tags(key))


@dataclass
class StageRun:
    context: dg.AssetExecutionContext
    store: ArtifactStore
    run_id: str
    key: str
    plan_id: str | None = None
    published: int = 0
    made_by: Any = None
    """The resource that makes this stage's files (a keyframe model, a speech engine): its backend,
    model and settings go into every file's provenance record."""
    records: list[dict] = field(default_factory=list)
    _model: dict | None = None

    @property
    def stage(self) -> str:
        """The stage's folder, which is also its name in the catalog."""
        return stages.folder(self.key)

    def path(self, *names: str) -> Path:
        return self.store.path(self.run_id, self.stage, *names)

    def upstream(self, stage: str, *names: str) -> Path:
        """A file another stage (by asset key) wrote for this run."""
        return stage_file(self.store, self.run_id, stage, *names)

    def check_stop(self) -> None:
        """Between items of a long stage: end now if the run was stopped."""
        control.raise_if_stopped(self.store, self.run_id)

    def publish(self, path: Path, *, shot_id: str | None = None, metadata: dict | None = None,
                stage: str | None = None, sources=None, settings: dict | None = None,
                prompt: str | None = None, **fields) -> None:
        """Record a finished file in the artifact catalog (under this stage unless ``stage`` says
        otherwise) with its provenance record: what made it, from which files (``sources``; by
        default the run's plan), with which ``settings`` (an item's fingerprint inputs) and prompt."""
        metadata = dict(metadata or {})
        record = self.provenance_record(path, stage=stage or self.stage, shot_id=shot_id, metadata=metadata,
                                        sources=sources, settings=settings, prompt=prompt)
        Catalog(self.store.root).record_file(
            self.run_id, stage or self.stage, path, plan_id=self.plan_id, shot_id=shot_id,
            dagster_run_id=self.context.run_id, metadata={**metadata, "provenance": record}, **fields,
        )
        self.published += 1

    def provenance_record(self, path: Path, *, stage: str, shot_id: str | None, metadata: dict, sources,
                          settings: dict | None, prompt: str | None) -> dict:
        """Build and keep (with the run) the provenance record of one published file."""
        if self.made_by is not None and self._model is None:
            made_by = self.made_by
            self._model = made_by.provenance() if hasattr(made_by, "provenance") else \
                provenance.model_provenance(made_by)
        if sources is None:
            plan = self.upstream("movie_plan", "movie_plan.json")
            sources = [plan] if self.key != "movie_plan" and plan.exists() else []
        backend = metadata.get("backend") or metadata.get("lipsync_backend")
        model = self._model
        if metadata.get("memory_plan"):  # where the model's parts were placed for this item
            model = {**(model or {}), "memory_plan": metadata["memory_plan"]}
        record = provenance.build_record(
            path, store=self.store, run_id=self.run_id, stage=stage, shot_id=shot_id,
            line_id=metadata.get("line_id"), item_id=metadata.get("base_image_id"), backend=backend,
            seed=metadata.get("seed"), prompt=prompt,
            sources=list(sources), model=model, settings=settings, dagster_run_id=self.context.run_id)
        record = provenance.write_record(self.store, record)
        self.records.append(record)
        return record

    def catalog_metadata(self) -> dict:
        """Links a materialization to its rows in the artifact catalog."""
        title = requested_title(self.store, self.run_id)
        return {
            **({"title": dg.MetadataValue.text(title)} if title else {}),
            "catalog_entries": self.published,
            "catalog_query": dg.MetadataValue.text(f"sparkle-motion artifacts {self.run_id} --stage {self.stage}"),
            "provenance": dg.MetadataValue.json(provenance.summary(self.records)),
            "lineage": dg.MetadataValue.md(provenance.markdown(self.records)),
            "provenance_query": dg.MetadataValue.text(f"sparkle-motion provenance {self.run_id}"),
        }


def _clear_stale_partials(folder: Path, items: Iterable[str] | None = None, *, records: Path | None = None) -> None:
    """Remove temporary files whose writer process is gone (it was killed mid-write), beside
    the outputs, among their sidecars in ``.meta/`` and among their provenance ``records``; with
    ``items``, only those of these items (a step of a stage rendered as several: another step's
    writer may live on another machine, where its pid means nothing here)."""
    temps = [*folder.glob(f"*{TEMP_MARKER}*"), *folder.glob(f".meta/*{TEMP_MARKER}*"),
             *(records.glob(f"*{TEMP_MARKER}*") if records is not None else ())]
    if items is not None:
        prefixes = tuple(f"{item}." for item in items)
        temps = [temp for temp in temps if temp.name.startswith(prefixes)]
    for temp in temps:
        pid_part = temp.name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
        if pid_part.isdigit() and int(pid_part) != os.getpid() and not process_alive(int(pid_part)):
            temp.unlink(missing_ok=True)


def is_permanent(exc: BaseException) -> bool:
    """Whether another attempt at the stage would fail the same way, so it fails at once.

    The rule: an error is permanent when it comes from what the stage was given, not from
    the moment it ran in:

    * the project's own input errors (:data:`PERMANENT_ERRORS`: a bad plan, id or setting,
      an unconfigured model, a missing upstream file, a stop);
    * a tool refusing its input or arguments (an :class:`FfmpegError` whose ``refused_input``
      is set: ffmpeg said the clip is empty or broken, or an option is wrong);
    * a ``ValueError`` or ``TypeError`` (an argument a function rejects, such as a seed out of
      range), except decoding errors, which a read cut short can cause;
    * running out of GPU memory: the same placement would run out again. An adapter with a
      memory plan has already retried the item once at a lower-memory placement
      (``resources/memory_plan.py``); what reaches here is final.

    Everything else is transient and retried: ``OSError`` (disk, network, a closed pipe), a
    tool killed, other CUDA errors, a planner's server. A real transient failure
    misread as permanent would cost a film; the reverse costs two retries, so anything
    unknown counts as transient."""
    if isinstance(exc, PERMANENT_ERRORS):
        return True
    if isinstance(exc, FfmpegError):
        return exc.refused_input
    if memory_plan.is_out_of_memory(exc):
        return True
    return isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, UNSETTLED_VALUE_ERRORS)


def failure_for(exc: Exception, store: ArtifactStore, run_id: str) -> BaseException:
    """What a stage raises for an error: a failure that is not retried when the run was stopped
    (a stop that interrupted a tool shows as that tool failing) or the error is permanent;
    the error itself, to be retried, otherwise."""
    if isinstance(exc, (dg.Failure, dg.RetryRequested)):
        return exc
    if isinstance(exc, control.RunStopped) or control.read_state(store, run_id)["state"] == "stopped":
        return dg.Failure(description=control.stopped_message(run_id), allow_retries=False,
                          metadata={STOPPED_METADATA: True})
    if is_permanent(exc):
        description = str(exc) or type(exc).__name__
        if memory_plan.is_out_of_memory(exc) and not isinstance(exc, memory_plan.OutOfGpuMemory):
            description = memory_plan.out_of_memory_message(
                None, exc, setting="the stage's device or memory settings (see sparkle-motion doctor)")
        return dg.Failure(description=description, allow_retries=False)
    return exc


def _pass_gate(context: dg.AssetExecutionContext, store: ArtifactStore, run_id: str, key: str) -> None:
    """At the stage boundary: a paused film run ends its Dagster run here, before the stage does
    anything, so it holds no pool slot and no worker while paused (``control resume`` launches
    the rest); a stopped one ends as stopped. The time a stage held at the last pause is recorded
    as ``held_seconds`` on its materialization, apart from the stage's own time."""
    try:
        held = control.close_gate(store, run_id, key)
    except control.RunPaused as paused:
        context.log.warning(str(paused))
        raise dg.Failure(description=str(paused), allow_retries=False,
                         metadata={PAUSED_METADATA: True, "holds_before": paused.stage}) from None
    if held:
        context.log.info(f"{run_id} resumed after {held:.1f} s held before {key}")
        context.add_output_metadata({"held_seconds": round(held, 2)})


def _free_other_models(context, key: str) -> None:
    """Before a GPU stage renders: free the models this process holds for other stages (the video model
    after the clips, speech and lip-sync models after theirs), keeping only this stage's own."""
    row = stages.stage(key)
    if not row.gpu:
        return
    try:
        own = getattr(context.resources, row.resource, None)
    except Exception:  # noqa: BLE001 - a step without the resource keeps nothing of its own
        own = None
    from sparkle_motion_dagster.resources.model_support import release_models_except

    freed = release_models_except(*((type(own).__module__,) if own is not None else ()))
    if freed:
        context.log.info(f"{key}: freed the models of {', '.join(freed)} for this stage")


def _tag_title(context: dg.AssetExecutionContext, store: ArtifactStore, run_id: str) -> None:
    """Give a film's Dagster run its ``sparkle/title`` tag when it was launched without it (the
    control panel, ``dagster job launch``, the UI's film job for a submitted partition), so that
    **Runs** filtered by the title finds it as it finds the CLI's, the drop folder's and new_film's."""
    if TITLE_TAG in context.run.tags:
        return
    tags = title_tags(store, run_id)
    if tags:
        context.instance.add_run_tags(context.run.run_id, tags)


@contextlib.contextmanager
def stage_run(context: dg.AssetExecutionContext, artifact_store, key: str, *, gate: bool = True,
              items: Iterable[str] | None = None) -> Iterator[StageRun]:
    """The frame of one stage's materialization for one film run (``key`` is its asset key).
    ``gate=False``: a step that only plans the stage's other steps (they wait at the gate);
    ``items``: a step that renders only these items (it clears only their temporary files)."""
    store = artifact_store.store()
    run_id = context.partition_key
    marked = False
    try:
        expected = context.run.tags.get(CLUSTER_TAG)
        if expected:
            check_step_view(store.root, expected)
        liveness.tag_run_process(context.instance, context.run)
        _tag_title(context, store, run_id)
        # A step of a run no runner of ours started (the UI, a sensor, a worker) says it films the run
        # while it runs, and no longer once it ends: its process may outlive the run for a moment.
        marked = control.mark_active(store, run_id)
        if gate:
            _pass_gate(context, store, run_id, key)
        measure = film_history.StepMeasure()
        run = StageRun(context, store, run_id, key)
        if items is None or items:
            _free_other_models(context, key)
        _clear_stale_partials(store.stage_dir(run_id, run.stage), items,
                              records=store.run_dir(run_id) / provenance.FOLDER / run.stage)
        yield run
        if items is None:  # a one-step stage: its own time and memory, measured here, for the history
            measured = measure.metadata()
            context.add_output_metadata(measured)
            if key == stages.STAGE_KEYS[-1]:
                film_history.record_if_whole_film(context, store, run_id, measured)
    except Exception as exc:
        failure = failure_for(exc, store, run_id)
        if failure is exc:
            raise
        raise failure from None
    finally:
        if marked:
            control.clear_active(store, run_id)
