"""WanClips on tiny random Wan 2.1 pipelines (plain I2V and first-last-frame), loaded offline
through the adapter's own code."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
# Busy-waiting OpenMP threads make tiny models 20-30x slower when the CPU is shared (measured on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch first loads OpenMP

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

pytest.importorskip("diffusers")

from sparkle_motion_dagster.dev.tiny_models import build_tiny_wan  # noqa: E402
from sparkle_motion_dagster.media.ffmpeg import count_video_frames, probe  # noqa: E402
from sparkle_motion_dagster.resources.clips import (
    ClipRequest,  # noqa: E402
    wan,  # noqa: E402
)
from sparkle_motion_dagster.resources.clips.wan import WanClips  # noqa: E402

SIZE = 32
MAX_FRAMES = 9  # two 4-frame units per generation keeps the chained cases tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    folders = {
        "i2v": build_tiny_wan(root / "wan-i2v", first_last_frame=False),
        "flf": build_tiny_wan(root / "wan-flf2v", first_last_frame=True),
    }
    yield folders
    WanClips(model=str(folders["i2v"])).release()


@pytest.fixture(scope="module")
def keyframes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keyframes")
    rng = np.random.default_rng(0)
    paths = []
    for name, tint in (("start", (220, 60, 40)), ("end", (40, 80, 220))):
        picture = np.clip(rng.normal(tint, 30, size=(36, 64, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{name}.png"
        Image.fromarray(picture).save(path)
        paths.append(path)
    return tuple(paths)


def clips(models, kind, **overrides):
    settings_ = {"model": str(models[kind]), "device_preset": "cpu", "steps": 2, "gen_fps": 8,
                 "max_frames_per_generation": MAX_FRAMES, **overrides}
    return WanClips(**settings_)


def request(keyframes, *, frames, fps=12.0, width=SIZE, height=SIZE, seed=5):
    start, end = keyframes
    return ClipRequest(shot_id="shot_001", start_image=start, end_image=end, frames=frames, fps=fps, width=width,
                       height=height, seed=seed, motion_prompt="slow push in", prompt="a rooftop at night in the rain")


@pytest.fixture
def calls(monkeypatch):
    """Every pipeline call: its inputs and the uint8 frames it produced."""
    from diffusers import WanImageToVideoPipeline

    recorded = []
    original = WanImageToVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        frames = np.clip(np.rint(np.asarray(output.frames[0]) * 255), 0, 255).astype(np.uint8)
        recorded.append({**kwargs, "output": frames})
        return output

    monkeypatch.setattr(WanImageToVideoPipeline, "__call__", spy)
    return recorded


def same_pixels(image, array):
    return np.array_equal(np.asarray(image.convert("RGB")), array)


def fitted(path, width, height):
    return np.asarray(wan._load_fitted(path, width, height))


# ---------------------------------------------------------------------- capability


def test_first_last_frame_support_is_read_from_the_config(models):
    assert clips(models, "i2v").runtime()["continuity_mode"] == "image_to_video"
    assert clips(models, "flf").runtime()["continuity_mode"] == "first_last_frame"
    assert wan.continuity_mode({"pos_embed_seq_len": 514}) == "first_last_frame"
    assert wan.continuity_mode({"pos_embed_seq_len": None}) == "image_to_video"


def test_auto_generation_area_follows_the_model(models):
    assert clips(models, "i2v").runtime()["max_pixels"] == 832 * 480
    assert clips(models, "flf").runtime()["max_pixels"] == 1280 * 720
    assert clips(models, "flf", max_pixels=4096).runtime()["max_pixels"] == 4096


# ---------------------------------------------------------------------- one generation


@pytest.mark.parametrize("kind", ["i2v", "flf"])
def test_a_short_shot_is_one_generation_with_exact_frames(models, keyframes, calls, tmp_path, kind):
    out = tmp_path / "clip.mp4"
    details = clips(models, kind).render(request(keyframes, frames=12), out)
    assert count_video_frames(out) == 12 == details["frames"]
    info = probe(out)
    assert (info["width"], info["height"], info["fps"], info["audio_codec"]) == (SIZE, SIZE, 12.0, None)
    assert details["segments"] == 1 and len(calls) == 1
    assert details["generation_size"] == [SIZE, SIZE]
    # 11 output intervals at 12 fps = 0.917 s; at 8 fps that needs 8 intervals = two 4-frame units.
    assert calls[0]["num_frames"] == 9 and details["generated_frames"] == 9
    assert details["generation_fps"] >= 8
    assert same_pixels(calls[0]["image"], fitted(keyframes[0], SIZE, SIZE))
    if kind == "flf":
        assert details["continuity_mode"] == "first_last_frame"
        assert same_pixels(calls[0]["last_image"], fitted(keyframes[1], SIZE, SIZE))
    else:
        assert details["continuity_mode"] == "image_to_video"
        assert "last_image" not in calls[0]


def test_output_size_and_fps_follow_the_request_not_the_generation(models, keyframes, calls, tmp_path):
    out = tmp_path / "clip.mp4"
    details = clips(models, "i2v").render(request(keyframes, frames=7, fps=24.0, width=48, height=36), out)
    assert details["generation_size"] == [48, 32]  # multiples of 16
    assert (calls[0]["width"], calls[0]["height"]) == (48, 32)
    info = probe(out)
    assert (info["width"], info["height"], info["fps"]) == (48, 36, 24.0)
    assert count_video_frames(out) == 7


def test_a_one_frame_shot(models, keyframes, tmp_path):
    out = tmp_path / "clip.mp4"
    assert clips(models, "flf").render(request(keyframes, frames=1), out)["frames"] == 1
    assert count_video_frames(out) == 1


def test_same_seed_same_frames(models, keyframes, calls, tmp_path):
    renderer = clips(models, "flf")
    renderer.render(request(keyframes, frames=6), tmp_path / "a.mp4")
    renderer.render(request(keyframes, frames=6), tmp_path / "b.mp4")
    renderer.render(request(keyframes, frames=6, seed=6), tmp_path / "c.mp4")
    assert np.array_equal(calls[0]["output"], calls[1]["output"])
    assert not np.array_equal(calls[0]["output"], calls[2]["output"])


# ---------------------------------------------------------------------- chained segments


def test_a_long_i2v_shot_chains_segments_from_each_last_frame(models, keyframes, calls, tmp_path):
    out = tmp_path / "long.mp4"
    shot = request(keyframes, frames=40, fps=12.0)
    details = clips(models, "i2v").render(shot, out)
    # 39 intervals at 12 fps = 3.25 s -> 26 intervals at 8 fps -> 7 units of 4 frames, 2 per generation.
    assert details["segment_frames"] == [9, 9, 9, 5] == [c["num_frames"] for c in calls]
    assert details["segments"] == 4 and details["guide_frames"] == 0
    assert details["generated_frames"] == 1 + sum(n - 1 for n in details["segment_frames"]) == 29
    assert details["continuity_mode"] == "image_to_video"
    assert all("last_image" not in c for c in calls)
    assert same_pixels(calls[0]["image"], fitted(keyframes[0], SIZE, SIZE))
    for previous, current in zip(calls, calls[1:]):
        assert same_pixels(current["image"], previous["output"][-1])
    assert [c["generator"].initial_seed() for c in calls] == [5, 6, 7, 8]
    assert count_video_frames(out) == 40 == details["frames"]


def test_a_long_flf_shot_chains_without_a_guide_and_lands_on_the_end_keyframe(models, keyframes, calls, tmp_path):
    out = tmp_path / "long.mp4"
    details = clips(models, "flf").render(request(keyframes, frames=40, fps=12.0), out)
    assert details["continuity_mode"] == "first_last_frame"
    # No extra generation: only the segments, each from the previous one's last frame.
    assert [c["num_frames"] for c in calls] == details["segment_frames"] == [9, 9, 9, 5]
    assert details["guide_frames"] == 0 and details["generations"] == 4 == len(calls)
    assert details["model_frames"] == sum(details["segment_frames"])
    assert same_pixels(calls[0]["image"], fitted(keyframes[0], SIZE, SIZE))
    for previous, current in zip(calls, calls[1:]):
        assert same_pixels(current["image"], previous["output"][-1])
    # The open segments run with no last frame; the end keyframe conditions the last segment.
    assert all("last_image" not in call for call in calls[:-1])
    assert same_pixels(calls[-1]["last_image"], fitted(keyframes[1], SIZE, SIZE))
    assert count_video_frames(out) == 40


def test_waypoints_on_request_guide_a_long_flf_shot(models, keyframes, calls, tmp_path):
    out = tmp_path / "long.mp4"
    details = clips(models, "flf", waypoints=True).render(request(keyframes, frames=40, fps=12.0), out)
    guide, segments = calls[0], calls[1:]
    assert guide["num_frames"] == details["guide_frames"] == MAX_FRAMES
    assert details["generations"] == 5 and details["model_frames"] == MAX_FRAMES + sum(details["segment_frames"])
    assert same_pixels(guide["image"], fitted(keyframes[0], SIZE, SIZE))
    assert same_pixels(guide["last_image"], fitted(keyframes[1], SIZE, SIZE))
    assert [c["num_frames"] for c in segments] == details["segment_frames"] == [9, 9, 9, 5]
    assert all(c.get("last_image") is not None for c in calls)
    expected = wan.waypoints(guide["output"], details["segment_frames"])
    for segment, waypoint in zip(segments[:-1], expected):
        assert same_pixels(segment["last_image"], waypoint)
    assert same_pixels(segments[-1]["last_image"], fitted(keyframes[1], SIZE, SIZE))
    assert count_video_frames(out) == 40


# ---------------------------------------------------------------------- loading and config


def test_the_pipeline_loads_once_and_is_released(models, keyframes, tmp_path):
    renderer = clips(models, "i2v")
    renderer.render(request(keyframes, frames=3), tmp_path / "a.mp4")
    pipe = wan._LOADED.pipe
    WanClips(**renderer.model_dump()).render(request(keyframes, frames=3), tmp_path / "b.mp4")
    assert wan._LOADED.pipe is pipe
    assert wan.loaded_key() == (str(models["i2v"]), "cpu", None)  # on the CPU: no GPU placement
    clips(models, "flf").release()  # the process's pipeline, whichever resource asks
    assert wan.loaded_key() is None


def test_the_resource_is_plain_config_with_a_full_fingerprint(models):
    renderer = clips(models, "flf")
    json.dumps(renderer.model_dump())
    assert WanClips(**renderer.model_dump()) == renderer
    assert renderer.model_ids[0] == "wan-2.1" and "wan-2.2-i2v-a14b" in renderer.model_ids
    fingerprint = renderer.fingerprint()
    assert fingerprint["model"] == str(models["flf"]) and fingerprint["steps"] == 2
    assert fingerprint["resolved"]["continuity_mode"] == "first_last_frame"
    assert fingerprint["resolved"]["preset"] == "cpu"
    assert clips(models, "flf", gen_fps=16).fingerprint() != fingerprint
    assert WanClips(model="x/y").max_seconds_per_generation == 5.0  # 81 frames at 16 fps
    assert renderer.max_seconds_per_generation == 1.0  # 9 frames at 8 fps


# ---------------------------------------------------------------------- clear errors


def test_missing_model_folder_names_the_variable(tmp_path, keyframes):
    with pytest.raises(ValueError, match="VIDEOS_WAN_MODEL.*does not exist"):
        WanClips(model=str(tmp_path / "nowhere")).render(request(keyframes, frames=3), tmp_path / "x.mp4")


def test_a_folder_that_is_not_a_diffusers_pipeline_is_refused(tmp_path):
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"not a pipeline")
    with pytest.raises(ValueError, match="VIDEOS_WAN_MODEL.*no model_index.json"):
        WanClips(model=str(tmp_path)).runtime()


def test_a_diffusers_folder_of_another_pipeline_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    }))
    with pytest.raises(ValueError, match="VIDEOS_WAN_MODEL.*not a Wan image-to-video pipeline"):
        WanClips(model=str(tmp_path)).runtime()


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks`")
def test_an_uncached_repo_id_fails_clearly_offline():
    import huggingface_hub.constants

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        pytest.skip("huggingface_hub was imported before HF_HUB_OFFLINE was set")
    with pytest.raises(RuntimeError, match="VIDEOS_WAN_MODEL.*Hugging Face cache"):
        WanClips(model="sparkle-motion-tests/no-such-wan", device_preset="cpu").runtime()


@pytest.mark.parametrize("preset", ["cuda-bf16", "cuda-fp16", "cuda-offload"])
def test_cuda_presets_without_cuda_name_the_variable(models, monkeypatch, preset):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="VIDEOS_WAN_DEVICE_PRESET.*CUDA is not available"):
        clips(models, "i2v", device_preset=preset).runtime()
    assert clips(models, "i2v", device_preset="auto").runtime()["preset"] == "cpu"


@pytest.mark.parametrize(("field", "value", "variable"), [
    ("device_preset", "gpu", "VIDEOS_WAN_DEVICE_PRESET"),
    ("max_frames_per_generation", 80, "VIDEOS_WAN_MAX_FRAMES"),
    ("gen_fps", 0, "VIDEOS_WAN_GEN_FPS"),
    ("steps", 0, "VIDEOS_WAN_STEPS"),
])
def test_bad_settings_name_their_variable(models, field, value, variable):
    with pytest.raises(ValueError, match=variable):
        clips(models, "i2v", **{field: value}).validate_settings()


def test_from_env(models):
    assert WanClips.from_env({}) is None
    renderer = WanClips.from_env({"VIDEOS_WAN_MODEL": str(models["flf"]), "VIDEOS_WAN_DEVICE_PRESET": "cpu",
                                  "VIDEOS_WAN_STEPS": "3", "VIDEOS_WAN_GEN_FPS": "12", "VIDEOS_WAN_MAX_FRAMES": "49"})
    assert (renderer.model, renderer.device_preset, renderer.steps) == (str(models["flf"]), "cpu", 3)
    assert (renderer.gen_fps, renderer.max_frames_per_generation) == (12, 49)
    with pytest.raises(ValueError, match="VIDEOS_WAN_STEPS"):
        WanClips.from_env({"VIDEOS_WAN_MODEL": "x/y", "VIDEOS_WAN_STEPS": "lots"})
    with pytest.raises(ValueError, match="VIDEOS_WAN_DEVICE_PRESET"):
        WanClips.from_env({"VIDEOS_WAN_MODEL": "x/y", "VIDEOS_WAN_DEVICE_PRESET": "cuda"})


# ---------------------------------------------------------------------- planning arithmetic


@settings(max_examples=200, deadline=None)
@given(frames=st.integers(1, 2000), fps=st.sampled_from([8.0, 12.0, 23.976, 24.0, 25.0, 30.0, 60.0]),
       gen_fps=st.integers(4, 30), max_units=st.integers(1, 30))
def test_segment_lengths_cover_the_shot_within_the_limits(frames, fps, gen_fps, max_units):
    max_frames = 4 * max_units + 1
    lengths = wan.segment_lengths(frames, fps, gen_fps, max_frames)
    assert all(n % 4 == 1 and 5 <= n <= max_frames for n in lengths)
    intervals = sum(n - 1 for n in lengths)
    span = (frames - 1) / fps
    assert intervals >= span * gen_fps - 1e-6  # at least gen_fps over the span
    assert intervals < span * gen_fps + 4 or intervals == 4  # and less than one unit more
    assert len(lengths) == -(-(intervals // 4) // max_units)  # as few generations as possible
    assert max(lengths) - min(lengths) <= 4  # balanced


@given(generated=st.integers(1, 40), count=st.integers(1, 120))
def test_resampling_gives_exactly_count_frames_with_exact_ends(generated, count):
    video = np.stack([np.full((2, 2, 3), 6 * i, dtype=np.uint8) for i in range(generated)])
    frames = list(wan.resample_frames(video, count))
    assert len(frames) == count
    assert np.array_equal(frames[0], video[0])
    if count > 1:
        assert np.array_equal(frames[-1], video[-1])
    values = [int(f[0, 0, 0]) for f in frames]
    assert values == sorted(values)  # time only moves forward


@given(width=st.integers(8, 4000).map(lambda v: v * 2), height=st.integers(8, 2000).map(lambda v: v * 2))
def test_generation_sizes_are_multiples_of_16_and_never_upscaled(width, height):
    gen_w, gen_h = wan.generation_size(width, height, 832 * 480)
    assert gen_w % 16 == 0 and gen_h % 16 == 0
    assert gen_w <= width and gen_h <= height
    assert gen_w * gen_h <= 832 * 480 or min(gen_w, gen_h) == 16
    if width * height <= 832 * 480:  # no downscale: only the rounding to 16
        assert width - gen_w < 16 and height - gen_h < 16
    assert wan.generation_size(1280, 720, 832 * 480) == (832, 464)
    assert wan.generation_size(1280, 720, 1280 * 720) == (1280, 720)
