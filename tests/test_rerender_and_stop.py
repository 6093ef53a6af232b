"""What the README promises about redoing work, on one small film rendered once for the module:
`force: true` renders every item again, `regenerate --what keyframe` redoes the two keyframes and
the clips that use them, a `control stop` in the middle of a stage ends the run as stopped and
`resume` finishes it, and the `plan_dry_run` job validates without rendering anything."""

import hashlib
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from film_checks import frame_md5s, identity, latest_metadata, sidecar, small_plan, sparkle, use_state

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import film_run
from sparkle_motion_dagster.stages import STAGE_KEYS, folder

pytestmark = pytest.mark.slow

SHOTS = 4  # five keyframes, four clips
FPS = 12
RENDERING_STAGES = ["dialogue_audio", "base_images", "video_clips"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """One film run of a four-shot plan at 160x90, made with `sparkle-motion run`, in a private state folder."""
    folder = tmp_path_factory.mktemp("studio")
    with pytest.MonkeyPatch.context() as patch:
        use_state(patch, folder / "state")
        plan = small_plan(folder, shots=SHOTS, fps=FPS)
        made = sparkle("run", "--plan", plan)
        assert made.code == 0, made.stderr
        run_id = made.run_id
        with dg.DagsterInstance.get() as instance:
            store = defs.resources["artifact_store"].store()
            yield SimpleNamespace(folder=folder, plan=plan, run_id=run_id, run=store.run_dir(run_id),
                                  instance=instance, store=store)


def rendered_items(run: Path) -> list[Path]:
    """Every per-item output of the rendering stages: dialogue lines, keyframes, clips."""
    return sorted([*run.glob("dialogue_audio/line_*.wav"), *run.glob("base_images/frame_*.png"),
                   *run.glob("video_clips/shot_*.mp4")])


def identities(run: Path) -> dict[str, tuple]:
    """Each item with its sidecar: (item identity, sidecar identity)."""
    return {p.relative_to(run).as_posix(): (identity(p), identity(sidecar(p))) for p in rendered_items(run)}


def test_force_in_the_stage_config_renders_every_item_again(studio):
    before = identities(studio.run)
    assert len(before) == 1 + (SHOTS + 1) + SHOTS

    # Without force nothing changed, so nothing is written again.
    again = film_run(defs, studio.instance, studio.run_id, store=studio.store, stages=RENDERING_STAGES)
    assert again.success, again.error
    assert identities(studio.run) == before

    # With force: true in each stage's config (the launchpad's "render its items again"), every item
    # and its sidecar is written anew.
    forced = film_run(defs, studio.instance, studio.run_id, store=studio.store, stages=RENDERING_STAGES,
                      run_config={"ops": {stage: {"config": {"force": True}} for stage in RENDERING_STAGES}})
    assert forced.success, forced.error
    after = identities(studio.run)
    assert set(after) == set(before)
    kept = [name for name in before if after[name][0] == before[name][0] or after[name][1] == before[name][1]]
    assert kept == [], f"force left these items as they were: {kept}"

    # Force in one stage's config redoes that stage's items only: the keyframes come out the same, so
    # the clips made from them and the dialogue are reused.
    before = identities(studio.run)
    one = film_run(defs, studio.instance, studio.run_id, store=studio.store, stages=RENDERING_STAGES,
                   run_config={"ops": {"base_images": {"config": {"force": True}}}})
    assert one.success, one.error
    after = identities(studio.run)
    rewritten = sorted(name for name in before if after[name] != before[name])
    assert rewritten == sorted(name for name in before if name.startswith("base_images/"))


def test_regenerate_a_keyframe_rerenders_the_clips_that_use_it_and_reuses_the_rest(studio):
    run = studio.run
    frames = {p.name: (sha256(p), identity(p)) for p in run.glob("base_images/frame_*.png")}
    clips = {p.name: (sha256(p), identity(p)) for p in run.glob("video_clips/shot_*.mp4")}
    speech = {p.name: identity(p) for p in run.glob("dialogue_audio/*.wav")}
    seeds = {e["id"]: e["seed"] for e in
             json.loads((run / "base_images" / "base_images_manifest.json").read_text())["base_image_assets"]}
    final = run / "finalize" / "video_final.mp4"
    final_before = sha256(final)

    result = sparkle("regenerate", studio.run_id, "--shot", "shot_002", "--what", "keyframe")
    assert result.code == 0, result.stderr

    # shot_002 runs from frame_001 to frame_002: both are new pictures with the next seed.
    new_frames = {name for name, (digest, _) in frames.items() if sha256(run / "base_images" / name) != digest}
    assert new_frames == {"frame_001.png", "frame_002.png"}
    for name in frames.keys() - new_frames:
        assert identity(run / "base_images" / name) == frames[name][1], f"{name} was written again"
    manifest = json.loads((run / "base_images" / "base_images_manifest.json").read_text())
    now = {e["id"]: e["seed"] for e in manifest["base_image_assets"]}
    regenerated = {"frame_001", "frame_002"}
    assert {k: v for k, v in now.items() if k not in regenerated} == {k: v for k, v in seeds.items() if k not in regenerated}
    # Each new seed is higher than the old one and used by no other keyframe of the run.
    for name in regenerated:
        assert now[name] > seeds[name]
    assert len(set(now.values())) == len(now)

    # shot_001 ends on frame_001, shot_003 starts on frame_002: with shot_002 they are rendered again;
    # shot_004 uses neither and is reused as it was.
    new_clips = {name for name, (digest, _) in clips.items() if sha256(run / "video_clips" / name) != digest}
    assert new_clips == {"shot_001.mp4", "shot_002.mp4", "shot_003.mp4"}
    assert identity(run / "video_clips" / "shot_004.mp4") == clips["shot_004.mp4"][1]
    assert {p.name: identity(p) for p in run.glob("dialogue_audio/*.wav")} == speech
    assert sha256(final) != final_before and len(frame_md5s(final)) == SHOTS * FPS

    status = sparkle("status", studio.run_id)
    assert status.code == 0 and "shot_002 regenerations: 1" in status.stdout


def test_stop_in_the_middle_of_a_stage_keeps_finished_items_and_resume_completes(studio, monkeypatch):
    embedded_clips = type(defs.resources["clips"])  # the animatic, when no video model is configured
    assert defs.resources["clips"].backend == "animatic"
    run_id = sparkle("submit", "--plan", studio.plan).run_id
    clips = studio.store.run_dir(run_id) / "video_clips"
    original = embedded_clips.render
    rendered: list[str] = []
    stops = []
    once = threading.Lock()

    def render(self, request, out_path):
        # A person stops the run while its first clip renders. Clips render two at a time; one that
        # enters here meanwhile waits until the stop is recorded, so every clip started after it sees it.
        with once:
            if not stops:
                stops.append(sparkle("control", "stop", run_id))
        rendered.append(request.shot_id)
        return original(self, request, out_path)

    monkeypatch.setattr(embedded_clips, "render", render)
    stopped = sparkle("run", "--run-id", run_id)
    assert stops and stops[0].code == 0, stops
    assert stopped.code == 1 and "stopped" in stopped.stderr, stopped.stdout + stopped.stderr
    # The clips under way when the stop came finished and were kept; no other clip was started.
    first = sorted(rendered)
    assert first and set(first) <= {"shot_001", "shot_002"}, first
    assert sorted(p.stem for p in clips.glob("*.mp4")) == first
    assert all(sidecar(clips / f"{shot}.mp4").exists() for shot in first)
    assert not (studio.store.run_dir(run_id) / "assembly" / "video_raw_concat.mp4").exists()
    status = json.loads(sparkle("status", run_id, "--json").stdout)
    assert status["status"] == "stopped"
    assert {s["name"]: s["status"] for s in status["stages"]}["video_clips"] != "succeeded"
    kept = {shot: identity(clips / f"{shot}.mp4") for shot in first}

    rendered.clear()
    resumed = sparkle("resume", run_id)
    assert resumed.code == 0, resumed.stderr
    assert sorted(rendered) == sorted({f"shot_{i + 1:03d}" for i in range(SHOTS)} - set(first))  # only the rest
    assert {shot: identity(clips / f"{shot}.mp4") for shot in kept} == kept
    final = studio.store.run_dir(run_id) / "finalize" / "video_final.mp4"
    assert len(frame_md5s(final)) == SHOTS * FPS
    assert json.loads(sparkle("status", run_id, "--json").stdout)["status"] == "succeeded"


def test_the_plan_dry_run_job_writes_the_validation_report_and_renders_nothing(studio):
    plan = json.loads(studio.plan.read_text())
    plan["base_images"][2]["prompt"] = plan["base_images"][1]["prompt"]  # shot_002 will be static: a warning
    path = studio.folder / "dry.json"
    path.write_text(json.dumps(plan))
    run_id = sparkle("submit", "--plan", path).run_id

    # As the UI launches it: the job for the partition, with the job's own config.
    result = defs.resolve_job_def("plan_dry_run").execute_in_process(instance=studio.instance, partition_key=run_id)
    assert result.success

    run = studio.store.run_dir(run_id)
    report = json.loads((run / "plan_intake" / "plan_validation.json").read_text())
    assert report["mode"] == "dry"
    assert report["summary"]["shots"] == SHOTS and report["summary"]["base_images"] == SHOTS + 1
    assert any(w["kind"] == "identical_keyframes" and "identical" in w["message"] for w in report["warnings"]), \
        report["warnings"]
    assert latest_metadata(studio.instance, "movie_plan", run_id)["mode"] == "dry"
    for stage in [folder(key) for key in STAGE_KEYS if key != "movie_plan"]:
        assert not (run / stage).exists(), f"a dry run wrote {stage}/"
    for asset in STAGE_KEYS[1:]:
        records = studio.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[run_id]), limit=1).records
        assert not records, f"a dry run materialized {asset}"
