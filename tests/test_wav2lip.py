"""Wav2Lip lipsync: random weights saved as a checkpoint and loaded by the adapter's own code, on clips
made from a real face photo (scikit-image's astronaut), with real ffmpeg and the bundled face cascades."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Busy-waiting OpenMP threads make small torch models 20-30x slower when the CPU is shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch first loads OpenMP

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from film_checks import audio_seconds, frame_md5s, streams
from PIL import Image

from sparkle_motion_dagster.film.final_cut import lipsync_shots
from sparkle_motion_dagster.media.ffmpeg import FrameEncoder, concat_copy, count_video_frames, probe
from sparkle_motion_dagster.media.wav import wav_bytes
from sparkle_motion_dagster.resources.lipsync import face_detect, wav2lip, wav2lip_model
from sparkle_motion_dagster.resources.lipsync import mel as lipsync_audio
from sparkle_motion_dagster.resources.lipsync.face_detect import Box
from sparkle_motion_dagster.resources.lipsync.passthrough import PassthroughLipsync
from sparkle_motion_dagster.resources.lipsync.wav2lip import Wav2LipLipsync, iter_video_frames

FPS = 24.0
SIZE = 160
A_FRAMES, B_FRAMES, C_FRAMES = 12, 6, 6
A_WINDOW = range(3, 9)  # frames of shot_a inside its dialogue window


@pytest.fixture(scope="module", autouse=True)
def release_models(one_torch_thread):
    yield
    wav2lip.release()


# ---------------------------------------------------------------------- material


def astronaut_frame(shift: int = 0) -> np.ndarray:
    """A head-and-shoulders frame of the astronaut photo, moved ``shift`` source pixels sideways."""
    photo = skimage_data.astronaut()
    crop = photo[0:320, 70 + shift:390 + shift]
    return np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.Resampling.LANCZOS))


def faceless_frame(seed: int = 0) -> np.ndarray:
    """A smooth gradient with a little noise: no face."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([x * 255 / SIZE, y * 255 / SIZE, np.full_like(x, 96)], axis=-1)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def write_clip(path: Path, frames) -> Path:
    with FrameEncoder(path, width=SIZE, height=SIZE, fps=FPS) as encoder:
        for frame in frames:
            encoder.write(np.ascontiguousarray(frame).tobytes())
    return path


def write_speech_like_wav(path: Path, seconds: float) -> Path:
    """Voiced-ish audio: a 140 Hz buzz with formant-like tones, amplitude-modulated at syllable rate."""
    rate = 22050
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((140, 280, 700, 1200, 2400)))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    path.write_bytes(wav_bytes(0.3 * voice * envelope / 2, rate))
    return path


def decode(path: Path) -> list[np.ndarray]:
    info = probe(path)
    return [np.array(frame) for frame in iter_video_frames(path, info["width"], info["height"])]


def mouth_box(frame_box) -> tuple[slice, slice]:
    x1, y1, x2, y2 = frame_box
    h, w = y2 - y1, x2 - x1
    return slice(y1 + int(0.6 * h), y1 + int(0.9 * h)), slice(x1 + int(0.3 * w), x1 + int(0.7 * w))


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return wav2lip_model.save_random_checkpoint(tmp_path_factory.mktemp("weights") / "wav2lip_tiny.pth", seed=3)


