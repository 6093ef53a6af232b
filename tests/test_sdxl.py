"""SdxlKeyframes on a tiny random SDXL pipeline, loaded through the adapter's own code, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
# Busy-waiting OpenMP threads make tiny models 20-30x slower when the CPU is shared (measured on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch first loads OpenMP

import json

import numpy as np
import pytest

pytest.importorskip("diffusers")

from sparkle_motion_dagster.dev.tiny_models import build_tiny_sdxl  # noqa: E402
from sparkle_motion_dagster.resources.keyframes import sdxl  # noqa: E402
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes  # noqa: E402

PROMPT = "a rooftop at night, rain, neon light"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = build_tiny_sdxl(tmp_path_factory.mktemp("models") / "sdxl")
    yield folder
    SdxlKeyframes(model=str(folder)).release()


@pytest.fixture
def renderer(model_dir):
    return SdxlKeyframes(model=str(model_dir), device="cpu", steps=2)


def pixels(image):
    return np.asarray(image.convert("RGB"))


def test_renders_an_rgb_image_of_the_requested_size(renderer):
    image = renderer.render(PROMPT, seed=1, width=64, height=64, label="img_01")
    assert image.mode == "RGB" and image.size == (64, 64)
    assert pixels(image).std() > 0  # a decoded picture, not a blank canvas


def test_sizes_that_are_not_multiples_of_8_come_back_exact(renderer):
    assert sdxl.generation_size(72, 44, renderer.max_pixels) == (72, 48)
    assert renderer.render(PROMPT, seed=1, width=72, height=44, label="x").size == (72, 44)


def test_same_seed_same_image_and_another_seed_another_image(renderer):
    first = pixels(renderer.render(PROMPT, seed=7, width=64, height=64, label="a"))
    again = pixels(renderer.render(PROMPT, seed=7, width=64, height=64, label="b"))
    other = pixels(renderer.render(PROMPT, seed=8, width=64, height=64, label="c"))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_same_seed_same_image_in_a_fresh_load(renderer):
    before = pixels(renderer.render(PROMPT, seed=3, width=64, height=64, label="a"))
    renderer.release()
    assert sdxl.loaded_key() is None
    after = pixels(renderer.render(PROMPT, seed=3, width=64, height=64, label="a"))
    assert np.array_equal(before, after)


def test_the_pipeline_loads_once_per_process(renderer, monkeypatch):
    from diffusers import StableDiffusionXLPipeline

    renderer.release()
    loads = []
    original = StableDiffusionXLPipeline.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_pretrained", classmethod(counting))
    for seed in (1, 2):
        renderer.render(PROMPT, seed=seed, width=64, height=64, label="x")
    SdxlKeyframes(**renderer.model_dump()).render(PROMPT, seed=3, width=64, height=64, label="x")
    assert loads == [str(renderer.model_dump()["model"])]
    assert sdxl.loaded_key() == (str(renderer.model_dump()["model"]), "cpu", "float32", False)
    SdxlKeyframes(model="any/other").release()  # the process's pipeline, whichever resource asks
    assert sdxl.loaded_key() is None


def test_scheduler_names_map_to_diffusers_classes_and_reset(renderer):
    dpm = renderer.model_copy(update={"scheduler": "dpm++"})
    assert dpm.render(PROMPT, seed=1, width=64, height=64, label="x").size == (64, 64)
    assert type(sdxl._LOADED.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    renderer.render(PROMPT, seed=1, width=64, height=64, label="x")
    assert type(sdxl._LOADED.pipe.scheduler).__name__ == "EulerDiscreteScheduler"  # the model's own


def test_the_resource_is_plain_config_with_a_full_fingerprint(renderer, model_dir):
    dumped = renderer.model_dump()
    json.dumps(dumped)  # only plain values: nothing loaded lives on the resource
    assert SdxlKeyframes(**dumped) == renderer
    fingerprint = renderer.fingerprint()
    assert fingerprint["backend"] == renderer.backend == "sdxl"
    assert fingerprint["model"] == str(model_dir) and fingerprint["steps"] == 2
    assert fingerprint["resolved"]["device"] == "cpu" and fingerprint["resolved"]["dtype"] == "float32"
    assert fingerprint["resolved"]["model_files"].startswith("folder:")
    assert renderer.model_copy(update={"guidance": 3.0}).fingerprint() != fingerprint


# ---------------------------------------------------------------------- clear errors


def test_missing_model_folder_names_the_variable(tmp_path):
    renderer = SdxlKeyframes(model=str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(ValueError, match="IMAGES_SDXL_MODEL.*does not exist"):
        renderer.render(PROMPT, seed=1, width=64, height=64, label="x")


def test_a_folder_that_is_not_a_diffusers_pipeline_is_refused(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"not a pipeline")
    with pytest.raises(ValueError, match="IMAGES_SDXL_MODEL.*no model_index.json"):
        SdxlKeyframes(model=str(tmp_path), device="cpu").render(PROMPT, seed=1, width=64, height=64, label="x")


def test_a_diffusers_folder_of_another_pipeline_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({
        "_class_name": "WanImageToVideoPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"], "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5Tokenizer"], "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    }))
    with pytest.raises(ValueError, match="IMAGES_SDXL_MODEL.*not an SDXL text-to-image pipeline.*unet"):
        SdxlKeyframes(model=str(tmp_path)).fingerprint()


def test_an_uncached_repo_id_fails_clearly_offline():
    import huggingface_hub.constants

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        pytest.skip("huggingface_hub was imported before HF_HUB_OFFLINE was set")
    renderer = SdxlKeyframes(model="sparkle-motion-tests/no-such-sdxl", device="cpu")
    with pytest.raises(RuntimeError, match="IMAGES_SDXL_MODEL.*could not load an SDXL pipeline"):
        renderer.render(PROMPT, seed=1, width=64, height=64, label="x")


def test_cuda_without_cuda_names_the_device_variable(model_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    renderer = SdxlKeyframes(model=str(model_dir), device="cuda")
    with pytest.raises(RuntimeError, match="IMAGES_SDXL_DEVICE.*CUDA is not available"):
        renderer.render(PROMPT, seed=1, width=64, height=64, label="x")
    assert SdxlKeyframes(model=str(model_dir), device="auto").runtime()["device"] == "cpu"


def test_cpu_offload_on_cpu_is_refused(model_dir):
    with pytest.raises(RuntimeError, match="IMAGES_SDXL_CPU_OFFLOAD"):
        SdxlKeyframes(model=str(model_dir), device="cpu", cpu_offload=True).runtime()


@pytest.mark.parametrize(("field", "value", "variable"), [
    ("device", "gpu", "IMAGES_SDXL_DEVICE"),
    ("scheduler", "karras-magic", "IMAGES_SDXL_SCHEDULER"),
    ("dtype", "int8", "IMAGES_SDXL_DTYPE"),
    ("steps", 0, "IMAGES_SDXL_STEPS"),
])
def test_bad_settings_name_their_variable(model_dir, field, value, variable):
    with pytest.raises(ValueError, match=variable):
        SdxlKeyframes(model=str(model_dir), **{field: value}).validate_settings()


# ---------------------------------------------------------------------- from_env


def test_from_env_is_none_without_a_model():
    assert SdxlKeyframes.from_env({}) is None
    assert SdxlKeyframes.from_env({"IMAGES_SDXL_MODEL": "  ", "IMAGES_SDXL_DEVICE": "cpu"}) is None


def test_from_env_reads_the_settings(model_dir):
    renderer = SdxlKeyframes.from_env({
        "IMAGES_SDXL_MODEL": str(model_dir), "IMAGES_SDXL_DEVICE": "cpu", "IMAGES_SDXL_STEPS": "4",
        "IMAGES_SDXL_GUIDANCE": "6.5", "IMAGES_SDXL_SCHEDULER": "euler_a", "IMAGES_SDXL_VAE_TILING": "true",
    })
    assert (renderer.model, renderer.device, renderer.steps, renderer.guidance) == (str(model_dir), "cpu", 4, 6.5)
    assert renderer.scheduler == "euler_a" and renderer.vae_tiling is True and renderer.cpu_offload is False


@pytest.mark.parametrize(("name", "value"), [("IMAGES_SDXL_STEPS", "many"), ("IMAGES_SDXL_GUIDANCE", "high"),
                                             ("IMAGES_SDXL_CPU_OFFLOAD", "maybe"), ("IMAGES_SDXL_DEVICE", "tpu")])
def test_from_env_errors_name_the_variable(model_dir, name, value):
    with pytest.raises(ValueError, match=name):
        SdxlKeyframes.from_env({"IMAGES_SDXL_MODEL": str(model_dir), name: value})


# ---------------------------------------------------------------------- levers


def test_a_lora_changes_the_keyframe_and_is_recorded_and_unfit_levers_are_refused(renderer, model_dir, tmp_path):
    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pytest.importorskip("peft")
    unet = StableDiffusionXLPipeline.from_pretrained(str(model_dir)).unet
    torch.manual_seed(1)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    StableDiffusionXLPipeline.save_lora_weights(str(tmp_path), unet_lora_layers=get_peft_model_state_dict(unet))
    lora = tmp_path / "pytorch_lora_weights.safetensors"

    plain = pixels(renderer.render(PROMPT, seed=2, width=64, height=64, label="a"))
    adapted = renderer.with_settings({"loras": [{"path": str(lora), "scale": 1.0}], "steps": 2})
    changed = pixels(adapted.render(PROMPT, seed=2, width=64, height=64, label="a"))
    assert not np.array_equal(plain, changed)
    from sparkle_motion_dagster.store.storage import sha256_file

    assert adapted.fingerprint()["resolved"]["levers"]["loras"][0]["sha256"] == sha256_file(lora)
    assert adapted.fingerprint() != renderer.fingerprint()
    with pytest.raises(ValueError, match=r"render_profile\.images\.cache: the SDXL keyframe model cannot take"):
        renderer.with_settings({"cache": "first_block"})
    with pytest.raises(ValueError, match=r"render_profile\.images\.preset = 'fast'.*IMAGES_SDXL_FAST_LORA"):
        renderer.with_settings({"preset": "fast"})
    fast = SdxlKeyframes(**{**renderer.model_dump(), "fast_lora": str(lora)}).with_settings({"preset": "fast"})
    assert (fast.steps, fast.guidance, fast.scheduler, fast.loras[0].path) == (4, 0.0, "euler_trailing", str(lora))
