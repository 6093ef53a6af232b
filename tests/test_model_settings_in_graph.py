"""Real-model settings as the graph hands them over: per-run image settings reach the keyframe renderer,
and Wav2Lip really redraws mouths in the final cut (and only there)."""

import json
from pathlib import Path
from typing import ClassVar

import dagster as dg
import numpy as np
import pytest
from film_checks import decode_rgb, small_plan, streams
from PIL import Image

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import submit_run
from sparkle_motion_dagster.resources.keyframes import KeyframeRenderer
from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes
from sparkle_motion_dagster.resources.keyframes.storyboard import StoryboardKeyframes


def submit(store, instance, plan_path: Path) -> str:
    return submit_run(store, instance, json.loads(plan_path.read_text()), source="test", preview=False,
                      clip_model_ids=("animatic",), clip_backend="animatic")


# ---------------------------------------------------------------------- per-run image settings


class RecordingSdxl(SdxlKeyframes):
    """The SDXL adapter with its settings handling (with_settings, validation) as it is, recording what
    each render was asked with instead of running a pipeline."""

    log: str

    def fingerprint(self):  # the real one also identifies the weights on disk, which this has none of
        return {"backend": self.backend, **self.model_dump()}

    def render(self, prompt, *, seed, width, height, label=""):
        with open(self.log, "a") as handle:
            handle.write(json.dumps({"prompt": prompt, "seed": seed, "size": [width, height], "steps": self.steps,
                                     "guidance": self.guidance, "scheduler": self.scheduler,
                                     "negative_prompt": self.negative_prompt}) + "\n")
        return Image.new("RGB", (width, height), (seed % 256, self.steps % 256, 0))


def materialize_keyframes(instance, run_id: str, keyframes: KeyframeRenderer, config: dict, log: Path):
    """movie_plan and base_images for the partition with ``keyframes`` and this base_images config;
    the result and the renders the renderer recorded."""
    log.unlink(missing_ok=True)
    result = dg.materialize(
        [a for a in defs.assets if a.key in (dg.AssetKey("movie_plan"), dg.AssetKey("character_refs"),
                                             dg.AssetKey("base_images"))],
        instance=instance, partition_key=run_id, raise_on_error=False,
        resources={**defs.resources, "keyframes": keyframes}, run_config={"ops": {"base_images": {"config": config}}})
    renders = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, [r for r in renders if not r["prompt"].startswith("Portrait of")]  # keyframes, not portraits


@pytest.fixture
def image_run(tmp_path, store, instance):
    """A two-shot plan with render_profile.images, and the SDXL adapter configured as IMAGES_SDXL_* would."""
    log = tmp_path / "renders.jsonl"
    keyframes = RecordingSdxl(model="/models/sdxl", steps=30, guidance=7.5, scheduler="ddim",
                              negative_prompt="from the environment", log=str(log))
    plan = small_plan(tmp_path, shots=2, render_profile={
        "video": {"model_id": "animatic", "max_fps": 12, "width": 96, "height": 64},
        "images": {"steps": 12, "guidance": 4.5, "negative_prompt": "blurry"}})
    return submit(store, instance, plan), keyframes, log


def test_base_images_config_and_render_profile_images_reach_the_keyframe_renderer(image_run, store, instance):
    run_id, keyframes, log = image_run

    def settings(renders):
        return {(r["steps"], r["guidance"], r["scheduler"], r["negative_prompt"]) for r in renders}

    # render_profile.images wins over the environment; what neither sets keeps the environment's value.
    result, renders = materialize_keyframes(instance, run_id, keyframes, {}, log)
    assert result.success
    assert sorted(r["seed"] for r in renders) == [100, 101, 102] and {tuple(r["size"]) for r in renders} == {(96, 64)}
    assert settings(renders) == {(12, 4.5, "ddim", "blurry")}

    # The base_images config wins over render_profile.images; new settings are new inputs: every keyframe again.
    result, renders = materialize_keyframes(instance, run_id, keyframes, {"steps": 3, "scheduler": "euler_a"}, log)
    assert result.success and len(renders) == 3
    assert settings(renders) == {(3, 4.5, "euler_a", "blurry")}
    picture = np.asarray(Image.open(store.path(run_id, "base_images", "frame_000.png")))
    assert picture[0, 0, 1] == 3  # the file on disk is the render made with those settings

    # The same settings again: nothing to render.
    result, renders = materialize_keyframes(instance, run_id, keyframes, {"steps": 3, "scheduler": "euler_a"}, log)
    assert result.success and renders == []


def test_an_image_setting_the_model_refuses_fails_at_once_and_names_it(image_run, instance):
    run_id, keyframes, log = image_run
    result, renders = materialize_keyframes(instance, run_id, keyframes, {"scheduler": "warp-drive"}, log)
    assert not result.success and renders == []
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "scheduler" in str(failure.step_failure_data.error)
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries == [], "invalid input was retried"


# ---------------------------------------------------------------------- Wav2Lip inside the graph

SIZE = 160
FPS = 12
SHOT_FRAMES = 12  # one second per shot


class AstronautKeyframes(KeyframeRenderer):
    """Keyframes that are the astronaut photo (a real face) framed head and shoulders."""

    backend: ClassVar[str] = "astronaut-photo"

    def render(self, prompt, *, seed, width, height, label):
        from skimage import data

        return Image.fromarray(data.astronaut()[0:320, 70:390]).resize((width, height), Image.Resampling.LANCZOS)


