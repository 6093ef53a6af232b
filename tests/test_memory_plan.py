"""Memory plans: the placement chosen for a card from the model's configs, applied through the Wan
adapter on a card torch is made to report (CPU underneath), and out of memory stepping down once."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import types

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

from sparkle_motion_dagster.dev.published_configs import write_sdxl_base, write_wan_flf2v_14b  # noqa: E402
from sparkle_motion_dagster.dev.tiny_models import build_tiny_wan  # noqa: E402
from sparkle_motion_dagster.resources import memory_plan  # noqa: E402
from sparkle_motion_dagster.resources.clips import ClipRequest, wan  # noqa: E402
from sparkle_motion_dagster.resources.clips.wan import WanClips  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GIB = memory_plan.GIB
ORDER = [(p, t) for p in memory_plan.PLACEMENTS for t in (False, True)]


@pytest.fixture(scope="module")
def wan14b(tmp_path_factory):
    return str(write_wan_flf2v_14b(tmp_path_factory.mktemp("configs") / "Wan2.1-FLF2V-14B-720P"))


def rank(plan):
    return ORDER.index((plan.placement, plan.vae_tiling))


@pytest.mark.parametrize(("width", "height"), [(832, 480), (1280, 720)])
def test_each_card_gets_the_fastest_placement_that_fits(wan14b, width, height):
    plans = {gb: memory_plan.wan_plan(wan14b, width=width, height=height, frames=81,
                                      card=memory_plan.named_card(str(gb))) for gb in (16, 24, 40, 80, 141)}
    for gb, plan in plans.items():
        assert plan.fits and plan.predicted_peak_bytes * (1 + memory_plan.HEADROOM) <= plan.free_bytes, gb
        faster = [c for c in plan.candidates[:plan.candidates.index(
            next(c for c in plan.candidates if (c.placement, c.vae_tiling) == (plan.placement, plan.vae_tiling)))]]
        assert all(not memory_plan.fits(c.peak_bytes, plan.free_bytes) for c in faster), gb
    ranks = [rank(plans[gb]) for gb in (16, 24, 40, 80, 141)]
    assert ranks == sorted(ranks, reverse=True)  # more memory never gets a slower placement
    assert plans[16].placement.startswith("group-offload")  # a 16 GB card streams the 14B transformer
    assert plans[141].placement == "resident"
    # the weights alone (33 GB transformer + 11 GB UMT5 in bf16, CLIP and VAE in fp32) exceed 40 GB
    assert plans[40].placement != "resident"
    assert sum(plans[141].components_bytes.values()) > 40 * GIB


def test_bigger_generations_need_more_and_tiling_only_lowers_the_decode(wan14b):
    card = memory_plan.named_card("h200")
    small = memory_plan.wan_plan(wan14b, width=832, height=480, frames=81, card=card)
    large = memory_plan.wan_plan(wan14b, width=1280, height=720, frames=81, card=card)
    assert large.predicted_peak_bytes > small.predicted_peak_bytes
    peaks = {(c.placement, c.vae_tiling): c.peak_bytes for c in large.candidates}
    for placement in memory_plan.PLACEMENTS:
        assert peaks[placement, True] <= peaks[placement, False]
    assert peaks["model-offload", False] < peaks["resident", False]


def test_sdxl_tiles_its_decode_only_above_its_tile(tmp_path):
    sdxl = str(write_sdxl_base(tmp_path / "sdxl"))
    card = memory_plan.Card("small", 12 * GIB, 11 * GIB)
    at_1024 = memory_plan.sdxl_plan(sdxl, width=1024, height=1024, card=card)
    peaks = {(c.placement, c.vae_tiling): c.peak_bytes for c in at_1024.candidates}
    assert peaks["resident", True] == peaks["resident", False]  # SDXL's tile is 1024: nothing to tile
    at_2048 = memory_plan.sdxl_plan(sdxl, width=2048, height=2048, card=memory_plan.named_card("t4"))
    assert at_2048.vae_tiling and at_2048.fits


def test_cards_are_known_by_the_names_cuda_reports():
    assert memory_plan.card_key("Tesla T4", 15 * GIB) == "t4"
    assert memory_plan.card_key("NVIDIA A100-SXM4-80GB", 79 * GIB) == "a100-80gb"
    assert memory_plan.card_key("NVIDIA A100-PCIE-40GB", 39 * GIB) == "a100-40gb"
    assert memory_plan.card_key("NVIDIA H100 80GB HBM3", 79 * GIB) == "h100"
    assert memory_plan.card_key("NVIDIA GeForce RTX 4090", 24 * GIB) is None


def test_named_cards_and_sizes():
    assert memory_plan.named_card("t4").memory_gb == 16 and not memory_plan.named_card("t4").bf16
    assert memory_plan.named_card("24").total_bytes == 24 * GIB
    with pytest.raises(ValueError, match="--gpu 'rtx9090'.*t4"):
        memory_plan.named_card("rtx9090")


# ---------------------------------------------------------------------- through the adapter, on a reported card


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_wan(tmp_path_factory.mktemp("models") / "wan-i2v", first_last_frame=False)
    yield folder
    WanClips(model=str(folder)).release()


@pytest.fixture(scope="module")
def keyframes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keyframes")
    paths = []
    for name, tint in (("start", (220, 60, 40)), ("end", (40, 80, 220))):
        path = folder / f"{name}.png"
        Image.fromarray(np.full((32, 32, 3), tint, np.uint8)).save(path)
        paths.append(path)
    return paths


def clip_request(keyframes, frames=5):
    return ClipRequest(shot_id="shot_001", start_image=keyframes[0], end_image=keyframes[1], frames=frames, fps=8.0,
                       width=32, height=32, seed=3, motion_prompt="", prompt="rain")


class Gpu:
    """What torch.cuda reports, and the placement calls the pipeline received (they run on the CPU)."""

    def __init__(self, monkeypatch):
        import torch
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

        self.free = self.total = 80 * GIB
        self.calls: list[str] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (self.free, self.total))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: 0)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: types.SimpleNamespace(name="Test GPU"))
        monkeypatch.setattr(memory_plan, "ONLOAD_DEVICE", "cpu")
        monkeypatch.setattr(memory_plan, "_TOO_BIG", {})
        original_to = WanImageToVideoPipeline.to

        def spy(name, result=None):
            def record(pipe_or_vae, *args, **kwargs):
                self.calls.append(name)
                return result(pipe_or_vae, *args, **kwargs) if result else None
            return record

        monkeypatch.setattr(WanImageToVideoPipeline, "to", spy("to", original_to))
        monkeypatch.setattr(WanImageToVideoPipeline, "enable_model_cpu_offload", spy("model-offload"))
        monkeypatch.setattr(WanImageToVideoPipeline, "enable_group_offload", spy("group-offload"))
        monkeypatch.setattr(AutoencoderKLWan, "enable_tiling", spy("vae-tiling"))


@pytest.fixture
def gpu(monkeypatch, tiny):
    WanClips(model=str(tiny)).release()
    yield Gpu(monkeypatch)
    WanClips(model=str(tiny)).release()


def peaks_of(renderer, keyframes):
    plan = renderer.memory_plan(renderer.runtime(), clip_request(keyframes),
                                card=memory_plan.Card("any", 1 << 50, 1 << 50))
    return {(c.placement, c.vae_tiling): c.peak_bytes for c in plan.candidates}


def between(peaks, wanted):
    """Free memory that fits ``wanted`` but no candidate with a higher peak."""
    return int(peaks[wanted] * (1 + memory_plan.HEADROOM)) + 1


def test_auto_loads_the_placement_the_card_fits(gpu, tiny, keyframes, tmp_path):
    renderer = WanClips(model=str(tiny), steps=1, gen_fps=8, max_frames_per_generation=5)
    peaks = peaks_of(renderer, keyframes)
    gpu.free = between(peaks, ("model-offload", False))
    details = renderer.render(clip_request(keyframes), tmp_path / "a.mp4")
    assert "model-offload" in gpu.calls and "to" not in gpu.calls
    assert details["memory_plan"]["placement"] == "model-offload" and details["memory_plan"]["fits"]
    assert details["memory_plan"]["free_bytes"] == gpu.free and details["memory_plan"]["margin_gb"] >= 0
    assert wan.loaded_key()[2] == "model-offload"

    gpu.calls.clear()
    renderer.release()
    gpu.free = 1 << 50
    details = renderer.render(clip_request(keyframes), tmp_path / "b.mp4")
    assert gpu.calls == ["to"] and details["memory_plan"]["placement"] == "resident"


def test_an_explicit_preset_that_cannot_fit_fails_before_loading(gpu, tiny, keyframes, tmp_path):
    renderer = WanClips(model=str(tiny), device_preset="cuda-bf16", steps=1, gen_fps=8, max_frames_per_generation=5)
    gpu.free = between(peaks_of(renderer, keyframes), ("group-offload-block", False))
    with pytest.raises(ValueError, match=r"VIDEOS_WAN_DEVICE_PRESET.*'cuda-bf16' needs about .* GB free: set it to "
                                         r"auto \(auto would choose (?!resident)") as refused:
        renderer.render(clip_request(keyframes), tmp_path / "a.mp4")
    assert "predicted peak" in str(refused.value) and gpu.calls == []  # refused before anything loaded


def out_of_memory_on(calls_that_fail: set[int], monkeypatch):
    import torch
    from diffusers import WanImageToVideoPipeline

    original = WanImageToVideoPipeline.__call__
    made = []

    def maybe_fail(self, *args, **kwargs):
        made.append(kwargs["num_frames"])
        if len(made) in calls_that_fail:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WanImageToVideoPipeline, "__call__", maybe_fail)
    return made


def test_out_of_memory_retries_the_generation_once_at_a_lower_placement(gpu, tiny, keyframes, tmp_path, monkeypatch):
    renderer = WanClips(model=str(tiny), steps=1, gen_fps=8, max_frames_per_generation=5)
    gpu.free = 1 << 50
    made = out_of_memory_on({1}, monkeypatch)
    details = renderer.render(clip_request(keyframes), tmp_path / "a.mp4")
    assert len(made) == 2 and gpu.calls[:2] == ["to", "to"]  # resident failed; reloaded without the text encoder
    plan = details["memory_plan"]
    assert plan["placement"] == "text-encoder-off" and plan["chosen_by"] == "out of memory: stepped down"
    assert plan["stepped_down_from"]["placement"] == "resident" and plan["stepped_down_from"]["free_gb"] > 0
    # the next shot starts below what ran out of memory instead of failing the same way
    details = renderer.render(clip_request(keyframes), tmp_path / "b.mp4")
    assert details["memory_plan"]["placement"] == "text-encoder-off" and len(made) == 3


def test_a_second_out_of_memory_fails_for_good_with_the_numbers(gpu, tiny, keyframes, tmp_path, monkeypatch):
    renderer = WanClips(model=str(tiny), steps=1, gen_fps=8, max_frames_per_generation=5)
    gpu.free = 1 << 50
    made = out_of_memory_on({1, 2, 3}, monkeypatch)
    with pytest.raises(memory_plan.OutOfGpuMemory) as failure:
        renderer.render(clip_request(keyframes), tmp_path / "a.mp4")
    assert len(made) == 2  # the first placement and one lower: never the same placement twice
    message = str(failure.value)
    assert "out of GPU memory at text-encoder-off after resident" in message
    assert "predicted peak" in message and "GB was free" in message and "VIDEOS_WAN_DEVICE_PRESET" in message
    assert wan.loaded_key() is None  # the model that failed is not kept


def test_doctor_shows_the_plan_for_this_card_and_that_configs_are_not_weights(wan14b, monkeypatch, capsys):
    import torch

    from sparkle_motion_dagster.cli.doctor import diagnose
    from sparkle_motion_dagster.cli.installation import echo_doctor_report

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (23 * GIB, 24 * GIB))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: types.SimpleNamespace(name="NVIDIA L4"))
    monkeypatch.setenv("VIDEOS_WAN_MODEL", wan14b)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = diagnose(probe=True)
    clips = report["stages"]["video_clips"]
    plan = clips["memory_plan"]
    assert plan["placement"].startswith("group-offload") and plan["fits"] and plan["free_bytes"] == 23 * GIB
    assert (plan["width"], plan["height"], plan["frames"]) == (1280, 720, 81)  # the FLF2V model's largest generation
    assert clips["weights_found"] is False and clips["ok"] is False and "no weight file" in clips["problem"]
    echo_doctor_report(report)
    printed = capsys.readouterr().out
    assert f"memory plan: {plan['summary']}" in printed and "on NVIDIA L4" in plan["summary"]


def test_a_gpu_stage_frees_other_stages_models_and_gpu_speech_workers(monkeypatch):
    from sparkle_motion_dagster.resources import model_support
    from sparkle_motion_dagster.resources.speech import chatterbox

    class Worker:
        def __init__(self):
            self.closed = False

        def close(self):
            self.closed = True

    on_gpu, on_cpu = Worker(), Worker()
    monkeypatch.setattr(chatterbox, "_WORKERS", {("py", "chatterbox", "", "cuda", 0): on_gpu,
                                                 ("py", "chatterbox", "", "cpu", 0): on_cpu})
    mine = model_support.ProcessModel(owner="tests.keyframes")
    other = model_support.ProcessModel(owner="tests.clips")
    mine.get("k", lambda: "keyframe model")
    other.get("v", lambda: "video model")
    try:
        freed = model_support.release_models_except("tests.keyframes")
        assert "tests.clips" in freed and chatterbox.__name__ in freed
        assert other.value is None and mine.value == "keyframe model"  # its own model stays
        assert on_gpu.closed and not on_cpu.closed  # a speech worker on the CPU needs no GPU back
        assert list(chatterbox._WORKERS) == [("py", "chatterbox", "", "cpu", 0)]
    finally:
        mine.release()
        model_support._ALL_MODELS[:] = [m for m in model_support._ALL_MODELS if m not in (mine, other)]
