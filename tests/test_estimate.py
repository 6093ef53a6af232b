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
    from sparkle_motion_dagster.runs import estimates

    plan = _plan(16, 81 / 16, 832, 480)  # one 81-frame generation at 480p, as the figure was measured
    result = estimates.estimate(plan, {"video_clips": WAN}, [], free=lambda device: None)
    clips = result["stages"]["video_clips"]
    assert clips["basis"] == "published" and "H200" in clips["measured_on"] and "Wan2.1" in clips["source"]
    assert clips["seconds"] == pytest.approx(366, rel=0.01) and clips["peak_memory_bytes"] == 71 * GB

    at_720p = estimates.estimate(_plan(16, 81 / 16, 1280, 720), {"video_clips": WAN}, [], free=lambda d: None)
    assert at_720p["stages"]["video_clips"]["seconds"] == pytest.approx(974, rel=0.01)
    longer = estimates.estimate(_plan(16, 2 * 81 / 16, 832, 480), {"video_clips": {**WAN, "steps": 20}}, [],
                                free=lambda d: None)
    assert longer["stages"]["video_clips"]["seconds"] == pytest.approx(366, rel=0.02)  # twice the frames, half the steps

    sdxl = estimates.estimate(_plan(16, 2.0, 1024, 1024), {"base_images": {"backend": "sdxl", "device": "cuda",
                                                                            "steps": 30}}, [], free=lambda d: None)
    assert sdxl["stages"]["base_images"]["seconds"] == pytest.approx(2 * 2.5)  # two keyframes
    assert sdxl["stages"]["base_images"]["basis"] == "published"
    assert result["stages"]["dialogue_audio"]["basis"] == "none" and result["complete"] is False


def test_a_configured_model_without_history_is_estimated_from_its_published_figure(tmp_path):
    pytest.importorskip("diffusers")  # the models extra
    from test_provenance import _tiny_sdxl_folder

    from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes
    from sparkle_motion_dagster.runs import estimates

    sdxl = SdxlKeyframes(model=str(_tiny_sdxl_folder(tmp_path / "sdxl")), device="cpu", steps=15)
    result = estimates.estimate_for_run(tmp_path / "artifacts", _plan(24, 2.0, 1024, 512), {"keyframes": sdxl})
    keyframes = result["stages"]["base_images"]
    assert keyframes["backend"] == "sdxl" and keyframes["device"] == "cpu" and keyframes["basis"] == "published"
    assert "A100" in keyframes["measured_on"] and "30 steps" in keyframes["source"]
    assert keyframes["seconds"] == pytest.approx(2 * 2.5 * 0.5 * 0.5)  # two keyframes, half the pixels and steps
    assert result["stages"]["video_clips"]["basis"] == "none"  # nothing filmed yet, nothing published


def test_a_peak_above_the_free_memory_warns_with_the_preset_that_fits(monkeypatch):
    from sparkle_motion_dagster.runs import estimates

    plan = _plan(16, 81 / 16, 832, 480)
    asked = []

    def free(device):
        asked.append(device)
        return 40 * GB if device.startswith("cuda") else 64 * GB

    result = estimates.estimate(plan, {"video_clips": WAN}, [], free=free)
    assert "cuda-bf16" in asked
    [warning] = result["warnings"]
    assert warning["kind"] == "memory" and warning["field"] == "estimate.stages.video_clips"
    warning = warning["message"]
    assert warning.startswith("video_clips: estimated peak memory 71.0 GB (published) exceeds the 40.0 GB free on "
                              "cuda-bf16") and "VIDEOS_WAN_DEVICE_PRESET=cuda-offload" in warning

    monkeypatch.setattr(estimates, "free_memory", lambda device: 100 * GB)
    assert estimates.estimate(plan, {"video_clips": WAN}, [])["warnings"] == []


def test_time_left_counts_the_stages_still_to_come():
    from sparkle_motion_dagster.runs.estimates import time_left

    estimate = {"overhead_seconds": 6.0, "stages": {"movie_plan": {"seconds": 1.0}, "base_images": {"seconds": 10.0},
                                                    "video_clips": {"seconds": 30.0}}}
    assert time_left(estimate, done=set()) == 47.0
    assert time_left(estimate, done={"movie_plan"}, running="base_images", running_for=4.0) == 6 + 30 + 4.0
    assert time_left(estimate, done={"movie_plan", "base_images"}, running="video_clips", running_for=99) == 2.0


def test_history_at_other_sizes_fits_how_time_grows_with_pixels():
    from sparkle_motion_dagster.runs import estimates

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
