"""A film whose render_profile.video sets steps, guidance and a LoRA, on the tiny Wan model: every clip's
provenance shows them (the LoRA by sha256), the clips show their retime method, and a new LoRA scale
renders the clips again while the keyframes are reused."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy  # noqa: E402
import json  # noqa: E402

import dagster as dg  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from sparkle_motion_dagster.definitions import defs  # noqa: E402
from sparkle_motion_dagster.dev.tiny_models import build_tiny_lora, build_tiny_wan  # noqa: E402
from sparkle_motion_dagster.media.ffmpeg import count_video_frames  # noqa: E402
from sparkle_motion_dagster.orchestration.runner import submit_run  # noqa: E402
from sparkle_motion_dagster.resources.clips.wan import WanClips  # noqa: E402
from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_json, sha256_file  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
SHOTS = ("shot_001", "shot_002")


def test_a_film_with_steps_guidance_and_a_lora(sample_envelope, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    model = build_tiny_wan(tmp_path / "wan-i2v", first_last_frame=False)
    lora = build_tiny_lora(model, tmp_path / "lora")
    envelope = copy.deepcopy(sample_envelope)
    video = envelope["validated_plan"]["render_profile"]["video"]
    video.update({"model_id": "wan-2.1", "steps": 4, "guidance": 1.0, "loras": [{"path": str(lora), "scale": 1.0}],
                  "width": 64, "height": 64, "max_fps": 4})
    store = ArtifactStore(tmp_path / "artifacts")
    clips = WanClips(model=str(model), device_preset="cpu", gen_fps=4)
    job = defs.resolve_job_def("film")

    with dg.DagsterInstance.ephemeral() as instance:
        run_id = submit_run(store, instance, envelope, source="test", preview=False,
                            clip_model_ids=clips.model_ids, clip_backend=clips.backend)
        assert job.execute_in_process(instance=instance, partition_key=run_id, resources={"clips": clips}).success

        digest = sha256_file(lora)
        keyframes = sorted(store.path(run_id, "base_images").glob("*.png"))
        made = {path: path.stat().st_mtime_ns for path in keyframes}
        first_clips = {}
        for shot in SHOTS:
            clip = store.path(run_id, "video_clips", f"{shot}.mp4")
            first_clips[shot] = sha256_file(clip)
            assert count_video_frames(clip) == {"shot_001": 32, "shot_002": 38}[shot]
            record = json.loads((store.run_dir(run_id) / ".provenance" / "video_clips" / f"{shot}.mp4.json")
                                .read_text())
            assert (record["model"]["settings"]["steps"], record["model"]["settings"]["guidance"]) == (4, 1.0)
            assert record["model"]["loras"] == [{"path": str(lora.resolve()), "scale": 1.0, "sha256": digest}]
            assert record["model"]["family"] == "wan-2.1-i2v-480p"
        manifest = json.loads(store.path(run_id, "video_clips", "motion_manifest.json").read_text())
        assert {entry["retime"] for entry in manifest["clip_assets"]} == {"motion"}

        # A new LoRA scale: the clips render again, the keyframes are reused.
        request = store.read_request(run_id)
        request["document"]["validated_plan"]["render_profile"]["video"]["loras"][0]["scale"] = 0.5
        atomic_write_json(store.request_path(run_id), request)
        assert job.execute_in_process(instance=instance, partition_key=run_id, resources={"clips": clips}).success
        assert {path: path.stat().st_mtime_ns for path in keyframes} == made
        for shot in SHOTS:
            assert sha256_file(store.path(run_id, "video_clips", f"{shot}.mp4")) != first_clips[shot]
            record = json.loads((store.run_dir(run_id) / ".provenance" / "video_clips" / f"{shot}.mp4.json")
                                .read_text())
            assert record["model"]["loras"][0]["scale"] == 0.5
    clips.release()
