"""A rendering stage as several steps, so that several GPU workers share one film.

The stage's asset is backed by a graph of three ops, whatever the executor (the definitions are
the same under every ``SPARKLE_EXECUTOR``; only how the items are grouped differs, at run time):

* ``<stage>_groups`` (cpu queue) reads the plan and fans out the items in groups (a dynamic
  output per group, keyed by its first id): one group of every item when the run's executor
  runs its steps in this process (they run one at a time there, so the items render side by
  side in one step, as fast as a one-step stage), else one group per ``SPARKLE_SHOTS_PER_STEP``
  items (``multiprocess``, ``celery``: a step each, on any worker);
* ``<stage>_render[<first id>]`` (the stage's queue: gpu for keyframes and clips) renders
  the group's items with the same per-item loop as the one-step stage (reuse by
  fingerprint, sidecars, the catalog entry as each item exists, the stop check), so each
  group shows in the run view with its own logs and retries;
* ``<stage>_manifest`` (cpu queue) collects the groups and writes the stage's manifest.

The asset key, its files, its config (``force``) and what it reads stay those of the
one-step stage, so resume, rerun, regenerate, status and the catalog are unchanged. Values
between the steps are small JSON files under the run's folder (``resources/step_values``).
"""


import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.assets import film_history
from sparkle_motion_dagster.assets.stage import QUEUE_TAG, RENDER_RETRY, gpu_pool, queue_tags, stage_run
from sparkle_motion_dagster.cluster.settings import ClusterSettings
from sparkle_motion_dagster.partitions import run_partitions
from sparkle_motion_dagster.resources.step_values import STEP_VALUES
from sparkle_motion_dagster.store.items import Item, Rendered, render_items, rerendered
from sparkle_motion_dagster.store.run_files import MissingUpstreamError, load_run_plan


@dataclass
class StageWork:
    """One rendering stage's items for a film run, and what to do with them."""

    items: list[Item]
    render: Callable[[Item], Any]
    publish: Callable[[Rendered], None]
    workers: int
    """Items rendered side by side in one step (what the backend allows)."""
    finish: Callable[[list[Rendered]], dict]
    """Writes the stage's manifest from every item; returns the materialization's metadata."""


# The executors that run each step apart (a process, a Celery task): the names film_executor gives them.
STEPS_APART = (dg.multiprocess_executor.name, "celery")


def items_per_step(executor_name: str) -> int | None:
    """How many items one render step takes under the run's executor: ``SPARKLE_SHOTS_PER_STEP``
    where steps run apart, else all of them (None): in process (``execute_in_process`` included)
    steps run one at a time, so the items render side by side in one step."""
    if executor_name in STEPS_APART:
        return ClusterSettings.from_env().shots_per_step
    return None


CPU_TAGS = {QUEUE_TAG: "cpu"}


def step_group_key(first_id: str) -> str:
    """A dynamic mapping key from an item id (letters, digits and '_' only)."""
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in first_id)


def _rendered_by_its_step(item: Item):
    """The manifest step renders nothing (it may run where no model is): an item missing here
    was removed after its step made it."""
    raise MissingUpstreamError(f"{item.path} is missing after its step rendered it; launch the stage again "
                               "(its other items are reused)")


