"""The review gate as a Dagster asset check, and the stage retry policy."""

import json

import dagster as dg
import pytest
from helpers import wait_for

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import film_run, run_review_gate, submit_run
from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
from sparkle_motion_dagster.lifecycle.review import record_review
from sparkle_motion_dagster.store.storage import ArtifactStore
from sparkle_motion_dagster.stages import stage_of_step

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.delenv("QA_AUTOMATION_REMOVED", raising=False)
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def short_plan(sample_plan) -> dict:
    sample_plan["render_profile"]["video"].update(model_id="animatic", width=320, height=180)
    return sample_plan


def submit(store, instance, plan) -> str:
    return submit_run(store, instance, plan, source="test", preview=False,
                      clip_model_ids=("animatic",), clip_backend="animatic")


def check_evaluations(instance):
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("video_final"), "approved_by_reviewer"), limit=10)
    return [r.event.dagster_event.event_specific_data for r in records if r.event]


def test_the_gate_fails_until_a_person_approves(store, instance, sample_plan, monkeypatch):
    run_id = submit(store, instance, short_plan(sample_plan))
    assert film_run(defs, instance, run_id, store=store).success  # the film itself is not blocked
    assert run_review_gate(defs, instance, run_id) is False
    latest = check_evaluations(instance)[0]
    assert latest.passed is False and latest.severity == dg.AssetCheckSeverity.ERROR

    record_review(store, run_id, "reject", "ana", notes="mouths drift")
    assert run_review_gate(defs, instance, run_id) is False
    record_review(store, run_id, "approve", "ana")
    assert run_review_gate(defs, instance, run_id) is True
    assert check_evaluations(instance)[0].passed is True

    monkeypatch.setenv("QA_AUTOMATION_REMOVED", "0")
    other = submit(store, instance, json.loads(json.dumps(sample_plan)) | {"title": "Another"})
    assert film_run(defs, instance, other, store=store).success
    run_review_gate(defs, instance, other)
    assert check_evaluations(instance)[0].severity == dg.AssetCheckSeverity.WARN  # advisory


class FlakyClips(AnimaticClips):
    """Fails its first render (a busy GPU), then works."""

    marker: str

    def render(self, request, out_path):
        from pathlib import Path

        marker = Path(self.marker)
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("CUDA error: device busy")
        return super().render(request, out_path)


def step_events(result, stage: str, kind: dg.DagsterEventType):
    """The events of this kind of the stage's steps (a rendering stage renders in a step of its graph)."""
    return [e for e in result.all_events if stage_of_step(e.step_key) == stage and e.event_type == kind]


