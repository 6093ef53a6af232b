"""doctor, make-tiny-models, --size and per-run image settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparkle_motion_dagster.media.ffmpeg import probe

from sparkle_motion_dagster.film.plan import PlanValidationError, validate_plan
from sparkle_motion_dagster.resources.keyframes import StoryboardKeyframes
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes


def cli(tmp_path, *args, **env):
    full_env = {**os.environ, "SPARKLE_STATE_DIR": str(tmp_path / "state"), **env}
    for name in ("DAGSTER_HOME", "ARTIFACTS_FS_ROOT", "IMAGES_SDXL_MODEL", "VIDEOS_WAN_MODEL", "SCRIPT_AGENT_MODEL"):
        if name not in env:
            full_env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.cli.main", *args], env=full_env,
                          capture_output=True, text=True)


def test_image_settings_from_the_plan_and_the_run():
    sdxl = SdxlKeyframes(model="/models/sdxl", steps=30)
    tuned = sdxl.with_settings({"steps": 12, "scheduler": "dpm++", "guidance": None, "unrelated": 1})
    assert (tuned.steps, tuned.scheduler, tuned.guidance, tuned.model) == (12, "dpm++", 7.5, "/models/sdxl")
    assert sdxl.with_settings({}) is sdxl
    with pytest.raises(ValueError, match="scheduler"):
        sdxl.with_settings({"scheduler": "warp-drive"})
    storyboard = StoryboardKeyframes()
    assert storyboard.with_settings({"steps": 3}) is storyboard


def test_render_profile_images_is_validated(sample_plan):
    sample_plan["render_profile"]["images"] = {"steps": 0, "scheduler": "dpm++"}
    with pytest.raises(PlanValidationError) as info:
        validate_plan(sample_plan)
    assert info.value.issues[0].path == "render_profile.images.steps"
    sample_plan["render_profile"]["images"] = {"steps": 20, "guidance": 6.5}
    assert validate_plan(sample_plan).render_profile.images.steps == 20


def test_doctor_reports_embedded_backends_and_a_missing_model(tmp_path):
    report = json.loads(cli(tmp_path, "doctor", "--json").stdout)
    assert report["ok"] is True
    assert report["stages"]["video_clips"]["backend"] == "animatic"
    assert report["stages"]["base_images"]["backend"] == "storyboard"
    broken = cli(tmp_path, "doctor", "--json", IMAGES_SDXL_MODEL=str(tmp_path / "no-such-model"))
    assert broken.returncode == 1
    problem = json.loads(broken.stdout)["stages"]["base_images"]
    assert problem["backend"] == "sdxl" and problem["ok"] is False and "IMAGES_SDXL_MODEL" in problem["problem"]
    bad_value = cli(tmp_path, "doctor", IMAGES_SDXL_MODEL="x", IMAGES_SDXL_STEPS="many")
    assert bad_value.returncode != 0 and "IMAGES_SDXL_STEPS" in bad_value.stderr


@pytest.mark.slow
def test_tiny_models_from_the_cli_are_what_doctor_finds(tmp_path):
    pytest.importorskip("diffusers")
    made = cli(tmp_path, "dev", "make-tiny-models", str(tmp_path / "tiny"))
    assert made.returncode == 0, made.stderr
    report = cli(tmp_path, "doctor", "--json", IMAGES_SDXL_MODEL=str(tmp_path / "tiny" / "sdxl"),
                 VIDEOS_WAN_MODEL=str(tmp_path / "tiny" / "wan-flf2v"))
    stages = json.loads(report.stdout)["stages"]
    assert report.returncode == 0, report.stdout
    assert stages["base_images"]["backend"] == "sdxl" and stages["base_images"]["ok"]
    assert stages["video_clips"]["serves"] == ["wan-2.1"] and stages["video_clips"]["ok"]


@pytest.mark.slow
def test_size_makes_a_small_proof(tmp_path):
    result = cli(tmp_path, "run", "--sample", "--preview", "--size", "320x180")
    assert result.returncode == 0, result.stderr
    final = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("video_final"))
    info = probe(Path(final))
    assert (info["width"], info["height"]) == (320, 180)
    bad = cli(tmp_path, "run", "--sample", "--preview", "--size", "321x180")
    assert bad.returncode == 2 and "--size" in bad.stderr