@pytest.fixture
def engine(checkpoint) -> Wav2LipLipsync:
    return Wav2LipLipsync(checkpoint=str(checkpoint), device="cpu", batch_size=4, face_detector="opencv-haar")


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    """Three shots joined like the assembly does: a talking closeup of the astronaut, the astronaut in a
    shot that is not a talking closeup, and a talking closeup with no face in it."""
    folder = tmp_path_factory.mktemp("film")
    a = write_clip(folder / "shot_a.mp4", [astronaut_frame(shift=2 * (i % 4)) for i in range(A_FRAMES)])
    b = write_clip(folder / "shot_b.mp4", [astronaut_frame(shift=3) for _ in range(B_FRAMES)])
    c = write_clip(folder / "shot_c.mp4", [faceless_frame(i) for i in range(C_FRAMES)])
    master = folder / "video_raw_concat.mp4"
    concat_copy([a, b, c], master, folder / "concat.txt")
    total = A_FRAMES + B_FRAMES + C_FRAMES
    audio = write_speech_like_wav(folder / "tts_timeline.wav", total / FPS)
    shots = [
        {"shot_id": "shot_a", "start_frame": 0, "num_frames": A_FRAMES, "is_talking_closeup": True, "clip_path": str(a)},
        {"shot_id": "shot_b", "start_frame": A_FRAMES, "num_frames": B_FRAMES, "is_talking_closeup": False,
         "clip_path": str(b)},
        {"shot_id": "shot_c", "start_frame": A_FRAMES + B_FRAMES, "num_frames": C_FRAMES, "is_talking_closeup": True,
         "clip_path": str(c)},
    ]
    windows = [
        {"line_id": "line_000", "shot_id": "shot_a", "start_s": round(A_WINDOW.start / FPS, 6),
         "end_s": round(A_WINDOW.stop / FPS, 6)},
        # Not a talking closeup: lipsync_windows() would not even list it; the engine must ignore it anyway.
        {"line_id": "line_001", "shot_id": "shot_b", "start_s": round(A_FRAMES / FPS, 6),
         "end_s": round((A_FRAMES + B_FRAMES) / FPS, 6)},
        {"line_id": "line_002", "shot_id": "shot_c", "start_s": round((A_FRAMES + B_FRAMES) / FPS, 6),
         "end_s": round(total / FPS, 6)},
    ]
    master_frames = decode(master)
    # The same frames through one more libx264 generation at the project's settings: the yardstick for
    # "unchanged" wherever a shot has to be encoded again.
    control = decode(write_clip(folder / "control_reencode.mp4", master_frames))
    return SimpleNamespace(folder=folder, master=master, audio=audio, shots=shots, windows=windows, total=total,
                           master_frames=master_frames, control=control)


def generation_loss(film, index: int, region=(slice(None), slice(None))) -> float:
    return mean_abs(film.control[index][region], film.master_frames[index][region])


class RecordingEncoder(wav2lip.ClipEncoder):
    """The engine's encoder, keeping a copy of every frame it is given (what the engine produced, before x264)."""

    written: ClassVar[dict[str, list[np.ndarray]]] = {}

    def __init__(self, out_path, *, width, height, fps, keyframes=()):
        super().__init__(out_path, width=width, height=height, fps=fps, keyframes=keyframes)
        self.shape = (height, width, 3)
        self.frames = RecordingEncoder.written.setdefault(Path(out_path).name.split(".")[0], [])

    def write(self, frame):
        self.frames.append(np.frombuffer(bytes(frame), np.uint8).reshape(self.shape))
        super().write(frame)


@pytest.fixture(scope="module")
def synced(film, checkpoint):
    engine = Wav2LipLipsync(checkpoint=str(checkpoint), device="cpu", batch_size=4, face_detector="opencv-haar")
    out = film.folder / "video_final.mp4"
    work = film.folder / "lipsync"
    RecordingEncoder.written = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wav2lip, "ClipEncoder", RecordingEncoder)
        result = engine.apply(film.master, film.audio, out, windows=film.windows, fps=FPS, shots=film.shots,
                              work_dir=work)
    return SimpleNamespace(result=result, out=out, work=work, frames=decode(out), encoded=RecordingEncoder.written)


# ---------------------------------------------------------------------- the film, shot by shot


