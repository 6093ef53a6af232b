"""doctor, make-tiny-models, --size and per-run image settings."""

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from sparkle_motion_dagster.cli import doctor
from sparkle_motion_dagster.film.plan import PlanValidationError, validate_plan
from sparkle_motion_dagster.media import ffmpeg
from sparkle_motion_dagster.media.ffmpeg import probe
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes
from sparkle_motion_dagster.resources.keyframes.storyboard import StoryboardKeyframes
from sparkle_motion_dagster.resources.settings import SettingsError


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


@pytest.mark.slow
def test_doctor_reports_embedded_backends_and_a_missing_model(tmp_path):
    report = json.loads(cli(tmp_path, "doctor", "--json").stdout)
    assert report["ok"] is True
    assert report["stages"]["video_clips"]["backend"] == "animatic"
    assert report["stages"]["base_images"]["backend"] == "storyboard"
    broken = cli(tmp_path, "doctor", "--json", IMAGES_SDXL_MODEL=str(tmp_path / "no-such-model"))
    assert broken.returncode == 1
    problem = json.loads(broken.stdout)["stages"]["base_images"]
    assert problem["backend"] == "sdxl" and problem["ok"] is False and "IMAGES_SDXL_MODEL" in problem["problem"]
    bad_values = cli(tmp_path, "doctor", "--json", IMAGES_SDXL_MODEL="x", IMAGES_SDXL_STEPS="many",
                     VIDEOS_WAN_MODEL="y", VIDEOS_WAN_STEPS="0")
    assert bad_values.returncode == 1  # a report, not a crash on the first bad value
    problems = {p["variable"]: p for p in json.loads(bad_values.stdout)["problems"]}
    assert problems["IMAGES_SDXL_STEPS"]["reason"] == "expected an integer"
    assert problems["VIDEOS_WAN_STEPS"]["reason"] == "must be at least 1"


ADAPTER_VARIABLES = ("SCRIPT_AGENT_", "TTS_VITS_", "TTS_CHATTERBOX_", "IMAGES_SDXL_", "VIDEOS_WAN_", "WAV2LIP_")


def test_doctor_reports_every_problem_at_once(monkeypatch, tmp_path):
    for name in [n for n in os.environ if n.startswith(ADAPTER_VARIABLES)]:
        monkeypatch.delenv(name)
    bad = {"SCRIPT_AGENT_MODEL": "m", "SCRIPT_AGENT_TEMPERATURE": "9", "IMAGES_SDXL_MODEL": "x",
           "IMAGES_SDXL_STEPS": "many", "IMAGES_SDXL_DEVICE": "tpu", "VIDEOS_WAN_MODEL": "y",
           "VIDEOS_WAN_MAX_FRAMES": "80", "WAV2LIP_CHECKPOINT": "x.pth", "WAV2LIP_FACE_DETECTOR": "magic",
           "TTS_VITS_MODEL": "facebook/mms-tts-eng", "TTS_CHATTERBOX_DEVICE": "cpu", "ARTIFACTS_BACKEND": "tape",
           "SPARKLE_SPEECH_MAX_TEMPO": "0.5"}
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ffmpeg, "ffmpeg_exe", lambda: str(tmp_path / "no-ffmpeg"))  # as FFMPEG_PATH would say
    monkeypatch.setattr(doctor, "find_spec", lambda name: None if name == "transformers" else find_spec(name))

    report = doctor.diagnose(probe=False)
    settings = {p["variable"]: p for p in report["problems"] if p["kind"] == "setting"}
    assert set(settings) == {"SCRIPT_AGENT_TEMPERATURE", "IMAGES_SDXL_STEPS", "IMAGES_SDXL_DEVICE",
                             "VIDEOS_WAN_MAX_FRAMES", "WAV2LIP_FACE_DETECTOR", "ARTIFACTS_BACKEND",
                             "SPARKLE_SPEECH_MAX_TEMPO"}
    tempo = settings["SPARKLE_SPEECH_MAX_TEMPO"]
    assert (tempo["stage"], tempo["value"], tempo["reason"]) == ("dialogue_audio", "0.5", "must be at least 1")
    steps = settings["IMAGES_SDXL_STEPS"]
    assert (steps["stage"], steps["value"], steps["reason"]) == ("base_images", "many", "expected an integer")
    assert steps["message"] == "IMAGES_SDXL_STEPS (SdxlKeyframes.steps) = 'many': expected an integer"
    assert "4k+1" in settings["VIDEOS_WAN_MAX_FRAMES"]["reason"]
    packages = {(p["stage"], p["package"]) for p in report["problems"] if p["kind"] == "package"}
    assert packages == {("dialogue_audio", "transformers")}  # VITS's settings are good, its library is missing
    assert [p["program"] for p in report["problems"] if p["kind"] == "program"] == ["ffmpeg"]
    assert report["ok"] is False and len(report["missing"]) == len(report["problems"])
    stages = report["stages"]
    assert (stages["base_images"]["backend"], stages["base_images"]["ok"]) == ("sdxl", False)
    assert "IMAGES_SDXL_DEVICE" in stages["base_images"]["problem"] and "IMAGES_SDXL_STEPS" in stages["base_images"]["problem"]
    assert stages["video_clips"]["serves"] == ["wan-2.1", "wan-2.1-i2v-480p", "wan-2.1-flf2v-720p", "wan-2.2-i2v-a14b",
                                              "wan-2.2-ti2v-5b"]
    assert stages["dialogue_audio"]["backend"] == "vits"
    assert report["warnings"] == ["TTS_CHATTERBOX_DEVICE is set but TTS_CHATTERBOX_PYTHON is not: it is not used"]