def test_a_transient_error_is_retried(store, instance, sample_plan, tmp_path):
    run_id = submit(store, instance, short_plan(sample_plan))
    result = defs.resolve_job_def("film").execute_in_process(
        instance=instance, partition_key=run_id, raise_on_error=False,
        resources={"clips": FlakyClips(marker=str(tmp_path / "marker"))},
    )
    assert result.success
    assert len(step_events(result, "video_clips", dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1


def test_a_permanent_error_is_not_retried(store, instance, sample_plan):
    run_id = submit(store, instance, short_plan(sample_plan))
    result = film_run(defs, instance, run_id, store=store, stages=["movie_plan", "video_clips"])
    assert not result.success and result.failed_stage == "video_clips"
    assert "base_images" in result.error and "first" in result.error
    job = defs.resolve_job_def("film").get_subset(asset_selection={dg.AssetKey("video_clips")},
                                                   asset_check_selection=set())
    again = job.execute_in_process(instance=instance, partition_key=run_id, raise_on_error=False)
    assert not step_events(again, "video_clips", dg.DagsterEventType.STEP_UP_FOR_RETRY)


class OneShotFails(AnimaticClips):
    """Renders shots side by side; one shot always fails with ``error``. Counts renders per shot in ``log``."""

    failing: str
    log: str
    error: str = "CUDA error: an illegal memory access was encountered"

    def render(self, request, out_path):
        from pathlib import Path

        with Path(self.log).open("a") as log:
            log.write(request.shot_id + "\n")
        if request.shot_id == self.failing:
            # Fail only once the shot beside it has started: a shot not started yet is cancelled.
            wait_for(lambda: any(line != self.failing for line in Path(self.log).read_text().split()),
                     "the other shot to start")
            raise RuntimeError(f"{request.shot_id}: {self.error}")
        return super().render(request, out_path)


@pytest.mark.parametrize("error", ["CUDA error: an illegal memory access was encountered",
                                   "CUDA out of memory. Tried to allocate 20.00 GiB"])
def test_a_failing_shot_keeps_the_shots_rendered_beside_it(store, instance, sample_plan, tmp_path, error):
    assert OneShotFails(failing="x", log="y").parallel_shots == 2  # the two shots render at once
    run_id = submit(store, instance, short_plan(sample_plan))
    log = tmp_path / "renders.log"
    result = defs.resolve_job_def("film").execute_in_process(
        instance=instance, partition_key=run_id, raise_on_error=False,
        resources={"clips": OneShotFails(failing="shot_001", log=str(log), error=error)},
    )
    assert not result.success
    failure = step_events(result, "video_clips", dg.DagsterEventType.STEP_FAILURE)[0]
    message = str(failure.step_failure_data.error.to_string())
    assert f"shot_001: {error}" in message
    renders = log.read_text().split()
    retries = step_events(result, "video_clips", dg.DagsterEventType.STEP_UP_FOR_RETRY)
    if "out of memory" in error:
        # The same settings would run out again: no retry, and the failure says what to change.
        assert not retries and renders.count("shot_001") == 1
        assert "Not retried with the same settings" in message and "device or memory settings" in message
    else:
        # Each attempt tried shot_001 again; shot_002 was rendered once and reused by the retries.
        assert len(retries) == 2 and renders.count("shot_001") == 3
    assert renders.count("shot_002") == 1
    clips = store.stage_dir(run_id, "video_clips")
    assert (clips / "shot_002.mp4").exists() and (clips / ".meta" / "shot_002.mp4.json").exists()
    assert sorted(p.name for p in clips.glob("*.mp4")) == ["shot_002.mp4"]  # no partial file of shot_001


class CatalogWatchingClips(AnimaticClips):
    """Renders one shot at a time and notes which clips the catalog already lists."""

    root: str
    seen: str

    @property
    def parallel_shots(self) -> int:
        return 1

    def render(self, request, out_path):
        from pathlib import Path

        from sparkle_motion_dagster.insight.catalog import Catalog

        run_id = Path(out_path).parent.parent.name
        listed = [Path(e["local_path"]).name for e in Catalog(self.root).artifacts(run_id, stage="video_clips")]
        with Path(self.seen).open("a") as seen:
            seen.write(f"{request.shot_id}: {' '.join(listed)}\n")
        return super().render(request, out_path)


def test_each_clip_is_in_the_catalog_before_the_next_one_renders(store, instance, sample_plan, tmp_path):
    run_id = submit(store, instance, short_plan(sample_plan))
    seen = tmp_path / "seen.txt"
    result = defs.resolve_job_def("film").execute_in_process(
        instance=instance, partition_key=run_id, raise_on_error=False,
        resources={"clips": CatalogWatchingClips(root=str(store.root), seen=str(seen))},
    )
    assert result.success
    assert seen.read_text().splitlines() == ["shot_001: ", "shot_002: shot_001.mp4"]


class ClipsHoldingWan(AnimaticClips):
    """Renders like the animatic but leaves a model held in the Wan adapter's per-process slot, as the
    Wan clips stage does."""

    def render(self, request, out_path):
        from sparkle_motion_dagster.resources.clips import wan

        wan._MODEL.get(("a wan model", "cuda-bf16", "resident"), lambda: wan._Loaded(pipe=object()))
        plan = {"label": "resident", "placement": "resident", "predicted_peak_gb": 54.35, "free_gb": 79.25}
        return {**super().render(request, out_path), "memory_plan": plan}


@pytest.mark.parametrize("last_stage", ["video_raw_concat", "video_final"])
def test_the_video_model_is_freed_when_the_next_gpu_stage_starts(store, instance, sample_plan, last_stage):
    from sparkle_motion_dagster import stages
    from sparkle_motion_dagster.resources.clips import wan

    run_id = submit(store, instance, short_plan(sample_plan))
    job = defs.resolve_job_def("film").get_subset(
        asset_selection={dg.AssetKey(key) for key in stages.STAGE_KEYS[:stages.STAGE_KEYS.index(last_stage) + 1]},
        asset_check_selection=set())
    try:
        result = job.execute_in_process(instance=instance, partition_key=run_id,
                                        resources={"clips": ClipsHoldingWan()})
        assert result.success
        held = wan.loaded_key()
        if last_stage == "video_final":  # the lip-sync stage wants the GPU: the Wan model is gone
            assert held is None
            # each clip's memory plan is in its provenance record and in the stage's metadata
            from sparkle_motion_dagster.insight import provenance

            clip = store.stage_dir(run_id, "video_clips") / "shot_001.mp4"
            record = json.loads(provenance.record_path(store, run_id, "video_clips", clip).read_text())
            assert record["model"]["memory_plan"]["predicted_peak_gb"] == 54.35
            materialization = result.asset_materializations_for_node("video_clips")[0]
            [plan] = materialization.metadata["memory_plan"].value
            assert plan["label"] == "resident" and plan["shots"] == ["shot_001", "shot_002"]
        else:  # nothing after the clips wanted the GPU yet: the model stays for the next film's clips
            assert held == ("a wan model", "cuda-bf16", "resident")
    finally:
        wan._MODEL.release()


def test_a_film_launched_without_the_cli_adds_its_stage_times_to_the_history(store, instance, sample_plan):
    from sparkle_motion_dagster import stages
    from sparkle_motion_dagster.insight import estimates

    run_id = submit(store, instance, short_plan(sample_plan))
    # as the webserver, a sensor or a Celery cluster launch it: the job itself, no CLI runner around it
    assert defs.resolve_job_def("film").execute_in_process(instance=instance, partition_key=run_id).success
    [film] = [f for f in estimates.read_history(store.root) if f["run_id"] == run_id]
    assert set(film["stages"]) == set(stages.STAGE_KEYS)
    for stage, measured in film["stages"].items():
        assert measured["seconds"] > 0 and measured["peak_rss_bytes"] > 0, stage
    assert film["film_seconds"] >= sum(m["seconds"] for m in film["stages"].values()) * 0.99
    # a film that reused its items says nothing about rendering them: not recorded again
    again = defs.resolve_job_def("film").execute_in_process(instance=instance, partition_key=run_id)
    assert again.success
    assert [f["run_id"] for f in estimates.read_history(store.root)].count(run_id) == 1
    assert [f for f in estimates.read_history(store.root) if f["run_id"] == run_id] == [film]