def test_frames_inside_dialogue_windows_change_and_frames_outside_do_not(film, synced):
    """What the engine hands the encoder for shot_a: the decoded frames, untouched outside the window,
    with a new mouth (and nothing else changed) inside it."""
    result = synced.result
    assert result["lipsync_applied"] is True
    assert result["changed_frames"] == list(A_WINDOW)
    assert result["mode"] == "per_shot_copy"
    assert list(synced.encoded) == ["shot_a"]  # only the shot that changes is encoded again
    produced = synced.encoded["shot_a"]
    assert len(produced) == A_FRAMES
    boxes = {row["frame"]: row["box"] for row in result["frame_alignment"]}
    for index in range(A_FRAMES):
        before, after = film.master_frames[index], produced[index]
        if index not in A_WINDOW:
            assert np.array_equal(before, after), index
            continue
        x1, y1, x2, y2 = boxes[index]
        outside = np.ones(before.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(before[outside], after[outside]), index
        rows, cols = mouth_box(boxes[index])
        assert mean_abs(before[rows, cols], after[rows, cols]) > 6, index


def test_in_the_final_video_only_the_mouths_in_the_window_change(film, synced):
    frames = synced.frames
    assert len(frames) == film.total
    boxes = {row["frame"]: row["box"] for row in synced.result["frame_alignment"]}
    for index in A_WINDOW:
        rows, cols = mouth_box(boxes[index])
        assert mean_abs(frames[index][rows, cols], film.master_frames[index][rows, cols]) > 6, index
    # shot_a outside its window: the engine passed these frames through (see above); what remains is the
    # one re-encode of that shot, the same small loss as any libx264 generation at the project's settings
    mouth = mouth_box(boxes[A_WINDOW.start])
    for index in set(range(A_FRAMES)) - set(A_WINDOW):
        assert mean_abs(frames[index], film.master_frames[index]) < 1.5 * generation_loss(film, index) + 0.5, index
        assert mean_abs(frames[index][mouth], film.master_frames[index][mouth]) < \
            1.5 * generation_loss(film, index, mouth) + 1.0, index
    # shot_b (not a talking closeup) and shot_c (no face) are stream-copied: identical decoded pixels
    for index in range(A_FRAMES, film.total):
        assert np.array_equal(frames[index], film.master_frames[index]), index


def test_the_final_video_carries_the_dialogue_and_the_per_shot_clip_is_written(film, synced):
    info = probe(synced.out)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert (info["width"], info["height"]) == (SIZE, SIZE)
    clips = synced.result["lipsync_clips"]
    assert [c["shot_id"] for c in clips] == ["shot_a"]
    assert clips[0]["artifact_type"] == "shot_lipsync_video"
    assert Path(clips[0]["path"]) == synced.work / "shot_a.mp4"
    assert count_video_frames(Path(clips[0]["path"])) == A_FRAMES == clips[0]["num_frames"]
    assert clips[0]["changed_frames"] == len(A_WINDOW)
    assert sorted(p.name for p in synced.work.iterdir()) == ["shot_a.mp4"]
    assert not any(".lipsync-" in p.name for p in synced.out.parent.iterdir())  # scratch removed
    shots = {s["shot_id"]: s for s in synced.result["shots"]}
    assert shots["shot_a"]["lipsync_clip"] == clips[0]["path"]
    assert shots["shot_b"]["lipsync_clip"] is None and shots["shot_c"]["lipsync_clip"] is None


def test_alignment_map_says_which_frames_changed_against_which_audio_window(synced):
    result = synced.result
    json.dumps(result)  # alignment_map.json material
    for row in result["frame_alignment"]:
        assert row["shot_id"] == "shot_a" and row["line_id"] == "line_000" and row["window_index"] == 0
        assert row["mel_start"] == int(row["frame"] * 80 / FPS)
        assert row["audio_start_s"] == pytest.approx(row["mel_start"] / 80)
        assert row["audio_end_s"] - row["audio_start_s"] == pytest.approx(0.2)
    windows = result["windows"]
    assert [(w["start_frame"], w["end_frame"], w["frames"], w["changed_frames"], w["no_face_frames"])
            for w in windows] == [(3, 9, 6, 6, 0), (12, 18, 0, 0, 0), (18, 24, 6, 0, 6)]
    assert result["no_face_frames"] == list(range(A_FRAMES + B_FRAMES, A_FRAMES + B_FRAMES + C_FRAMES))
    assert result["model"]["base_channels"] == wav2lip_model.TINY_BASE_CHANNELS
    assert result["model"]["face_detector"] == "opencv-haar"


def test_without_shot_clips_the_master_is_reencoded_once_with_the_same_frames_changed(film, engine, tmp_path):
    windows = [w for w in film.windows if w["shot_id"] != "shot_b"]  # what lipsync_windows() gives
    out = tmp_path / "final.mp4"
    result = engine.apply(film.master, film.audio, out, windows=windows, fps=FPS)
    assert result["mode"] == "full_reencode"
    assert result["changed_frames"] == list(A_WINDOW)
    assert result["no_face_frames"] == list(range(A_FRAMES + B_FRAMES, film.total))
    assert result["lipsync_clips"] == []  # no shots given: nothing to name a per-shot clip after
    frames = decode(out)
    assert len(frames) == film.total
    boxes = {row["frame"]: row["box"] for row in result["frame_alignment"]}
    for index in range(film.total):
        if index in A_WINDOW:
            rows, cols = mouth_box(boxes[index])
            assert mean_abs(frames[index][rows, cols], film.master_frames[index][rows, cols]) > 6
        else:  # passed through, then one libx264 generation
            assert mean_abs(frames[index], film.master_frames[index]) < 1.5 * generation_loss(film, index) + 0.5, index
    assert probe(out)["audio_codec"] == "aac"


def test_a_clip_with_no_face_passes_through_unchanged(engine, tmp_path):
    clip = write_clip(tmp_path / "shot_x.mp4", [faceless_frame(i) for i in range(8)])
    audio = write_speech_like_wav(tmp_path / "line.wav", 8 / FPS)
    shots = [{"shot_id": "shot_x", "start_frame": 0, "num_frames": 8, "is_talking_closeup": True,
              "clip_path": str(clip)}]
    windows = [{"line_id": "line_000", "shot_id": "shot_x", "start_s": 0.0, "end_s": round(8 / FPS, 6)}]
    out = tmp_path / "final.mp4"
    result = engine.apply(clip, audio, out, windows=windows, fps=FPS, shots=shots, work_dir=tmp_path / "lipsync")
    assert result["lipsync_applied"] is False and result["changed_frames"] == []
    assert result["no_face_frames"] == list(range(8))
    assert result["lipsync_clips"] == [] and not (tmp_path / "lipsync").exists()
    before, after = decode(clip), decode(out)
    assert len(after) == 8 and all(np.array_equal(x, y) for x, y in zip(before, after))
    assert probe(out)["audio_codec"] == "aac"


def test_no_windows_means_no_model_and_a_plain_mux(film, tmp_path, monkeypatch):
    engine = Wav2LipLipsync(checkpoint=str(tmp_path / "never-read.pth"), device="cpu")
    monkeypatch.setattr(wav2lip, "_model", lambda *a: pytest.fail("the model must not load without windows"))
    out = tmp_path / "final.mp4"
    result = engine.apply(film.master, film.audio, out, windows=[], fps=FPS, shots=film.shots)
    assert result["lipsync_applied"] is False and result["mode"] == "mux_only"
    assert all(np.array_equal(x, y) for x, y in zip(decode(out), film.master_frames))


# ---------------------------------------------------------------------- the in-memory core


def test_sync_frames_touches_only_the_mouth_inside_the_window(engine):
    frames = [astronaut_frame(shift=i % 3) for i in range(8)]
    mel = lipsync_audio.melspectrogram(np.random.default_rng(0).normal(0, 0.1, 16000))
    syncer = engine.syncer(mel, FPS)
    out, report = syncer.sync_frames(frames, first=100, wanted=[102, 103, 104])
    assert report["changed_frames"] == [102, 103, 104] and report["no_face_frames"] == []
    for offset, (before, after) in enumerate(zip(frames, out)):
        index = 100 + offset
        if index not in report["boxes"]:
            assert np.array_equal(before, after), index
            continue
        x1, y1, x2, y2 = report["boxes"][index]
        outside = np.ones(before.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(before[outside], after[outside])  # nothing outside the face box
        assert np.array_equal(before[y1:y2, x1], after[y1:y2, x1])  # the box edges are untouched: no seam
        assert np.array_equal(before[y2 - 1, x1:x2], after[y2 - 1, x1:x2])
        assert np.array_equal(before[y1, x1:x2], after[y1, x1:x2])
        upper = slice(y1, y1 + (y2 - y1) * 45 // 100)
        assert np.array_equal(before[upper, x1:x2], after[upper, x1:x2])  # eyes and nose are kept
        rows, cols = mouth_box((x1, y1, x2, y2))
        assert mean_abs(before[rows, cols], after[rows, cols]) > 6


def test_render_keeps_frame_order_and_holds_few_frames(engine):
    syncer = wav2lip.FrameSyncer(model=None, device="cpu", dtype="float32", detector=None, padding=(0, 0, 0, 0),
                                 smooth_frames=5, max_gap_frames=3, batch_size=2, mel=np.zeros((80, 16)), fps=FPS)
    batches = []

    def fake_batch(frames, indices, boxes):
        batches.append(list(indices))
        return [frame + 1 for frame in frames]

    syncer.sync_batch = fake_batch
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(20)]
    boxes = {i: (0, 0, 2, 2) for i in (3, 4, 5, 17)}
    seen = list(syncer.render(iter(frames), 0, boxes))
    assert [i for i, _, _ in seen] == list(range(20))
    assert [i for i, _, changed in seen if changed] == [3, 4, 5, 17]
    assert all(int(frame[0, 0, 0]) == i + (i in boxes) for i, frame, _ in seen)
    assert batches == [[3, 4], [5], [17]]  # frame 5 did not wait for frame 17 behind 4 untouched frames


def test_mouth_mask_is_feathered_and_zero_at_the_box_border():
    mask = wav2lip.mouth_mask(100, 80)[..., 0]
    assert mask.shape == (100, 80) and mask.max() == pytest.approx(1.0)
    assert mask[0].max() == 0 and mask[-1].max() == 0 and mask[:, 0].max() == 0 and mask[:, -1].max() == 0
    assert mask[:50].max() == 0  # the upper half of the face is never blended
    assert 0.05 < float(((mask > 0) & (mask < 1)).mean()) < 0.5  # a soft ramp, not a hard edge


def test_the_model_loads_once_per_process(engine, checkpoint, monkeypatch):
    wav2lip.release()
    engine.syncer(np.zeros((80, 40), np.float32), FPS)
    assert wav2lip.loaded_key()[0] == str(checkpoint.resolve())
    monkeypatch.setattr(wav2lip_model, "load_state_dict_file", lambda *_: pytest.fail("loaded twice"))
    engine.syncer(np.zeros((80, 40), np.float32), FPS)


# ---------------------------------------------------------------------- the network and its checkpoints


def test_random_checkpoint_has_the_official_layout_and_loads_through_the_adapter(checkpoint):
    raw = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "global_step", "global_epoch"}
    assert all(key.startswith("module.") for key in raw["state_dict"])
    model = wav2lip._model(str(checkpoint.resolve()), "cpu", "float32")
    assert model.base_channels == wav2lip_model.TINY_BASE_CHANNELS and not model.training
    assert set(raw["state_dict"]) == {f"module.{key}" for key in model.state_dict()}
    out = model(torch.randn(2, 1, 80, 16), torch.rand(2, 6, 96, 96))
    assert out.shape == (2, 3, 96, 96) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert float(out.std()) > 0.01  # BatchNorm statistics calibrated: a varied picture, not saturated


def test_full_size_network_has_the_official_key_names_and_shapes():
    with torch.device("meta"):
        model = wav2lip_model.Wav2Lip()
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert len(shapes) == 352
    assert wav2lip_model.parameter_count(model) == 36_298_035  # wav2lip.pth: 36.3 M generator parameters
    expected = {
        "face_encoder_blocks.0.0.conv_block.0.weight": (16, 6, 7, 7),
        "face_encoder_blocks.1.0.conv_block.0.weight": (32, 16, 3, 3),
        "face_encoder_blocks.2.3.conv_block.1.running_var": (64,),
        "face_encoder_blocks.6.1.conv_block.0.weight": (512, 512, 1, 1),
        "audio_encoder.0.conv_block.0.weight": (32, 1, 3, 3),
        "audio_encoder.3.conv_block.0.weight": (64, 32, 3, 3),
        "audio_encoder.12.conv_block.0.weight": (512, 512, 1, 1),
        "face_decoder_blocks.0.0.conv_block.0.weight": (512, 512, 1, 1),
        "face_decoder_blocks.1.0.conv_block.0.weight": (1024, 512, 3, 3),  # ConvTranspose2d: (in, out, k, k)
        "face_decoder_blocks.3.0.conv_block.0.weight": (768, 384, 3, 3),
        "face_decoder_blocks.6.2.conv_block.1.num_batches_tracked": (),
        "output_block.0.conv_block.0.weight": (32, 80, 3, 3),
        "output_block.1.weight": (3, 32, 1, 1),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    with torch.device("meta"):
        out = model(torch.randn(3, 1, 80, 16), torch.randn(3, 6, 96, 96))
        sequence = model(torch.randn(2, 5, 1, 80, 16), torch.randn(2, 6, 5, 96, 96))
    assert tuple(out.shape) == (3, 3, 96, 96) and tuple(sequence.shape) == (2, 3, 5, 96, 96)


def test_bare_state_dicts_load_too_and_other_checkpoints_are_refused_with_the_reason(tmp_path):
    model = wav2lip_model.build_random_model(seed=1, base_channels=2, calibrate=False)
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), str(bare))
    assert wav2lip_model.model_from_state_dict(wav2lip_model.load_state_dict_file(bare)).base_channels == 2
    s3fd_like = {"conv1_1.weight": torch.zeros(64, 3, 3, 3), "fc6.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="S3FD"):
        wav2lip_model.checkpoint_base_channels(s3fd_like)
    sync_expert = {"face_encoder.0.conv_block.0.weight": torch.zeros(1), "audio_encoder.0.conv_block.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="lipsync_expert"):
        wav2lip_model.checkpoint_base_channels(sync_expert)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    engine = Wav2LipLipsync(checkpoint=str(garbage), device="cpu")
    with pytest.raises(ValueError, match="WAV2LIP_CHECKPOINT.*cannot read"):
        engine.syncer(np.zeros((80, 20), np.float32), FPS)
    with pytest.raises(ValueError, match="WAV2LIP_CHECKPOINT.*does not exist"):
        Wav2LipLipsync(checkpoint=str(tmp_path / "missing.pth")).runtime()


# ---------------------------------------------------------------------- configuration


def test_from_env():
    assert Wav2LipLipsync.from_env({}) is None
    assert Wav2LipLipsync.from_env({"WAV2LIP_CHECKPOINT": "  "}) is None
    engine = Wav2LipLipsync.from_env({"WAV2LIP_CHECKPOINT": "/models/wav2lip_gan.pth", "WAV2LIP_DEVICE": "cpu",
                                      "WAV2LIP_BATCH_SIZE": "64", "WAV2LIP_FACE_DETECTOR": "skimage-lbp",
                                      "WAV2LIP_FACE_PADDING": "0,0.2,0,0", "WAV2LIP_SMOOTH_FRAMES": "3"})
    assert engine.backend == "wav2lip"
    assert (engine.checkpoint, engine.device, engine.batch_size, engine.face_detector) == (
        "/models/wav2lip_gan.pth", "cpu", 64, "skimage-lbp")
    assert engine.padding() == (0.0, 0.2, 0.0, 0.0) and engine.smooth_frames == 3
    with pytest.raises(ValueError, match="WAV2LIP_DEVICE"):
        Wav2LipLipsync.from_env({"WAV2LIP_CHECKPOINT": "x.pth", "WAV2LIP_DEVICE": "tpu"})
    with pytest.raises(ValueError, match="WAV2LIP_BATCH_SIZE"):
        Wav2LipLipsync.from_env({"WAV2LIP_CHECKPOINT": "x.pth", "WAV2LIP_BATCH_SIZE": "many"})
    with pytest.raises(ValueError, match="WAV2LIP_FACE_PADDING"):
        Wav2LipLipsync.from_env({"WAV2LIP_CHECKPOINT": "x.pth", "WAV2LIP_FACE_PADDING": "0.1"})
    with pytest.raises(ValueError, match="WAV2LIP_FACE_DETECTOR"):
        Wav2LipLipsync.from_env({"WAV2LIP_CHECKPOINT": "x.pth", "WAV2LIP_FACE_DETECTOR": "magic"})
    s3fd = Wav2LipLipsync.from_env({"WAV2LIP_CHECKPOINT": "x.pth", "WAV2LIP_FACE_DETECTOR": "s3fd:/w/s3fd.pth"})
    assert face_detect.detector_kind(s3fd.face_detector) == ("s3fd", "/w/s3fd.pth")


def test_passthrough_takes_the_new_arguments_and_shots_come_from_the_plan(film, tmp_path):
    out = tmp_path / "final.mp4"
    result = PassthroughLipsync().apply(film.master, film.audio, out, windows=film.windows, fps=FPS,
                                        shots=film.shots, work_dir=tmp_path / "lipsync")
    assert result == {"lipsync_applied": False, "changed_frames": [], "windows": film.windows}
    # The muxed file: the master's one video stream, copied (every frame identical), and one AAC
    # track as long as the film.
    assert streams(out) == [("Video", "h264"), ("Audio", "aac")]
    assert frame_md5s(out) == frame_md5s(film.master) and len(frame_md5s(out)) == film.total
    assert audio_seconds(out) == pytest.approx(film.total / FPS, abs=1 / FPS)
    assert not (tmp_path / "lipsync").exists()  # nothing changed, so no per-shot clips
    plan = SimpleNamespace(shots=[SimpleNamespace(id="shot_a", is_talking_closeup=True),
                                  SimpleNamespace(id="shot_b", is_talking_closeup=False)])
    assembly = {"clips": [{"shot_id": "shot_a", "path": "/a.mp4", "num_frames": 12},
                          {"shot_id": "shot_b", "path": "/b.mp4", "num_frames": 6}]}
    assert lipsync_shots(plan, assembly) == [
        {"shot_id": "shot_a", "start_frame": 0, "num_frames": 12, "is_talking_closeup": True, "clip_path": "/a.mp4"},
        {"shot_id": "shot_b", "start_frame": 12, "num_frames": 6, "is_talking_closeup": False, "clip_path": "/b.mp4"},
    ]


# ---------------------------------------------------------------------- audio front end


def _slaney_mel(hz):
    """Slaney's mel scale (librosa's default): linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    with np.errstate(divide="ignore"):
        log = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / log_step
    return np.where(hz >= 1000.0, log, hz / (200.0 / 3))


def _slaney_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * 200.0 / 3)


def reference_front_end(wav):
    """Wav2Lip's ``audio.melspectrogram`` written out from its definition (librosa's formulas in plain numpy,
    independent of the adapter): filters, STFT, decibels and normalisation. Returns (filters, |STFT|, mel)."""
    wav = np.asarray(wav, dtype=np.float64)
    emphasised = np.concatenate([wav[:1], wav[1:] - 0.97 * wav[:-1]])
    fft_freqs = np.linspace(0.0, 8000.0, 401)
    points = _slaney_hz(np.linspace(_slaney_mel(55.0), _slaney_mel(7600.0), 82))
    ramps = points[:, None] - fft_freqs[None, :]
    widths = np.diff(points)
    filters = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    filters *= (2.0 / (points[2:] - points[:-2]))[:, None]
    padded = np.pad(emphasised, 400, mode="reflect" if len(wav) > 400 else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 800)[::200][:1 + len(wav) // 200]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(800) / 800)
    magnitude = np.abs(np.fft.rfft(frames * hann, axis=1)).T
    db = 20 * np.log10(np.maximum(1e-5, filters @ magnitude)) - 20
    mel = np.clip(8 * ((db + 100) / 100) - 4, -4, 4).astype(np.float32)
    return filters, magnitude, mel


def test_mel_front_end_matches_the_wav2lip_definition():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
    filters, magnitude, expected = reference_front_end(wav)
    assert np.allclose(lipsync_audio.mel_filterbank(), filters, atol=1e-12)
    assert np.allclose(lipsync_audio.stft_magnitude(lipsync_audio.preemphasis(wav)), magnitude, atol=1e-4, rtol=1e-5)
    mel = lipsync_audio.melspectrogram(wav)
    assert mel.shape == (80, 1 + 16000 // 200) and mel.dtype == np.float32
    assert np.allclose(mel, expected, atol=1e-4)
    assert mel.min() >= -4 and mel.max() <= 4 and mel.std() > 0.1
    for short in (wav[:300], wav[:0]):  # shorter than half a frame: zero padding, one frame
        assert np.allclose(lipsync_audio.melspectrogram(short), reference_front_end(short)[2], atol=1e-4)


def test_mel_windows_follow_the_video_frames(tmp_path):
    wav = write_speech_like_wav(tmp_path / "a.wav", 1.0)
    mel = lipsync_audio.audio_melspectrogram(wav)  # 22.05 kHz file, resampled to 16 kHz by ffmpeg
    assert mel.shape == (80, 81)
    windows, starts = lipsync_audio.mel_windows(mel, range(30), 25.0)
    assert windows.shape == (30, 80, 16)
    assert list(starts[:4]) == [0, 3, 6, 9]
    assert starts[-1] == 81 - 16  # held at the end of the track
    assert np.array_equal(windows[2], mel[:, 6:22])
    short, _ = lipsync_audio.mel_windows(mel[:, :5], [0], 25.0)
    assert short.shape == (1, 80, 16) and np.all(short[0, :, 5:] == -4)


# ---------------------------------------------------------------------- faces


@pytest.mark.parametrize("spec", ["opencv-haar", "skimage-lbp"])
def test_bundled_detectors_find_the_astronaut_and_nothing_in_noise(spec):
    detector = face_detect.make_detector(spec)
    boxes = detector.detect(skimage_data.astronaut())
    assert len(boxes) == 1
    assert face_detect.iou(boxes[0], Box(177, 66, 272, 161)) > 0.6  # where her face is in the 512x512 photo
    assert detector.detect(faceless_frame()) == []


def test_tracking_fills_gaps_drops_outliers_and_smooths():
    face = Box(50, 30, 100, 80)
    jitter = [Box(face.x1 + d, face.y1, face.x2 + d, face.y2) for d in (0, 4, -4, 4, -4, 0, 0, 0)]
    detections = [[b] for b in jitter]
    detections[5] = []  # a miss
    detections[6] = [Box(120, 120, 150, 150)]  # a lone false positive
    detections[7] = [Box(0, 0, 10, 10), jitter[7]]  # two candidates: the one that continues the track wins
    tracked = face_detect.track_faces(detections + [[]] * 6, smooth_window=5, max_gap=3)
    assert all(b is not None for b in tracked[:8]) and all(b is None for b in tracked[8:])
    assert all(face_detect.iou(b, face) > 0.8 for b in tracked[:8])
    raw_spread = np.std([b.x1 for b in jitter[:5]])
    assert np.std([b.x1 for b in tracked[:5]]) < raw_spread / 2


def test_a_stray_detection_in_a_faceless_stretch_is_not_a_face():
    stray = [[] for _ in range(11)]
    stray[5] = [Box(40, 40, 80, 80)]
    assert face_detect.track_faces(stray) == [None] * 11
    flicker = [[Box(40, 40, 80, 80)] if i % 3 == 0 else [] for i in range(12)]  # a real face, found 1 frame in 3
    assert all(b is not None for b in face_detect.track_faces(flicker, max_gap=3)[:10])


def controlled_s3fd(path: Path, loc: tuple[float, float, float, float]) -> Path:
    """An S3FD checkpoint whose output is known: the trunk carries the blue channel of bright pixels
    (B > 204) to conv3_3, whose head calls a face wherever that feature is lit, with the box
    regression ``loc``; every other head says background. Saved as {"state_dict": {"module.<key>"}}."""
    net = face_detect.build_s3fd()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        for name in ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3"):
            getattr(net, name).weight[0, 0, 1, 1] = 1.0  # channel 0 (blue, after the BGR flip) passes through
        net.conv1_1.bias[0] = -100.0  # blue less its mean (104) less 100: only B > 204 survives the ReLU
        net.conv3_3_norm.weight.fill_(10.0)  # L2Norm: a lit cell becomes exactly 10, a dark one 0
        net.conv3_3_norm_mbox_conf.weight[3, 0, 1, 1] = 1.0  # the face score: 10 - 5 against 0 for background
        net.conv3_3_norm_mbox_conf.bias[3] = -5.0
        net.conv3_3_norm_mbox_loc.bias.copy_(torch.tensor(loc))
        for name in ("conv4_3_norm", "conv5_3_norm", "fc7", "conv6_2", "conv7_2"):
            getattr(net, f"{name}_mbox_conf").bias[0] = 10.0  # background, everywhere
    torch.save({"state_dict": {f"module.{key}": value for key, value in net.state_dict().items()}}, str(path))
    return path


def test_s3fd_decodes_known_boxes_from_a_checkpoint_with_the_published_names(tmp_path):
    net = face_detect.build_s3fd()
    shapes = {key: tuple(v.shape) for key, v in net.state_dict().items()}
    assert shapes["fc6.weight"] == (1024, 512, 3, 3) and shapes["conv3_3_norm.weight"] == (256,)
    assert shapes["conv3_3_norm_mbox_conf.weight"] == (4, 256, 3, 3)
    assert shapes["conv7_2_mbox_loc.weight"] == (4, 256, 3, 3)

    # Regression (dx, dy, dw, dh) = (2.5, -1.25, 0, ln 2 / 0.2): with variances 0.1 / 0.2 on anchors of
    # 4 x stride (16 px at conv3_3, stride 4) the centre moves by (+4, -2) and the height doubles.
    path = controlled_s3fd(tmp_path / "s3fd.pth", loc=(2.5, -1.25, 0.0, math.log(2) / 0.2))
    detector = face_detect.make_detector(f"s3fd:{path}", max_side=128)
    frame = np.full((256, 256, 3), 40, np.uint8)
    frame[96:104, 64:72] = (60, 60, 255)  # blue squares, 8 px on the grid: one conv3_3 cell each once the
    frame[32:40, 192:200] = (60, 60, 255)  # frame is shrunk to 128 px for detection
    frame[192:200, 128:136] = (255, 60, 60)  # red: a detector reading RGB as BGR would find a face here
    boxes = sorted(detector.detect(frame), key=lambda b: b.x1)
    # Cell (8, 12) has its anchor centred at (34, 50) in the 128 px frame: box (30, 32)-(46, 64) after the
    # regression, twice that in the frame's own pixels; cell (24, 4) likewise.
    assert [b.as_list() for b in boxes] == [[60.0, 64.0, 92.0, 128.0], [188.0, 0.0, 220.0, 64.0]]
    assert all(b.score == pytest.approx(1 / (1 + math.exp(-5)), abs=1e-4) for b in boxes)
    assert detector.detect(np.full((256, 256, 3), 40, np.uint8)) == []

    # Two neighbouring cells give boxes 4 px apart (IoU 0.6, over the NMS threshold of 0.3): one face.
    frame = np.full((256, 256, 3), 40, np.uint8)
    frame[96:104, 64:80] = (60, 60, 255)
    boxes = detector.detect(frame)
    assert len(boxes) == 1 and boxes[0].as_list() in ([60.0, 64.0, 92.0, 128.0], [68.0, 64.0, 100.0, 128.0])

    with pytest.raises(ValueError, match="WAV2LIP_FACE_DETECTOR"):
        face_detect.make_detector(f"s3fd:{tmp_path / 'missing.pth'}")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, str(wrong))
    with pytest.raises(ValueError, match="not an S3FD checkpoint"):
        face_detect.make_detector(f"s3fd:{wrong}")
