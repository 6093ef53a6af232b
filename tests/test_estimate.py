"""Estimates: a film's time and peak memory before it is rendered, and what they are based on."""

import copy
import json
import re

import pytest

from sparkle_motion_dagster.stages import STAGE_KEYS
from test_provenance import LANTERN, cli

GB = 1_000_000_000


def plan_of(shots: int, seconds: float) -> dict:
    """The two-shot sample stretched to ``shots`` shots of ``seconds`` each, one line per shot."""
    base = json.loads(LANTERN.read_text())
    plan = copy.deepcopy(base)
    plan["base_images"] = [{"id": f"frame_{i:03d}", "prompt": f"{base['base_images'][i % 3]['prompt']} ({i})",
                            "metadata": {"seed": 4100 + i}} for i in range(shots + 1)]
    plan["shots"] = [{**base["shots"][i % 2], "id": f"shot_{i + 1:03d}", "duration_sec": seconds,
                      "start_base_image_id": f"frame_{i:03d}", "end_base_image_id": f"frame_{i + 1:03d}"}
                     for i in range(shots)]
    plan["dialogue_timeline"] = [{"type": "dialogue", "character_id": ("noor", "tomas")[i % 2],
                                  "text": ("Is it far?", "Not with the light.")[i % 2],
                                  "start_time_sec": i * seconds + 0.2, "duration_sec": min(1.5, seconds - 0.4)}
                                 for i in range(shots)]
    return plan


def done_in(output: str) -> float:
    return float(re.search(r"^done in ([\d.]+) s$", output, re.MULTILINE).group(1))


@pytest.mark.slow
@pytest.mark.alone
def test_after_three_films_a_fourth_of_another_length_is_estimated_within_a_quarter(tmp_path):
    for shots, seconds in ((1, 2.0), (2, 3.0), (4, 3.0)):
        path = tmp_path / f"plan_{shots}.json"
        path.write_text(json.dumps(plan_of(shots, seconds)))
        cli("run", "--plan", str(path), "--size", "160x90", cwd=tmp_path)
    history = json.loads((tmp_path / "state" / "artifacts" / "estimates" / "history.json").read_text())["films"]
    assert [f["stages"]["video_clips"]["units"] for f in history] == [48, 144, 288]
    assert all(f["overhead_seconds"] > 0 and f["stages"]["video_clips"]["peak_rss_bytes"] for f in history)

    fourth = tmp_path / "plan_3.json"
    fourth.write_text(json.dumps(plan_of(3, 2.5)))
    report = json.loads(cli("run", "--mode", "dry", "--plan", str(fourth), "--size", "160x90", "--json",
                            "--budget", "0.5s", cwd=tmp_path))
    estimate = report["estimate"]
    assert set(estimate["stages"]) == set(STAGE_KEYS)
    for stage, figure in estimate["stages"].items():
        assert figure["basis"] == "history" and figure["measurements"] == 3, stage
        assert figure["seconds"] > 0 and figure["peak_memory_bytes"] > 0
    assert estimate["total_seconds"] == pytest.approx(
        sum(f["seconds"] for f in estimate["stages"].values()) + estimate["overhead_seconds"], abs=0.01)
    assert any(w["kind"] == "budget" and "exceeds the budget of 0.5 s" in w["message"] for w in report["warnings"])

    # One film's time on a shared machine swings by a fifth: measure the plan three times, take the median.
    times = [done_in(cli("run", "--run-id", report["run_id"], cwd=tmp_path))]
    times += [done_in(cli("run", "--plan", str(fourth), "--size", "160x90", cwd=tmp_path)) for _ in range(2)]
    measured = sorted(times)[1]
    error = (estimate["total_seconds"] - measured) / measured
    print(f"estimate {estimate['total_seconds']:.2f} s, done in {times} s (median {measured:.1f} s): error {error:+.1%}")
    assert abs(error) <= 0.25

    human = cli("run", "--mode", "dry", "--plan", str(fourth), "--size", "160x90", cwd=tmp_path)
    assert re.search(r"^video_clips\s+animatic\s+cpu\s+[\d.]+ s\s+.+history \(6 films\)$", human, re.MULTILINE)
    assert re.search(r"^estimate: [\d.]+ s \(with [\d.]+ s fixed overhead\), peak memory", human, re.MULTILINE)