def test_a_bad_value_stops_the_definitions_naming_every_variable():
    from sparkle_motion_dagster.resources.selection import configured_resources

    with pytest.raises(SettingsError) as caught:
        configured_resources({"IMAGES_SDXL_MODEL": "x", "IMAGES_SDXL_STEPS": "many", "WAV2LIP_CHECKPOINT": "x.pth",
                              "WAV2LIP_BATCH_SIZE": "0"})
    assert [p.variable for p in caught.value.problems] == ["IMAGES_SDXL_STEPS", "WAV2LIP_BATCH_SIZE"]
    chosen = configured_resources({"IMAGES_SDXL_MODEL": "x", "IMAGES_SDXL_STEPS": "4"})
    assert chosen["keyframes"].steps == 4 and chosen["clips"].backend == "animatic"


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
    assert stages["video_clips"]["serves"] == ["wan-2.1", "wan-2.1-i2v-480p", "wan-2.1-flf2v-720p", "wan-2.2-i2v-a14b",
                                              "wan-2.2-ti2v-5b"] and stages["video_clips"]["ok"]


@pytest.mark.slow
def test_size_makes_a_small_proof(tmp_path):
    result = cli(tmp_path, "run", "--sample", "--preview", "--size", "320x180")
    assert result.returncode == 0, result.stderr
    final = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("video_final"))
    info = probe(Path(final))
    assert (info["width"], info["height"]) == (320, 180)
    bad = cli(tmp_path, "run", "--sample", "--preview", "--size", "321x180")
    assert bad.returncode == 2 and "--size" in bad.stderr


def fake_hub_cache(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face hub cache holding ``files`` of ``repo`` (the layout huggingface_hub reads)."""
    commit = "0" * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    return snapshot


def test_doctor_finds_weights_only_where_they_are(tmp_path, monkeypatch):
    from sparkle_motion_dagster.resources.model_support import weights_status

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    index = json.dumps({"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                        "scheduler": ["diffusers", "EulerDiscreteScheduler"]}).encode()
    missing = weights_status("acme/sdxl-like")
    assert not missing["weights_found"] and "not in the Hugging Face cache" in missing["weights"]

    snapshot = fake_hub_cache(cache, "acme/sdxl-like", {"model_index.json": index, "unet/config.json": b"{}",
                                                          "scheduler/scheduler_config.json": b"{}"})
    configs_only = weights_status("acme/sdxl-like")
    assert not configs_only["weights_found"] and "unet" in configs_only["weights"]
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    assert weights_status("acme/sdxl-like")["weights_found"]

    shard_index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(shard_index))
    (snapshot / "unet" / "model-00001-of-00002.safetensors").write_bytes(b"half")
    half = weights_status("acme/sdxl-like")
    assert not half["weights_found"] and "1 weight shard(s) missing" in half["weights"]

    folder = tmp_path / "voice"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert not weights_status(str(folder))["weights_found"]
    (folder / "model.safetensors").write_bytes(b"weights")
    assert weights_status(str(folder))["weights_found"]

    # what doctor reports for the keyframe stage: a repo id that is not cached is not found
    monkeypatch.setenv("IMAGES_SDXL_MODEL", "acme/not-downloaded")
    monkeypatch.setenv("IMAGES_SDXL_DEVICE", "cpu")
    entry = doctor.diagnose(probe=True)["stages"]["base_images"]
    assert entry["weights_found"] is False and entry["ok"] is False
    assert "not in the Hugging Face cache" in entry["problem"]