def shot_steps_asset(key: str, *, work: Callable[..., StageWork], item_ids: Callable[[Any], list[str]],
                     config: type[dg.Config], resources: tuple[str, ...], kinds: set[str],
                     description: str) -> dg.AssetsDefinition:
    """The stage ``key`` as a graph-backed asset: groups -> render per group -> manifest."""
    row = stages.stage(key)
    needs = {"artifact_store", *resources}
    config_class = config

    @dg.op(name=f"{key}_groups", ins={dep: dg.In(dg.Nothing) for dep in row.deps},
           out=dg.DynamicOut(list, io_manager_key=STEP_VALUES), tags=CPU_TAGS, retry_policy=RENDER_RETRY,
           required_resource_keys={"artifact_store"})
    def groups(context: dg.OpExecutionContext):
        """The stage's items in groups, one render step each: every item in one group in process,
        groups of SPARKLE_SHOTS_PER_STEP where steps run apart."""
        with stage_run(context, context.resources.artifact_store, key, gate=False, items=()) as stage:
            ids = item_ids(load_run_plan(stage.store, stage.run_id))
            per_step = items_per_step(context.job_def.executor_def.name) or max(1, len(ids))
            for start in range(0, len(ids), per_step):
                chunk = ids[start:start + per_step]
                yield dg.DynamicOutput(chunk, mapping_key=step_group_key(chunk[0]))

    @dg.op(name=f"{key}_render", out=dg.Out(dict, io_manager_key=STEP_VALUES), tags=queue_tags(key),
           retry_policy=RENDER_RETRY, pool=gpu_pool(key), required_resource_keys=needs)
    def render(context: dg.OpExecutionContext, config: config_class, group: list) -> dict:
        """Render (or reuse) one group's items; each is in the catalog as soon as it exists."""
        with stage_run(context, context.resources.artifact_store, key, items=group) as stage:
            measure = film_history.StepMeasure()  # what rendering this group cost, for the history
            done = work(stage, config, *(getattr(context.resources, name) for name in resources))
            wanted = set(group)
            results = render_items([i for i in done.items if i.id in wanted], done.render, force=config.force,
                                   workers=done.workers, on_ready=done.publish, before_render=stage.check_stop,
                                   on_problem=context.log.warning)
            rendered = [r.item.id for r in results if r.rendered]
            context.log.info(f"{key} {', '.join(group)}: {len(rendered)} rendered, "
                             f"{len(results) - len(rendered)} reused")
            # What a render made beside its record (a keyframe's thumbnail): the manifest shows it
            # without opening the file again.
            extras = {r.item.id: r.extra for r in results if r.rendered and isinstance(r.extra, str)}
            return {"rendered": rendered, "items": list(group), "published": stage.published,
                    "rerendered": rerendered(results), "extras": extras, "measured": measure.metadata()}

    @dg.op(name=f"{key}_manifest", out=dg.Out(dg.Nothing, io_manager_key=STEP_VALUES), tags=CPU_TAGS,
           retry_policy=RENDER_RETRY, required_resource_keys=needs)
    def manifest(context: dg.OpExecutionContext, config: config_class, tallies: list) -> None:
        """Write the stage's manifest once every group's items exist (no gate: a pause holds before
        the next stage, not between a stage's items and its manifest)."""
        with stage_run(context, context.resources.artifact_store, key, gate=False, items=()) as stage:
            done = work(stage, config, *(getattr(context.resources, name) for name in resources))
            rendered = {item for tally in tallies for item in tally["rendered"]}
            problems = {item: why for tally in tallies for item, why in tally.get("rerendered", {}).items()}
            stage.published = sum(tally["published"] for tally in tallies)
            results = render_items(done.items, _rendered_by_its_step)  # every item exists by now: all reused
            extras = {item: extra for tally in tallies for item, extra in tally.get("extras", {}).items()}
            # Its render steps kept their files' provenance records: the stage's summary lists them all.
            stage.records.extend(_stored_records(stage, [result.item.path for result in results]))
            for result in results:
                result.rendered = result.item.id in rendered
                result.problem = problems.get(result.item.id)
                result.extra = extras.get(result.item.id)
            context.add_output_metadata({**done.finish(results), **film_history.combined(
                [tally["measured"] for tally in tallies if tally.get("measured")])})

    @dg.config_mapping(config_schema=config_class.to_fields_dict())
    def stage_config(values: dict) -> dict:
        return {f"{key}_render": {"config": values}, f"{key}_manifest": {"config": values}}

    def compose(**deps):
        return manifest(groups(**deps).map(render).collect())

    # The graph's inputs are the stage's dependencies (nothing is loaded from them: the steps read files).
    compose.__signature__ = inspect.Signature(
        [inspect.Parameter(dep, inspect.Parameter.POSITIONAL_OR_KEYWORD) for dep in row.deps])
    compose.__name__ = key
    return dg.graph_asset(name=key, partitions_def=run_partitions, group_name="film", ins={
        dep: dg.AssetIn(dep, dagster_type=dg.Nothing) for dep in row.deps}, kinds=kinds,
        description=description, config=stage_config)(compose)


def _stored_records(stage, paths) -> list[dict]:
    """The provenance records the render steps wrote for these files (those that exist)."""
    import json

    from sparkle_motion_dagster.insight.provenance import record_path

    records = []
    for path in paths:
        record = record_path(stage.store, stage.run_id, stage.stage, path)
        if record.exists():
            records.append(json.loads(record.read_text(encoding="utf-8")))
    return records
