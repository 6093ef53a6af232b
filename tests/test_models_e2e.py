"""The whole graph with tiny SDXL and tiny Wan configured: a real film from the real adapters."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402

import dagster as dg  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("diffusers")

from sparkle_motion_dagster.definitions import defs  # noqa: E402
from sparkle_motion_dagster.dev.tiny_models import build_all  # noqa: E402
from sparkle_motion_dagster.film.intake import ModelNotConfiguredError  # noqa: E402
from sparkle_motion_dagster.media.ffmpeg import count_video_frames, decoded_audio_seconds  # noqa: E402
from sparkle_motion_dagster.orchestration.runner import submit_run  # noqa: E402
from sparkle_motion_dagster.resources.clips.wan import WanClips  # noqa: E402
from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes  # noqa: E402
from sparkle_motion_dagster.resources.lipsync.wav2lip import Wav2LipLipsync  # noqa: E402
from sparkle_motion_dagster.resources.speech.vits import VitsSpeech  # noqa: E402
from sparkle_motion_dagster.insight.catalog import Catalog  # noqa: E402
from sparkle_motion_dagster.store.storage import ArtifactStore  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    models = build_all(tmp_path_factory.mktemp("tiny"))
    yield models
    SdxlKeyframes(model=str(models["sdxl"])).release()
    WanClips(model=str(models["wan-flf2v"])).release()


def test_tiny_real_models_make_a_film_of_the_exact_runtime(tiny, sample_envelope, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    store = ArtifactStore(tmp_path / "artifacts")
    plan = sample_envelope["validated_plan"]
    plan["render_profile"]["video"].update(width=64, height=64, max_fps=8)  # keeps the tiny models quick
    keyframes = SdxlKeyframes(model=str(tiny["sdxl"]), steps=2)
    clips = WanClips(model=str(tiny["wan-flf2v"]), steps=2, gen_fps=8)
    speech = VitsSpeech(model=str(tiny["vits"]))
    lipsync = Wav2LipLipsync(checkpoint=str(tiny["wav2lip"]))

    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(ModelNotConfiguredError):  # without Wan configured the declared model is refused
            submit_run(store, instance, sample_envelope, source="test", preview=False,
                       clip_model_ids=("animatic",), clip_backend="animatic")
        run_id = submit_run(store, instance, sample_envelope, source="test", preview=False,
                            clip_model_ids=clips.model_ids, clip_backend=clips.backend)
        result = defs.resolve_job_def("film").execute_in_process(
            instance=instance, partition_key=run_id,
            resources={"keyframes": keyframes, "clips": clips, "speech": speech, "lipsync": lipsync})
        assert result.success

    final = store.path(run_id, "finalize", "video_final.mp4")
    assert count_video_frames(final) == round(17.5 * 8)
    assert abs(decoded_audio_seconds(final) - 17.5) <= 1 / 8
    for shot, frames in (("shot_001", 64), ("shot_002", 76)):
        assert count_video_frames(store.path(run_id, "video_clips", f"{shot}.mp4")) == frames

    rows = Catalog(store.root).artifacts(run_id)
    frames_rows = [r for r in rows if r["artifact_type"] == "shot_frames"]
    clip_rows = [r for r in rows if r["artifact_type"] == "shot_video"]
    assert {r["metadata"]["backend"] for r in frames_rows} == {"sdxl"} and len(frames_rows) == 3
    assert {r["metadata"]["backend"] for r in clip_rows} == {"wan-2.1"}
    assert {r["metadata"]["continuity_mode"] for r in clip_rows} == {"first_last_frame"}
    audio = json.loads(store.path(run_id, "dialogue_audio", "dialogue_timeline_audio.json").read_text())
    assert audio["backend"] == speech.backend
    for line in audio["line_artifacts"]:
        stream = json.loads(open(line["viseme_stream_uri"]).read())
        assert stream["visemes"], line["line_id"]
    alignment = json.loads(store.path(run_id, "finalize", "alignment_map.json").read_text())
    assert alignment["backend"] == "wav2lip"
    intake = json.loads(store.path(run_id, "plan_intake", "plan_validation.json").read_text())
    assert intake["video"] == {"declared_model_id": "wan-2.1", "video_backend": "wan-2.1", "substituted": False,
                               "preview": False}