@pytest.mark.slow
def test_wav2lip_redraws_mouths_on_talking_closeups_during_dialogue_and_nothing_else(tmp_path, store, instance,
                                                                                      one_torch_thread):
    pytest.importorskip("torch")
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    from sparkle_motion_dagster.resources.lipsync import wav2lip
    from sparkle_motion_dagster.resources.lipsync.wav2lip import Wav2LipLipsync
    from sparkle_motion_dagster.resources.lipsync.wav2lip_model import save_random_checkpoint

    checkpoint = save_random_checkpoint(tmp_path / "wav2lip_tiny.pth", seed=3)
    # shot_001: a talking closeup with no dialogue; shot_002: a talking closeup the line is spoken over;
    # shot_003: the line runs on over it, but it is not a closeup.
    plan = small_plan(tmp_path, shots=3, fps=FPS, size=(SIZE, SIZE), dialogue_timeline=[
        {"type": "dialogue", "character_id": "ava", "text": "The boats are back in the harbour tonight, all of them.",
         "start_time_sec": 1.0, "duration_sec": 1.0}])
    document = json.loads(plan.read_text())
    for shot, closeup in zip(document["shots"], (True, True, False)):
        shot["is_talking_closeup"] = closeup
        shot["motion_prompt"] = "hold"
    plan.write_text(json.dumps(document))
    run_id = submit(store, instance, plan)

    lipsync = Wav2LipLipsync(checkpoint=str(checkpoint), device="cpu", batch_size=4, face_detector="opencv-haar")
    try:
        result = defs.resolve_job_def("film").execute_in_process(
            instance=instance, partition_key=run_id,
            resources={"keyframes": AstronautKeyframes(), "lipsync": lipsync})
    finally:
        wav2lip.release()
    assert result.success

    alignment = json.loads(store.path(run_id, "finalize", "alignment_map.json").read_text())
    assert alignment["backend"] == "wav2lip" and alignment["lipsync_applied"] is True
    window = range(SHOT_FRAMES, 2 * SHOT_FRAMES)  # shot_002, all inside the line
    assert alignment["changed_frames"] == list(window)

    raw = decode_rgb(store.path(run_id, "assembly", "video_raw_concat.mp4"), SIZE, SIZE)
    final = decode_rgb(store.path(run_id, "finalize", "video_final.mp4"), SIZE, SIZE)
    assert len(raw) == len(final) == 3 * SHOT_FRAMES
    boxes = {row["frame"]: row["box"] for row in alignment["frame_alignment"]}
    for index in range(len(raw)):
        if index not in window:  # the other shots are copied into the final cut untouched
            assert np.array_equal(final[index], raw[index]), f"frame {index} changed outside the dialogue window"
            continue
        x1, y1, x2, y2 = boxes[index]
        h, w = y2 - y1, x2 - x1
        mouth = (slice(y1 + int(0.6 * h), y1 + int(0.9 * h)), slice(x1 + int(0.3 * w), x1 + int(0.7 * w)))
        diff = np.abs(final[index].astype(np.int16) - raw[index].astype(np.int16))
        assert diff[mouth].mean() > 20, f"frame {index}: the mouth was not redrawn"
        outside = np.ones((SIZE, SIZE), bool)
        outside[y1:y2, x1:x2] = False
        # Outside the face only the shot's one re-encode shows (a mean of about 2 levels).
        assert diff[outside].mean() < 4, f"frame {index}: more than the face changed"
    assert [kind for kind, _ in streams(store.path(run_id, "finalize", "video_final.mp4"))] == ["Video", "Audio"]


# ---------------------------------------------------------------------- the GPU handed from stage to stage


class ReleaseLoggingKeyframes(StoryboardKeyframes):
    """The storyboard keyframes, noting in a log when they are told to free their model."""

    log: str

    def release(self) -> None:
        with open(self.log, "a") as handle:
            handle.write("keyframes released\n")
        super().release()


class RenderLoggingClips(AnimaticClips):
    """The animatic clips, noting in the same log each clip they render."""

    log: str

    def render(self, request, out_path):
        with open(self.log, "a") as handle:
            handle.write(f"clip {request.shot_id}\n")
        return super().render(request, out_path)


@pytest.mark.slow
def test_the_clips_stage_frees_the_keyframe_model_before_its_first_clip(tmp_path, store, instance):
    log = tmp_path / "gpu.log"
    run_id = submit(store, instance, small_plan(tmp_path, shots=2))
    resources = {**defs.resources, "keyframes": ReleaseLoggingKeyframes(log=str(log)),
                 "clips": RenderLoggingClips(log=str(log))}
    keys = [dg.AssetKey(k) for k in ("movie_plan", "character_refs", "base_images")]
    images = dg.materialize([a for a in defs.assets if a.key in keys], instance=instance, partition_key=run_id,
                            resources=resources)
    assert images.success and not log.exists()  # rendering keyframes keeps their model loaded
    clips = dg.materialize([*defs.assets], selection="video_clips", instance=instance, partition_key=run_id,
                           resources=resources)
    assert clips.success
    first, *renders = log.read_text().splitlines()
    clips_rendered = [line for line in renders if line != "keyframes released"]  # freed again is harmless
    assert first == "keyframes released" and sorted(clips_rendered) == ["clip shot_001", "clip shot_002"]
