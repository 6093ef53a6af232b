"""Speed levers and model families on tiny random Wan pipelines: a real LoRA (made with peft, saved in
diffusers format), attention backends, regional compile, a step cache, and a Wan 2.2 A14B-shaped
pipeline (two transformers) told apart from Wan 2.1."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from sparkle_motion_dagster.dev.tiny_models import build_tiny_a14b, build_tiny_lora, build_tiny_wan  # noqa: E402
from sparkle_motion_dagster.film import levers  # noqa: E402
from sparkle_motion_dagster.film.intake import LeverNotTakenError, resolve_video_backend  # noqa: E402
from sparkle_motion_dagster.film.plan import PlanValidationError, validate_plan  # noqa: E402
from sparkle_motion_dagster.resources.clips import ClipRequest, wan  # noqa: E402
from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips  # noqa: E402
from sparkle_motion_dagster.resources.clips.wan import WanClips  # noqa: E402
from sparkle_motion_dagster.insight.provenance import model_provenance  # noqa: E402
from sparkle_motion_dagster.store.storage import sha256_file  # noqa: E402

SIZE = 32
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    folders = {"i2v": build_tiny_wan(root / "wan-i2v", first_last_frame=False),
               "flf": build_tiny_wan(root / "wan-flf2v", first_last_frame=True),
               "a14b": build_tiny_a14b(root / "wan-a14b")}
    folders["lora"] = build_tiny_lora(folders["i2v"], root / "lora")
    yield folders
    WanClips(model=str(folders["i2v"])).release()


@pytest.fixture(scope="module")
def keyframes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keyframes")
    rng = np.random.default_rng(0)
    paths = []
    for name, tint in (("start", (220, 60, 40)), ("end", (40, 80, 220))):
        path = folder / f"{name}.png"
        Image.fromarray(np.clip(rng.normal(tint, 30, size=(36, 64, 3)), 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return tuple(paths)


def clips(models, kind="i2v", **overrides):
    return WanClips(**{"model": str(models[kind]), "device_preset": "cpu", "steps": 2, "gen_fps": 8,
                       "max_frames_per_generation": 9, "retime": "blend", **overrides})


def request(keyframes, frames=5):
    return ClipRequest(shot_id="shot_001", start_image=keyframes[0], end_image=keyframes[1], frames=frames, fps=8.0,
                       width=SIZE, height=SIZE, seed=3, motion_prompt="slow push in", prompt="a city at night")


@pytest.fixture
def outputs(monkeypatch):
    """The uint8 frames of every pipeline call, and the pipeline it ran on."""
    from diffusers import WanImageToVideoPipeline

    recorded = []
    original = WanImageToVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        recorded.append({"pipe": self, "frames": np.asarray(output.frames[0]).copy(), **kwargs})
        return output

    monkeypatch.setattr(WanImageToVideoPipeline, "__call__", spy)
    return recorded


# ---------------------------------------------------------------------- LoRAs


def test_a_lora_loads_changes_the_output_and_is_recorded_by_sha256(models, keyframes, outputs, tmp_path):
    lora = {"path": str(models["lora"]), "scale": 1.0}
    clips(models).render(request(keyframes), tmp_path / "plain.mp4")
    with_lora = clips(models).with_settings({"model_id": "wan-2.1", "steps": 2, "loras": [lora]})
    details = with_lora.render(request(keyframes), tmp_path / "lora.mp4")
    plain, adapted = outputs
    assert "lora_0" in adapted["pipe"].transformer.peft_config
    assert not np.allclose(plain["frames"], adapted["frames"], atol=1e-4)

    digest = sha256_file(models["lora"])
    assert details["levers"]["loras"] == [{"path": str(models["lora"].resolve()), "scale": 1.0, "sha256": digest}]
    assert with_lora.fingerprint()["resolved"]["levers"]["loras"][0]["sha256"] == digest
    record = model_provenance(with_lora)
    assert record["loras"][0]["sha256"] == digest and record["settings"]["steps"] == 2
    assert record["family"] == "wan-2.1-i2v-480p"


def test_a_lora_scale_changes_the_fingerprint_and_the_output_without_a_reload(models, keyframes, outputs, tmp_path):
    full = clips(models, loras=[{"path": str(models["lora"]), "scale": 1.0}])
    half = clips(models, loras=[{"path": str(models["lora"]), "scale": 0.25}])
    assert full.fingerprint() != half.fingerprint()
    assert full.fingerprint() == clips(models, loras=[{"path": str(models["lora"]), "scale": 1.0}]).fingerprint()
    full.render(request(keyframes), tmp_path / "a.mp4")
    half.render(request(keyframes), tmp_path / "b.mp4")
    assert outputs[0]["pipe"] is outputs[1]["pipe"]  # same files: the loaded pipeline only changes its scale
    assert not np.allclose(outputs[0]["frames"], outputs[1]["frames"], atol=1e-4)


def test_a_missing_lora_file_names_the_profile_field(models, tmp_path):
    with pytest.raises(ValueError, match=r"render_profile\.video\.loras.*\[0\]\.path.*no such file"):
        clips(models, loras=[{"path": str(tmp_path / "gone.safetensors")}]).runtime()


def test_loras_from_the_environment_as_json_or_one_path(models):
    lora = str(models["lora"])
    env = {"VIDEOS_WAN_MODEL": str(models["i2v"])}
    assert WanClips.from_env({**env, "VIDEOS_WAN_LORAS": lora}).loras[0].path == lora
    parsed = WanClips.from_env({**env, "VIDEOS_WAN_LORAS": f'[{{"path": "{lora}", "scale": 0.5}}]'})
    assert (parsed.loras[0].path, parsed.loras[0].scale) == (lora, 0.5)


# ---------------------------------------------------------------------- intake


def plan_with(sample_plan, **video):
    plan = copy.deepcopy(sample_plan)
    plan["render_profile"]["video"].update(video)
    return plan


def test_an_unknown_attention_backend_is_refused_at_intake_naming_the_field(sample_plan):
    with pytest.raises(PlanValidationError, match=r"render_profile\.video\.attention_backend.*turbo"):
        validate_plan(plan_with(sample_plan, attention_backend="turbo"))
    for name in levers.ATTENTION_BACKENDS:  # every name offered is one diffusers knows
        from diffusers.models.attention_dispatch import AttentionBackendName

        AttentionBackendName(name)


def test_an_attention_backend_that_is_not_installed_names_the_field(models):
    with pytest.raises(RuntimeError, match=r"render_profile\.video\.attention_backend.*'sage'.*sageattention"):
        clips(models, attention_backend="sage").runtime()


def test_levers_the_animatic_cannot_take_are_refused_at_intake(sample_plan, models):
    AnimaticClips()  # the renderers declare what they take
    plan = validate_plan(plan_with(sample_plan, model_id="animatic", loras=[{"path": str(models["lora"])}]))
    with pytest.raises(LeverNotTakenError, match=r"render_profile\.video\.loras: the animatic"):
        resolve_video_backend(plan, served=("animatic",), backend="animatic", preview=False)
    wan_plan = validate_plan(plan_with(sample_plan, model_id="wan-2.1", steps=4, loras=[{"path": "x"}]))
    assert resolve_video_backend(wan_plan, served=WanClips.model_ids, backend="wan-2.1", preview=False)
    previewed = resolve_video_backend(wan_plan, served=("animatic",), backend="animatic", preview=True)
    assert previewed["ignored_levers"] == ["steps", "loras"]


def test_a_bad_cache_and_the_fast_preset_without_its_lora_are_refused(sample_plan, models):
    with pytest.raises(PlanValidationError, match=r"render_profile\.video\.cache.*not a cache"):
        validate_plan(plan_with(sample_plan, cache={"name": "teacache", "threshold": 0.1}))
    with pytest.raises(ValueError, match=r"render_profile\.video\.preset = 'fast'.*VIDEOS_WAN_FAST_LORA"):
        clips(models).with_settings({"preset": "fast"})
    fast = clips(models, fast_lora=str(models["lora"])).with_settings({"preset": "fast", "guidance": 2.0})
    assert (fast.steps, fast.guidance, fast.loras[0].path) == (4, 2.0, str(models["lora"]))


# ---------------------------------------------------------------------- attention, cache, compile


def test_a_cache_config_runs_and_is_recorded(models, keyframes, outputs, tmp_path):
    cached = clips(models, steps=4).with_settings({"cache": {"name": "first_block", "threshold": 0.2}})
    details = cached.render(request(keyframes), tmp_path / "cached.mp4")
    pipe = outputs[0]["pipe"]
    assert pipe.transformer.is_cache_enabled
    assert details["levers"]["cache"] == "first_block:0.2"
    assert cached.fingerprint()["resolved"]["levers"]["cache"] == "first_block:0.2"
    assert cached.fingerprint() != clips(models, steps=4).fingerprint()


def test_the_native_attention_backend_is_set_on_the_transformer(models, keyframes, outputs, tmp_path):
    clips(models, attention_backend="native").render(request(keyframes), tmp_path / "native.mp4")
    processors = [m.processor for m in outputs[0]["pipe"].transformer.modules() if hasattr(m, "processor")]
    assert processors and {p._attention_backend.value for p in processors} == {"native"}


@pytest.mark.slow
def test_regional_compile_runs_on_cpu(models, keyframes, outputs, tmp_path):
    details = clips(models, compile="regional").render(request(keyframes), tmp_path / "compiled.mp4")
    blocks = [m for m in outputs[0]["pipe"].transformer.modules() if type(m).__name__ == "WanTransformerBlock"]
    assert blocks and all(block._compiled_call_impl is not None for block in blocks)
    assert details["levers"]["compile"] == "regional" and details["frames"] == 5


# ---------------------------------------------------------------------- model families


def test_a_wan_22_a14b_pipeline_is_recognised_and_runs_both_transformers(models, keyframes, outputs, tmp_path):
    renderer = clips(models, "a14b").with_settings({"model_id": "wan-2.2-i2v-a14b"})
    assert renderer.runtime()["family"] == "wan-2.2-i2v-a14b"
    details = renderer.render(request(keyframes), tmp_path / "a14b.mp4")
    assert details["family"] == "wan-2.2-i2v-a14b" and details["continuity_mode"] == "image_to_video"
    pipe = outputs[0]["pipe"]
    assert pipe.transformer_2 is not None and pipe.config.boundary_ratio == 0.875
    assert clips(models, "a14b").runtime()["family"] == "wan-2.2-i2v-a14b"  # undeclared: what the folder holds


def test_declaring_another_family_than_the_folder_holds_is_refused(models):
    with pytest.raises(ValueError, match=r"render_profile\.video\.model_id = 'wan-2.1-flf2v-720p'.*"
                                         r"wan-a14b.*wan-2\.2-i2v-a14b"):
        clips(models, "a14b").with_settings({"model_id": "wan-2.1-flf2v-720p"}).runtime()
    with pytest.raises(ValueError, match=r"render_profile\.video\.model_id = 'wan-2.1'.*wan-2\.2-i2v-a14b"):
        clips(models, "a14b", model_id="wan-2.1").runtime()
    assert clips(models, "flf", model_id="wan-2.1").runtime()["family"] == "wan-2.1-flf2v-720p"
    assert clips(models, "i2v", model_id="wan-2.1-i2v-480p").runtime()["family"] == "wan-2.1-i2v-480p"
    assert wan.WanClips.model_ids[0] == "wan-2.1"


def test_the_dry_run_counts_generations_and_frames_as_the_render_makes_them(models, keyframes, outputs, tmp_path):
    renderer = clips(models, "flf")
    planned = renderer.generations(40, 12.0)
    shot = ClipRequest(**{**request(keyframes, frames=40).__dict__, "fps": 12.0})
    details = renderer.render(shot, tmp_path / "a.mp4")
    assert planned == {"generations": details["generations"], "model_frames": details["model_frames"]} \
        == {"generations": len(outputs), "model_frames": sum(len(o["frames"]) for o in outputs)}
    guided = clips(models, "flf", waypoints=True).generations(40, 12.0)
    assert guided == {"generations": planned["generations"] + 1, "model_frames": planned["model_frames"] + 9}


def test_the_estimate_scales_with_the_runs_steps(models, sample_plan):
    from sparkle_motion_dagster.insight.estimates import backends_of, estimate

    plan = validate_plan(plan_with(sample_plan, model_id="wan-2.1"))
    seconds = {}
    for steps in (4, 40):
        renderer = clips(models).with_settings({"steps": steps})
        backends = backends_of({"clips": renderer})
        assert backends["video_clips"]["steps"] == steps
        seconds[steps] = estimate(plan, backends, [])["stages"]["video_clips"]["seconds"]
    assert seconds[40] == pytest.approx(10 * seconds[4], rel=0.01)


def test_a_lora_goes_into_the_wan_22_expert_it_names(models, keyframes, outputs, tmp_path):
    low_noise = [{"path": str(models["lora"]), "scale": 1.0, "transformer": "transformer_2"}]
    details = clips(models, "a14b", loras=low_noise).render(request(keyframes), tmp_path / "low.mp4")
    pipe = outputs[0]["pipe"]
    assert "lora_0" in pipe.transformer_2.peft_config and not getattr(pipe.transformer, "peft_config", None)
    assert details["levers"]["loras"][0]["transformer"] == "transformer_2"
    with pytest.raises(ValueError, match=r"render_profile\.video\.loras.*\[0\]\.transformer = 'transformer_2'.*one"):
        clips(models, "i2v", loras=low_noise).runtime()