def _plan(fps: float, seconds: float, width: int, height: int):
    from sparkle_motion_dagster.film.plan import validate_plan

    document = plan_of(1, seconds)
    document["render_profile"]["video"].update(max_fps=fps, width=width, height=height)
    return validate_plan(document)


WAN = {"backend": "wan-2.1", "device": "cuda-bf16", "steps": 40, "settings": {"gen_fps": 16, "max_pixels": 0}}


def test_without_history_a_real_model_is_estimated_from_published_figures_and_says_so():
    from sparkle_motion_dagster.insight import estimates

    plan = _plan(16, 81 / 16, 832, 480)  # one 81-frame generation at 480p, as the figure was measured
    result = estimates.estimate(plan, {"video_clips": WAN}, [], free=lambda device: None)
    clips = result["stages"]["video_clips"]
    assert clips["basis"] == "published" and "H200" in clips["measured_on"] and "Wan2.1" in clips["source"]
    assert clips["seconds"] == pytest.approx(366, rel=0.01) and clips["peak_memory_bytes"] == 71 * GB

    at_720p = estimates.estimate(_plan(16, 81 / 16, 1280, 720), {"video_clips": WAN}, [], free=lambda d: None)
    assert at_720p["stages"]["video_clips"]["seconds"] == pytest.approx(974, rel=0.01)
    longer = estimates.estimate(_plan(16, 2 * 81 / 16, 832, 480), {"video_clips": {**WAN, "steps": 20}}, [],
                                free=lambda d: None)
    # twice the span at half the steps: as three chained generations (balanced, at most 81 frames each,
    # each repeating the seam frame it starts from): 57 + 57 + 53 frames are generated, not 162
    assert longer["stages"]["video_clips"]["generations"] == 3
    assert longer["stages"]["video_clips"]["seconds"] == pytest.approx(366 / 2 * (57 + 57 + 53) / 81, rel=0.01)

    sdxl = estimates.estimate(_plan(16, 2.0, 1024, 1024), {"base_images": {"backend": "sdxl", "device": "cuda",
                                                                            "steps": 30}}, [], free=lambda d: None)
    assert sdxl["stages"]["base_images"]["seconds"] == pytest.approx(2 * 2.5)  # two keyframes
    assert sdxl["stages"]["base_images"]["basis"] == "published"
    assert result["stages"]["dialogue_audio"]["basis"] == "none" and result["complete"] is False


def test_a_configured_model_without_history_is_estimated_from_its_published_figure(tmp_path):
    pytest.importorskip("diffusers")  # the models extra
    from test_provenance import _tiny_sdxl_folder

    from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes
    from sparkle_motion_dagster.insight import estimates

    sdxl = SdxlKeyframes(model=str(_tiny_sdxl_folder(tmp_path / "sdxl")), device="cpu", steps=15)
    result = estimates.estimate_for_run(tmp_path / "artifacts", _plan(24, 2.0, 1024, 512), {"keyframes": sdxl})
    keyframes = result["stages"]["base_images"]
    assert keyframes["backend"] == "sdxl" and keyframes["device"] == "cpu" and keyframes["basis"] == "published"
    assert "A100" in keyframes["measured_on"] and "30 steps" in keyframes["source"]
    assert keyframes["seconds"] == pytest.approx(2 * 2.5 * 0.5 * 0.5)  # two keyframes, half the pixels and steps
    assert result["stages"]["video_clips"]["basis"] == "none"  # nothing filmed yet, nothing published


def test_without_configs_a_published_peak_warns_and_never_suggests_the_preset_already_set(monkeypatch):
    from sparkle_motion_dagster.insight import estimates

    plan = _plan(16, 81 / 16, 832, 480)
    asked = []

    def free(device):
        asked.append(device)
        return 40 * GB if device.startswith("cuda") else 64 * GB

    result = estimates.estimate(plan, {"video_clips": WAN}, [], free=free)
    assert "cuda-bf16" in asked
    [warning] = result["warnings"]
    assert warning["kind"] == "memory" and warning["field"] == "estimate.stages.video_clips"
    assert warning["peak_memory_bytes"] > warning["free_memory_bytes"]
    assert "(published)" in warning["message"] and "VIDEOS_WAN_DEVICE_PRESET=cuda-offload" in warning["message"]
    # the published peak was measured with everything resident: it says nothing of an offloading preset
    offloaded = estimates.estimate(plan, {"video_clips": {**WAN, "device": "cuda-offload"}}, [], free=free)
    assert offloaded["stages"]["video_clips"]["peak_memory_bytes"] is None and offloaded["warnings"] == []

    monkeypatch.setattr(estimates, "free_memory", lambda device: 100 * GB)
    assert estimates.estimate(plan, {"video_clips": WAN}, [])["warnings"] == []


