"""Video encode, decode, probe and frame counting, and the stream-copy steps, on one ffmpeg.

Frames go in and out through imageio-ffmpeg's ``write_frames``/``read_frames``
(the static binary from its wheel, or ``FFMPEG_PATH``). Encoding happens once,
when frames are piped in; everything after that (concatenation, muxing) copies
the encoded stream, so every clip shares the codec settings below.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import imageio_ffmpeg
import numpy as np

# One set of codec settings for every encoded clip: clips join by stream copy only when they match.
VIDEO_CODEC = "libx264"
VIDEO_PIX_FMT = "yuv420p"
VIDEO_QUALITY_ARGS = ["-preset", "veryfast", "-crf", "20"]
# Bytes per pixel of the raw frame formats FrameEncoder takes.
RAW_PIXEL_BYTES = {"rgb24": 3.0, "yuv420p": 1.5}


class FfmpegError(RuntimeError):
    """ffmpeg failed. :attr:`refused_input` tells a refusal of what it was given from a failure
    of the moment (see its docstring)."""

    # What ffmpeg prints when it refuses its input or arguments: the same call fails the same way again.
    REFUSALS = ("Invalid data found when processing input", "No such file or directory", "Invalid argument",
                "matches no streams", "does not contain any stream", "Output file is empty, nothing was encoded",
                "moov atom not found", "Unrecognized option", "Option not found", "Unknown encoder",
                "Unknown decoder", "Invalid frame dimensions", "not divisible by 2",
                "Error splitting the argument list",
                # a damaged file: a header cut short ("reached eof, corrupted STSD atom") or overwritten
                "error reading header", "Error opening input: End of file", "corrupted")
    # What it prints when the machine, not the input, was the problem: another attempt may succeed.
    CIRCUMSTANCES = ("No space left on device", "Cannot allocate memory", "Resource temporarily unavailable",
                     "Input/output error", "received signal", "Connection", "timed out")
    _STATUS = re.compile(r"\((?:exit status )?(-?\d+)[);]")

    @property
    def refused_input(self) -> bool:
        """True when ffmpeg ended by itself with an error status and said it refuses its input or
        arguments (an empty or broken clip, a missing file, an option it does not take), and said
        nothing about the machine (disk full, out of memory, a signal). An ffmpeg killed by a
        signal (negative status, or 255 after it caught one) is never a refusal."""
        text = str(self)
        status = self._STATUS.search(text)
        if status and (int(status.group(1)) < 0 or int(status.group(1)) == 255):
            return False
        if any(marker in text for marker in self.CIRCUMSTANCES):
            return False
        return any(marker in text for marker in self.REFUSALS)


@functools.cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary: ``FFMPEG_PATH`` when set, else the one in the imageio-ffmpeg wheel.

    imageio-ffmpeg's readers and writers look the binary up in ``IMAGEIO_FFMPEG_EXE``;
    ``FFMPEG_PATH`` is copied there so that every call runs the same ffmpeg.
    """
    configured = os.environ.get("FFMPEG_PATH")
    if configured:
        os.environ["IMAGEIO_FFMPEG_EXE"] = configured
        return configured
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


# --- encoding -------------------------------------------------------------------


class FrameEncoder:
    """Raw frames (``rgb24`` by default, or ``yuv420p``) into an H.264 MP4 with the project's codec settings.

    Use as a context manager; ``write`` takes one frame's bytes. ``keyframes`` forces
    keyframes at those frame numbers. Leaving the block with an error stops ffmpeg;
    leaving it normally waits for ffmpeg and raises :class:`FfmpegError` unless it
    succeeded (imageio-ffmpeg does not check its exit status itself).
    """

    def __init__(self, out_path: Path, *, width: int, height: int, fps: float, pix_fmt: str = "rgb24",
                 keyframes: Sequence[int] = ()):
        if pix_fmt not in RAW_PIXEL_BYTES:
            raise ValueError(f"pix_fmt: {pix_fmt!r} is not one of {', '.join(RAW_PIXEL_BYTES)}")
        if not fps > 0:  # imageio-ffmpeg would quietly take 16 fps for 0
            raise ValueError(f"fps: must be positive, got {fps!r}")
        self.out_path = Path(out_path)
        self.frame_bytes = int(width * height * RAW_PIXEL_BYTES[pix_fmt])
        self.frames_written = 0
        marks = sorted({int(k) for k in keyframes if int(k) > 0})
        force = ["-force_key_frames", "expr:" + "+".join(f"eq(n,{k})" for k in marks)] if marks else []
        ffmpeg_exe()  # sets the binary imageio-ffmpeg runs
        self._writer = imageio_ffmpeg.write_frames(
            str(self.out_path), (int(width), int(height)), pix_fmt_in=pix_fmt, pix_fmt_out=VIDEO_PIX_FMT, fps=float(fps),
            codec=VIDEO_CODEC, quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=[*VIDEO_QUALITY_ARGS, *force, "-movflags", "+faststart"])
        self._writer.send(None)  # starts ffmpeg
        self._process = _ffmpeg_process(self._writer, "p")

    def write(self, frame: bytes | memoryview) -> None:
        if len(frame) != self.frame_bytes:
            raise ValueError(f"frame has {len(frame)} bytes, expected {self.frame_bytes}")
        try:
            self._writer.send(frame)
        except OSError as error:
            self._process.wait()
            raise FfmpegError(f"ffmpeg encode of {self.out_path.name} stopped "
                              f"(exit status {self._process.returncode}; ffmpeg's message is on stderr)") from error
        self.frames_written += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._process.kill()
        self._writer.close()  # closes ffmpeg's input and waits for it
        if exc_type is None and self._process.returncode != 0:
            raise FfmpegError(f"ffmpeg encode of {self.out_path.name} failed "
                              f"(exit status {self._process.returncode}; ffmpeg's message is on stderr)")


