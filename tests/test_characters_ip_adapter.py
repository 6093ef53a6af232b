"""SDXL keyframes conditioned on character portraits through an IP-Adapter: a tiny random SDXL, a tiny
random CLIP image encoder and adapter built here, loaded through diffusers' own ``load_ip_adapter``."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("diffusers")

from sparkle_motion_dagster.dev.tiny_models import build_tiny_ip_adapter, build_tiny_sdxl  # noqa: E402
from sparkle_motion_dagster.resources.keyframes import CharacterReference, sdxl  # noqa: E402
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes  # noqa: E402
from sparkle_motion_dagster.resources.keyframes.storyboard import render_portrait  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPT = "Ava on the pier at dusk"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from diffusers import UNet2DConditionModel

    root = tmp_path_factory.mktemp("ipa")
    model = build_tiny_sdxl(root / "sdxl")
    adapter = build_tiny_ip_adapter(root / "ip-adapter", UNet2DConditionModel.from_pretrained(model / "unet"))
    yield model, adapter
    SdxlKeyframes(model=str(model)).release()


@pytest.fixture
def renderer(folders):
    model, adapter = folders
    return SdxlKeyframes(model=str(model), device="cpu", steps=2, ip_adapter=str(adapter),
                         ip_adapter_weight="ip-adapter_tiny.safetensors")


def portrait(description: str) -> CharacterReference:
    return CharacterReference("ava", "Ava", render_portrait(name="Ava", description=description, style="", seed=1,
                                                            size=64), description)


def draw(renderer, *references):
    return np.asarray(renderer.render(PROMPT, seed=3, width=64, height=64, references=references))


def test_the_portrait_conditions_the_keyframe(renderer):
    plain = draw(renderer)
    red, blue = draw(renderer, portrait("in a red coat")), draw(renderer, portrait("in a blue coat"))
    assert not np.array_equal(plain, red)
    assert not np.array_equal(red, blue)
    assert np.array_equal(red, draw(renderer, portrait("in a red coat")))  # the same portrait, the same keyframe
    two = draw(renderer, portrait("in a red coat"), portrait("with silver hair"))  # several characters at once
    assert two.shape == (64, 64, 3) and not np.array_equal(two, red)


def test_a_keyframe_without_characters_runs_without_the_adapter(renderer, monkeypatch):
    plain = draw(renderer)
    draw(renderer, portrait("in a red coat"))
    pipe = sdxl._MODEL.value.pipe
    calls = []
    original_call = type(pipe).__call__
    monkeypatch.setattr(type(pipe), "__call__", lambda self, **kw: calls.append(sorted(kw)) or original_call(self, **kw))
    loads = []
    monkeypatch.setattr(pipe, "load_ip_adapter", lambda *a, **kw: loads.append(a))
    again = draw(renderer)
    assert "ip_adapter_image" not in calls[-1] and loads == []
    assert pipe.image_encoder is None  # unloaded with the adapter
    assert np.array_equal(plain, again)  # exactly what the pipeline draws with no adapter in it


def test_the_adapter_is_in_the_conditioning_keyframes_record(renderer, folders):
    settings = renderer.reference_settings()
    assert settings["ip_adapter"] == str(folders[1]) and settings["scale"] == 0.6
    assert settings["weights"].startswith("folder:")
    assert SdxlKeyframes(model=str(folders[0])).reference_settings() == {}  # no adapter: nothing conditions
