"""The one media layer: encode, decode, probe and count frames through imageio-ffmpeg."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sparkle_motion_dagster.media.ffmpeg import (
    FfmpegError,
    FrameEncoder,
    count_video_frames,
    iter_video_frames,
    mux_audio,
    probe,
    run_ffmpeg,
)
from sparkle_motion_dagster.media.wav import wav_bytes
from sparkle_motion_dagster.insight.catalog import describe_file

WIDTH, HEIGHT, FPS, FRAMES = 96, 64, 12.0, 18


def gradient(index: int) -> np.ndarray:
    """A smooth frame that changes with ``index`` (easy for x264, so decoded pixels stay close)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frame = np.stack([x * 255 // WIDTH, y * 255 // HEIGHT, np.full_like(x, 12 * index)], axis=-1)
    return frame.astype(np.uint8)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    with FrameEncoder(path, width=WIDTH, height=HEIGHT, fps=FPS, keyframes=[5, 11]) as encoder:
        for index in range(FRAMES):
            encoder.write(gradient(index).tobytes())
    assert encoder.frames_written == FRAMES
    return path


def keyframe_numbers(path: Path) -> list[int]:
    log = run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-"]).stderr.decode()
    return [n for n, line in enumerate(l for l in log.splitlines() if "pts_time:" in l) if " type:I " in line]


def test_frames_decode_back_close_to_what_was_encoded(clip):
    frames = list(iter_video_frames(clip, WIDTH, HEIGHT))
    assert len(frames) == FRAMES == count_video_frames(clip)
    assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 and not f.flags.writeable for f in frames)
    for index in (0, 9, FRAMES - 1):
        assert np.abs(frames[index].astype(int) - gradient(index)).mean() < 3


def test_keyframes_are_forced_where_asked(clip):
    assert keyframe_numbers(clip) == [0, 5, 11]


def test_probe_reads_codecs_size_rate_and_duration(clip, tmp_path):
    info = probe(clip)
    assert info == {"video_codec": "h264", "audio_codec": None, "width": WIDTH, "height": HEIGHT, "fps": FPS,
                    "duration_s": pytest.approx(FRAMES / FPS, abs=0.01)}
    audio = tmp_path / "tone.wav"
    audio.write_bytes(wav_bytes(np.zeros(22050, dtype=np.int16), 22050))
    muxed = tmp_path / "muxed.mp4"
    mux_audio(clip, audio, muxed)
    assert probe(muxed)["audio_codec"] == "aac"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not an mp4")
    assert set(probe(junk).values()) == {None}


def test_the_catalog_describes_an_mp4_with_the_probe(clip, tmp_path):
    facts = describe_file(clip)
    assert (facts["media_type"], facts["width"], facts["height"]) == ("video", WIDTH, HEIGHT)
    assert facts["duration_s"] == pytest.approx(FRAMES / FPS, abs=0.01)


def test_yuv420p_frames_are_taken_as_planes(tmp_path):
    path = tmp_path / "grey.mp4"
    with FrameEncoder(path, width=WIDTH, height=HEIGHT, fps=FPS, pix_fmt="yuv420p") as encoder:
        for _ in range(3):
            encoder.write(bytes([126]) * (WIDTH * HEIGHT) + bytes([128]) * (WIDTH * HEIGHT // 2))
    frames = list(iter_video_frames(path))
    assert len(frames) == 3 and np.abs(frames[1].astype(int) - 128).max() <= 3  # Y 126 is RGB ~128 grey


def test_an_encode_that_ffmpeg_fails_raises_instead_of_passing(tmp_path):
    # One small frame fits in the pipe, so only the exit status tells that ffmpeg could not write the file.
    with pytest.raises(FfmpegError, match="exit status"):
        with FrameEncoder(tmp_path / "missing" / "x.mp4", width=WIDTH, height=HEIGHT, fps=FPS) as encoder:
            encoder.write(gradient(0).tobytes())


def test_an_error_inside_the_block_stops_ffmpeg_and_propagates(tmp_path):
    with pytest.raises(KeyError):
        with FrameEncoder(tmp_path / "x.mp4", width=WIDTH, height=HEIGHT, fps=FPS) as encoder:
            encoder.write(gradient(0).tobytes())
            raise KeyError("the renderer failed")
    assert encoder._process.returncode is not None


def test_decoding_checks_the_size_and_stops_early(clip):
    with pytest.raises(ValueError, match=f"{WIDTH}x{HEIGHT}, expected 32x32"):
        next(iter_video_frames(clip, 32, 32))
    frames = iter_video_frames(clip)
    next(frames)
    started = time.perf_counter()
    frames.close()  # stops ffmpeg without reading the rest
    assert time.perf_counter() - started < 1.0


def test_unreadable_and_truncated_files_raise_ffmpeg_errors(clip, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not an mp4")
    with pytest.raises(FfmpegError, match="decoding"):
        list(iter_video_frames(junk))
    with pytest.raises(FfmpegError, match="counting"):
        count_video_frames(junk)
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FfmpegError, match="decoding"):
        list(iter_video_frames(truncated))
