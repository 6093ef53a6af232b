"""ffmpeg helpers (the static binary from the imageio-ffmpeg wheel).

Encoding happens once, when frames are piped in; everything after that
(concatenation, muxing) copies the encoded stream.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

VIDEO_CODEC_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]


class FfmpegError(RuntimeError):
    pass


@functools.cache
def ffmpeg_exe() -> str:
    configured = os.environ.get("FFMPEG_PATH")
    if configured:
        return configured
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    if stdin is not None:
        cmd.remove("-nostdin")
    result = subprocess.run(cmd, input=stdin, capture_output=True)
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip().splitlines()[-8:]
        raise FfmpegError(f"ffmpeg failed ({result.returncode}): " + "\n".join(tail))
    return result


# Bytes per pixel of the raw frame formats FrameEncoder takes.
RAW_PIXEL_BYTES = {"rgb24": 3.0, "yuv420p": 1.5}


class FrameEncoder:
    """Pipe raw frames (``rgb24`` by default, or ``yuv420p``) into libx264. Use as a context manager."""

    def __init__(self, out_path: Path, *, width: int, height: int, fps: float, pix_fmt: str = "rgb24"):
        if pix_fmt not in RAW_PIXEL_BYTES:
            raise ValueError(f"pix_fmt: {pix_fmt!r} is not one of {', '.join(RAW_PIXEL_BYTES)}")
        self.out_path = out_path
        self.frame_bytes = int(width * height * RAW_PIXEL_BYTES[pix_fmt])
        self.frames_written = 0
        self._proc = subprocess.Popen(
            [
                ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}", "-r", f"{fps:g}",
                "-i", "-", "-an", *VIDEO_CODEC_ARGS, "-movflags", "+faststart", str(out_path),
            ],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def write(self, frame: bytes | memoryview) -> None:
        if len(frame) != self.frame_bytes:
            raise ValueError(f"frame has {len(frame)} bytes, expected {self.frame_bytes}")
        assert self._proc.stdin is not None
        self._proc.stdin.write(frame)
        self.frames_written += 1

    def __enter__(self) -> "FrameEncoder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        if exc_type is not None:
            self._proc.kill()
            self._proc.wait()
            return
        stderr = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
        if self._proc.wait() != 0:
            raise FfmpegError(f"ffmpeg encode failed: {stderr.strip()[-800:]}")


def concat_copy(clips: list[Path], out_path: Path, list_path: Path) -> None:
    """Join video-only clips with the concat demuxer, copying the stream."""
    list_path.write_text("".join(f"file '{clip.as_posix()}'\n" for clip in clips))
    run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(list_path), "-map", "0:v", "-c", "copy",
                "-movflags", "+faststart", str(out_path)])


def mux_audio(video: Path, audio: Path, out_path: Path, *, audio_bitrate: str = "160k") -> None:
    """Copy the video stream and encode one continuous AAC track beside it."""
    run_ffmpeg(["-i", str(video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                "-c:a", "aac", "-b:a", audio_bitrate, "-movflags", "+faststart", str(out_path)])


def extract_frame_png(video: Path, *, at_sec: float = 0.0) -> bytes:
    result = run_ffmpeg(["-ss", f"{at_sec:.3f}", "-i", str(video), "-frames:v", "1", "-f", "image2pipe",
                         "-vcodec", "png", "-"])
    return result.stdout


_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): (\w+)")
_SIZE = re.compile(r", (\d{2,5})x(\d{2,5})[, ]")
_FPS = re.compile(r", ([\d.]+) fps")


def probe(path: Path) -> dict:
    """Stream facts from ``ffmpeg -i`` (the wheel ships no ffprobe)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True)
    text = result.stderr.decode(errors="replace")
    info: dict = {"video_codec": None, "audio_codec": None, "width": None, "height": None, "fps": None}
    for line in text.splitlines():
        match = _STREAM.search(line)
        if not match:
            continue
        kind, codec = match.groups()
        if kind == "Video" and info["video_codec"] is None:
            info["video_codec"] = codec
            if size := _SIZE.search(line):
                info["width"], info["height"] = int(size.group(1)), int(size.group(2))
            if fps := _FPS.search(line):
                info["fps"] = float(fps.group(1))
        elif kind == "Audio" and info["audio_codec"] is None:
            info["audio_codec"] = codec
    return info


def count_video_frames(path: Path) -> int:
    """Decode every frame and count them (exact, unlike container durations)."""
    result = run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-"])
    return sum(1 for line in result.stdout.decode().splitlines() if line and not line.startswith("#"))


def decoded_audio_seconds(path: Path, *, sample_rate: int = 48000) -> float:
    """Decode the first audio track and measure it in samples."""
    result = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", str(sample_rate), "-"])
    return len(result.stdout) / 2 / sample_rate