@pytest.fixture
def wan14b(tmp_path_factory):
    from sparkle_motion_dagster.dev.published_configs import write_wan_flf2v_14b

    return write_wan_flf2v_14b(tmp_path_factory.mktemp("configs") / "Wan2.1-FLF2V-14B-720P")


def report_a_card(monkeypatch, gib: int, name: str = "NVIDIA L4"):
    """torch.cuda reports one card of ``gib`` GiB, all free."""
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (gib * 2**30, gib * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: types.SimpleNamespace(name=name))


def test_the_peak_follows_the_placement_and_a_warning_never_suggests_what_is_set(tmp_path, monkeypatch, wan14b):
    pytest.importorskip("diffusers")
    from sparkle_motion_dagster.resources.clips.wan import WanClips
    from sparkle_motion_dagster.insight import estimates

    report_a_card(monkeypatch, 24)
    plan = _plan(16, 81 / 16, 1280, 720)
    figures = {}
    for preset in ("cuda-offload", "auto"):
        result = estimates.estimate_for_run(tmp_path / "artifacts", plan,
                                            {"clips": WanClips(model=str(wan14b), device_preset=preset)})
        figures[preset] = (result["stages"]["video_clips"], result["warnings"])
    offload, warnings = figures["cuda-offload"]
    assert offload["placement"] == "model-offload" and offload["peak_basis"] == "memory plan"
    [warning] = [w for w in warnings if w["kind"] == "memory"]  # the 33 GB transformer alone exceeds 24 GB
    assert warning["peak_memory_bytes"] > warning["free_memory_bytes"]
    assert "cuda-offload" not in warning["message"] and "VIDEOS_WAN_DEVICE_PRESET=auto" in warning["message"]
    chosen, warnings = figures["auto"]
    assert chosen["placement"].startswith("group-offload") and chosen["peak_memory_bytes"] < offload["peak_memory_bytes"]
    assert not [w for w in warnings if w["kind"] == "memory"]
    assert chosen["seconds"] > offload["seconds"]  # streaming blocks in every step costs time


def test_a_first_last_frame_model_is_estimated_with_its_guide_generations(tmp_path, monkeypatch, wan14b):
    pytest.importorskip("diffusers")
    from sparkle_motion_dagster.resources.clips.wan import WanClips, segment_lengths
    from sparkle_motion_dagster.insight import estimates

    plan = _plan(16, 10.0, 832, 480)  # one 10 s shot: two chained generations
    lengths = segment_lengths(160, 16, 16, 81)
    assert len(lengths) == 2
    result = estimates.estimate_for_run(tmp_path / "artifacts", plan, {"clips": WanClips(model=str(wan14b))})
    clips = result["stages"]["video_clips"]
    # the first-last-frame model first makes a whole-shot guide generation, then the segments
    assert clips["generations"] == 3 and clips["generated_frames"] == sum(lengths) + 81
    assert clips["seconds"] == pytest.approx(366 * (30 / 40) * clips["generated_frames"] / 81, rel=0.01)


@pytest.mark.slow
def test_a_preflight_answers_for_a_card_this_machine_does_not_have(tmp_path, wan14b, monkeypatch):
    pytest.importorskip("diffusers")
    monkeypatch.setenv("VIDEOS_WAN_MODEL", str(wan14b))  # its configs only: no weights, and no GPU here
    report = json.loads(cli("run", "--mode", "dry", "--sample", "--gpu", "t4", "--json", cwd=tmp_path))
    t4 = report["estimate"]["gpu"]
    assert (t4["name"], t4["memory_gb"]) == ("NVIDIA T4", 16)
    clips = t4["stages"]["video_clips"]
    assert clips["placement"].startswith("group-offload") and clips["fits"] and 0 < clips["peak_gb"] < 16
    assert t4["fits"] and t4["peak_gb"] == clips["peak_gb"] and clips["seconds"] > 0
    assert set(t4["stages"]) == set(report["estimate"]["stages"])

    from sparkle_motion_dagster.cli.filming import _for_card
    from sparkle_motion_dagster.store.storage import ArtifactStore

    store = ArtifactStore(tmp_path / "state" / "artifacts")
    h100 = _for_card(store, report["run_id"], report, "h100", None)["estimate"]["gpu"]
    fast = h100["stages"]["video_clips"]
    assert fast["fits"] and fast["peak_gb"] > clips["peak_gb"]  # room to keep more of the model resident
    assert fast["seconds"] < clips["seconds"] / 10  # about 15x the T4's 16-bit throughput