def _ffmpeg_process(generator, local_name: str) -> subprocess.Popen:
    """The ffmpeg process of a started imageio-ffmpeg reader or writer (a local of the generator), so that
    its exit status can be checked; imageio-ffmpeg itself ignores it."""
    process = inspect.getgeneratorlocals(generator).get(local_name)
    if not isinstance(process, subprocess.Popen):
        generator.close()
        raise RuntimeError(f"imageio-ffmpeg {imageio_ffmpeg.__version__} no longer keeps its ffmpeg process in "
                           f"{local_name!r}; the version pinned in pyproject.toml does")
    return process


# --- decoding, probing, counting -------------------------------------------------


def iter_video_frames(path: Path, width: int | None = None, height: int | None = None) -> Iterator[np.ndarray]:
    """Every frame of the first video stream as a read-only ``(height, width, 3)`` uint8 RGB array.

    ``width``/``height``, when given, are checked against the decoded size. Frames come
    as they are stored (no frame is duplicated or dropped). Closing the generator early
    stops ffmpeg; an ffmpeg that fails before the end raises :class:`FfmpegError`.
    """
    ffmpeg_exe()
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24",
                                        output_params=["-map", "0:v:0", "-fps_mode", "passthrough"])
    try:
        try:
            meta = next(reader)
        except (OSError, IndexError, AttributeError) as error:  # no header, or one without a video stream
            raise FfmpegError(f"decoding {path} failed: {_last_lines(str(error))}") from error
        process = _ffmpeg_process(reader, "process")
        size_w, size_h = meta["size"]
        if (width, height) != (None, None) and (width, height) != (size_w, size_h):
            raise ValueError(f"{path}: frames are {size_w}x{size_h}, expected {width}x{height}")
        for data in reader:
            yield np.frombuffer(data, dtype=np.uint8).reshape(size_h, size_w, 3)
    finally:
        reader.close()
    if process.wait() != 0:  # reached only when every frame was read
        raise FfmpegError(f"decoding {path} failed: ffmpeg exited with status {process.returncode}")


_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): (\w+)")
_SIZE = re.compile(r", (\d{2,5})x(\d{2,5})[, ]")
_FPS = re.compile(r", ([\d.]+) fps")
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", re.M)


def probe(path: Path) -> dict[str, Any]:
    """Container and stream facts from the header ffmpeg prints for ``-i`` (the wheel ships no ffprobe).

    Keys: ``video_codec``, ``audio_codec``, ``width``, ``height``, ``fps`` (of the first
    video stream) and ``duration_s`` (the container's, to 0.01 s); None where the file
    does not say or ffmpeg cannot read it. One ffmpeg start, about 15 ms; no decoding. The answer is
    kept for the process while the file is unchanged (same size, times and inode): a stage and its
    check read the same header.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return _probe(str(path))
    return dict(_probe_unchanged(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))


@functools.lru_cache(maxsize=256)
def _probe_unchanged(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> dict[str, Any]:
    return _probe(path)


def _probe(path: str) -> dict[str, Any]:
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True)
    text = result.stderr.decode(errors="replace")
    info: dict[str, Any] = {"video_codec": None, "audio_codec": None, "width": None, "height": None, "fps": None,
                            "duration_s": None}
    if duration := _DURATION.search(text):
        hours, minutes, seconds = duration.groups()
        info["duration_s"] = round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 6)
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
    """Decode the first video stream and count its frames (exact, unlike container durations)."""
    ffmpeg_exe()
    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except RuntimeError as error:
        raise FfmpegError(f"counting the frames of {path} failed: {_last_lines(str(error))}") from error
    return frames


_PROGRESS_FRAME = re.compile(rb"^frame=(\d+)\s*$", re.M)


def decode_video(path: Path) -> dict[str, Any]:
    """Decode every frame of the first video stream (no frame duplicated or dropped) and count them.

    Returns ``frames`` and ``errors`` (what the decoder said about damaged data, first lines
    first). Unlike :func:`count_video_frames` nothing is taken from the container: a clip
    whose second half is overwritten decodes to fewer frames, with errors. Raises
    :class:`FfmpegError` when ffmpeg cannot read the file at all."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
                             "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "null", "-progress", "pipe:1",
                             "-nostats", "-"], capture_output=True)
    errors = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
    if result.returncode != 0:
        raise FfmpegError(f"decoding {path} failed ({result.returncode}): " + "\n".join(errors[-4:]))
    counts = _PROGRESS_FRAME.findall(result.stdout)
    return {"frames": int(counts[-1]) if counts else 0, "errors": errors}


def _last_lines(message: str, count: int = 4) -> str:
    """The end of an error message that carries ffmpeg's whole log (banner first)."""
    return "\n".join([line for line in message.splitlines() if line.strip()][-count:])


# --- stream copy, muxing, stills, audio ------------------------------------------


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


def decoded_audio_seconds(path: Path, *, sample_rate: int = 48000) -> float:
    """Decode the first audio track and measure it in samples."""
    result = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", str(sample_rate), "-"])
    return len(result.stdout) / 2 / sample_rate
