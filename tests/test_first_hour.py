"""A new user's first hour: the samples, the hints, honest labels, one stage vocabulary,
log-friendly progress, seeds that never collide and dialogue that follows the prompt."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sparkle_motion_dagster.cli import installation
from sparkle_motion_dagster.film.plan import parse_plan_document
from sparkle_motion_dagster.resources.planning.template import template_plan
from sparkle_motion_dagster.lifecycle.overrides import read_overrides, seed_override
from sparkle_motion_dagster.lifecycle.regenerate import plan_regeneration
from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sparkle_motion_dagster" / "samples"
LANTERN = SAMPLES / "lantern_walk.json"


def cli(state: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state)}
    for name in ("ARTIFACTS_FS_ROOT", "DAGSTER_HOME"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False)


def test_the_second_sample_declares_the_embedded_renderer_and_is_named_in_the_readme():
    plan = parse_plan_document(json.loads(LANTERN.read_text())).plan
    assert plan.render_profile.video.model_id == "animatic"
    assert len(plan.shots) == 2
    readme = (ROOT / "README.md").read_text()
    for name in ("sparkle_motion_dagster/samples/", "rooftop_revelations.json",
                 "sparkle_motion_dagster/samples/lantern_walk.json", "source .venv/bin/activate", "make models"):
        assert name in readme, name


def test_the_quick_start_prints_the_exact_next_commands(tmp_path):
    state = tmp_path / "state"
    submitted = cli(state, "submit", "--plan", str(LANTERN))
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.split()[1]
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state)}
    env.pop("ARTIFACTS_FS_ROOT", None)
    hint = subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.cli.next_steps"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert hint.returncode == 0, hint.stderr
    assert "source .venv/bin/activate" in hint.stdout
    assert f"sparkle-motion status {run_id}" in hint.stdout
    assert "make ui" in hint.stdout
    assert str(state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4") in hint.stdout
    assert "demo:" in (ROOT / "Makefile").read_text() and "cli.next_steps" in (ROOT / "Makefile").read_text()


def test_commands_that_need_the_models_extra_say_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    result = CliRunner().invoke(installation.make_tiny_models, [str(tmp_path / "tiny")])
    assert "ModuleNotFoundError" not in result.output
    assert "make models" in str(result.exception) and "torch==2.13.0" in str(result.exception)
    assert not (tmp_path / "tiny").exists()

    shown = CliRunner().invoke(click_wrapper(lambda: installation.echo_doctor_report(
        {"packages": {"dagster": "1", "torch": None, "diffusers": None}})), [])
    assert "not installed: torch, diffusers" in shown.output and "make models" in shown.output
    makefile = (ROOT / "Makefile").read_text()
    models = makefile[makefile.index("$(VENV)/.models-installed:"):]
    assert models.index("torch==2.13.0") < models.index("'.[models]'")


def click_wrapper(function):
    import click

    @click.command()
    def command():
        function()

    return command


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A dry run and a run submitted but never launched, in one state folder."""
    state = tmp_path_factory.mktemp("labels") / "state"
    dry = cli(state, "run", "--mode", "dry", "--plan", str(LANTERN))
    assert dry.returncode == 0, dry.stderr
    submitted = cli(state, "submit", "--plan", str(LANTERN))
    assert submitted.returncode == 0, submitted.stderr
    return state, dry.stdout.split()[1], submitted.stdout.split()[1]