def test_time_left_counts_the_stages_still_to_come():
    from sparkle_motion_dagster.insight.estimates import time_left

    estimate = {"overhead_seconds": 6.0, "stages": {"movie_plan": {"seconds": 1.0}, "base_images": {"seconds": 10.0},
                                                    "video_clips": {"seconds": 30.0}}}
    assert time_left(estimate, done=set()) == 47.0
    assert time_left(estimate, done={"movie_plan"}, running="base_images", running_for=4.0) == 6 + 30 + 4.0
    assert time_left(estimate, done={"movie_plan", "base_images"}, running="video_clips", running_for=99) == 2.0


def test_history_at_other_sizes_fits_how_time_grows_with_pixels():
    from sparkle_motion_dagster.insight import estimates

    def film(width, height, frames):  # clips whose time grows with the square root of the pixels
        seconds = 0.2 + 1e-4 * frames * (width * height) ** 0.5
        return {"size": [width, height], "overhead_seconds": 0.5, "stages": {"video_clips": {
            "backend": "animatic", "device": "cpu", "steps": None, "units": frames, "seconds": seconds}}}

    history = [film(160, 90, 48), film(160, 90, 144), film(640, 360, 96), film(640, 360, 288)]
    plan = _plan(24, 4.0, 320, 180)  # 96 frames at a size never filmed
    clips = estimates.estimate(plan, {"video_clips": {"backend": "animatic", "device": "cpu"}}, history,
                               free=lambda d: None)["stages"]["video_clips"]
    assert clips["basis"] == "history" and clips["same_size"] is False and clips["measurements"] == 4
    assert clips["seconds"] == pytest.approx(0.2 + 1e-4 * 96 * (320 * 180) ** 0.5, rel=0.02)


def test_figures_measured_by_the_gpu_benchmark_replace_published_ones(tmp_path, monkeypatch, wan14b):
    pytest.importorskip("diffusers")
    from sparkle_motion_dagster.resources.clips.wan import WanClips
    from sparkle_motion_dagster.insight import estimates

    report_a_card(monkeypatch, 80, name="NVIDIA H100 80GB HBM3")
    root = tmp_path / "artifacts"
    (root / "estimates").mkdir(parents=True)
    (root / "estimates" / "gpu_bench.json").write_text(json.dumps({
        "card": "NVIDIA H100 80GB HBM3", "card_key": "h100", "measured_at": "2026-12-01T00:00:00+00:00",
        "results": [{"backend": "wan-2.1", "placement": "resident", "width": 832, "height": 480, "frames": 81,
                     "steps": 30, "seconds": 300.0, "peak_allocated_bytes": 50 * 2**30}]}))
    plan = _plan(16, 81 / 16, 832, 480)
    clips = WanClips(model=str(wan14b))
    figure = estimates.estimate_for_run(root, plan, {"clips": clips})["stages"]["video_clips"]
    assert figure["basis"] == "benchmark" and "bench/gpu.py on NVIDIA H100" in figure["source"]
    assert figure["placement"] == "resident" and figure["seconds"] == pytest.approx(300.0)
    # for another card, the measured time is scaled by the cards' 16-bit throughput
    from sparkle_motion_dagster.resources.memory_plan import CARDS, named_card

    a100 = estimates.estimate_for_run(root, plan, {"clips": clips}, card=named_card("a100-80gb"))
    assert a100["stages"]["video_clips"]["seconds"] == pytest.approx(
        300.0 * CARDS["h100"]["tflops"] / CARDS["a100-80gb"]["tflops"])