def test_a_dry_run_reads_planned_and_a_submitted_run_reads_submitted(two_runs):
    state, dry_run, submitted = two_runs
    listed = cli(state, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    statuses = {row["run_id"]: row["status"] for row in json.loads(listed.stdout)}
    assert statuses == {dry_run: "planned", submitted: "submitted"}


def test_artifacts_stage_takes_asset_names_and_folder_names(two_runs):
    state, dry_run, _ = two_runs
    by_asset = cli(state, "artifacts", dry_run, "--stage", "movie_plan", "--json")
    by_folder = cli(state, "artifacts", dry_run, "--stage", "plan_intake", "--json")
    assert by_asset.returncode == 0, by_asset.stderr
    rows = json.loads(by_asset.stdout)["artifacts"]
    assert rows and rows == json.loads(by_folder.stdout)["artifacts"]
    assert {row["stage"] for row in rows} == {"plan_intake"}
    final = cli(state, "artifacts", dry_run, "--stage", "video_final")
    assert final.returncode == 0, final.stderr
    unknown = cli(state, "artifacts", dry_run, "--stage", "clips")
    assert unknown.returncode == 2 and "video_final" in unknown.stderr and "finalize" in unknown.stderr


def test_evacuate_writes_plain_lines_into_a_log(two_runs, tmp_path):
    state, dry_run, submitted = two_runs
    copied = cli(state, "evacuate", dry_run, submitted, "--to", str(tmp_path / "copy"))
    assert copied.returncode == 0, copied.stderr
    assert "\r" not in copied.stderr
    lines = [line for line in copied.stderr.splitlines() if line.startswith("evacuating ")]
    assert [line.split()[1].rstrip(":") for line in lines] == [dry_run, submitted]


def seeds_now(store: ArtifactStore, run_id: str, keyframes: dict, shots: list) -> dict:
    """Every keyframe's and clip's seed as the stages would use it: the manifest's, or the override.
    A seed collides with another of the same kind: a clip starts from its keyframe's seed by design."""
    overrides = read_overrides(store, run_id)
    seeds = {}
    for key, seed in keyframes.items():
        override = seed_override(overrides, "base_images", key)
        seeds[("keyframe", key)] = seed if override is None else override
    for shot in shots:
        override = seed_override(overrides, "shots", shot.id)
        seeds[("clip", shot.id)] = keyframes[shot.start_base_image_id] if override is None else override
    return seeds


def test_regenerated_seeds_never_collide_with_another_items_seed(tmp_path, sample_envelope):
    store = ArtifactStore(tmp_path)
    run_id = "run_0000beef"
    plan = parse_plan_document(sample_envelope).plan
    atomic_write_json(store.path(run_id, "plan_intake", "movie_plan.json"), plan.model_dump(mode="json"))
    keyframes = {image.id: 500 + index for index, image in enumerate(plan.base_images)}  # 500, 501, 502
    atomic_write_json(store.path(run_id, "base_images", "base_images_manifest.json"),
                      {"base_image_assets": [{"id": key, "seed": seed} for key, seed in keyframes.items()]})
    # A clip's seed is its start keyframe's: shot_002's is shot_001's + 1.
    atomic_write_json(store.path(run_id, "video_clips", "motion_manifest.json"), {"clip_assets": [
        {"shot_id": shot.id, "seed": keyframes[shot.start_base_image_id]} for shot in plan.shots]})

    for what in ("clip", "keyframe", "clip", "keyframe"):
        before = seeds_now(store, run_id, keyframes, plan.shots)
        result = plan_regeneration(store, run_id, "shot_001", what=what, seed=None)
        kind = "clip" if what == "clip" else "keyframe"
        regenerated = {(kind, item) for item in result["seeds"]}
        others = {seed for key, seed in before.items() if key[0] == kind and key not in regenerated}
        assert not set(result["seeds"].values()) & others, (what, result["seeds"], before)
        assert len(set(result["seeds"].values())) == len(result["seeds"])
        for item, seed in result["seeds"].items():
            assert seed != before[(kind, item)]


def test_template_dialogue_follows_the_prompt_and_the_characters():
    def lines(prompt, title, seed=0):
        plan = template_plan(prompt, title, seed)
        names = {c["id"]: c["name"] for c in plan["characters"]}
        spoken = [entry["text"] for entry in plan["dialogue_timeline"] if entry["type"] == "dialogue"]
        return spoken, names

    rooftop, names = lines("Two friends on a neon rooftop reconcile before sunrise.", "Rooftop Revelations")
    bakery, _ = lines("A robot learns to bake bread in a tiny harbour town.", "Dough")
    assert rooftop != bakery
    text = " ".join(rooftop)
    assert "rooftop" in text.lower()
    assert any(name in text for name in names.values())
    assert "robot" in " ".join(bakery).lower()
    assert lines("Two friends on a neon rooftop reconcile before sunrise.", "Rooftop Revelations")[0] == rooftop
