"""What an assembled film file must be before it is published: every frame decodes, as many
frames as the plan asks (so its duration is the plan's to a frame), and for the final cut one
audio track as long as the film. Dagster-free; ffmpeg does the reading (``media/ffmpeg.py``).

Decoding a whole film costs seconds, so each frame is decoded once: a clip's clean decode is kept
with its digest (a fact about those bytes, dropped when the file changes), a master joined by
stream copy from clean clips is checked by its packets (count, codec setup, duration), and a final
cut whose video packets are the checked master's is not decoded again. Any doubt falls back to
decoding the whole file."""

from __future__ import annotations

import hashlib
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sparkle_motion_dagster.media.ffmpeg import FfmpegError, decode_video, decoded_audio_seconds, ffmpeg_exe, probe
from sparkle_motion_dagster.store import integrity

CODEC_SETUP = "codec_setup"
"""The fact kept with a clip's digest: its video stream's extradata (size and MD5), which the clips
joined into one master must share."""
VIDEO_STREAM = "video_stream"
"""The key, in a checked master's file record, of its video stream's summary (codec setup, packet count,
digest of every packet's size and MD5): what a final cut copied from it is compared with."""
CLEAN_DECODE = "clean_decode_frames"
"""The fact kept with a clip's digest: how many frames it decoded to, without an error (the clips'
quality check learns it as it reads them; film/quality.py names the same fact)."""


class DamagedOutputError(ValueError):
    """A file just made is not what the plan asks for (a damaged input or a failed tool); the
    published file, if any, was left as it was."""


def video_problems(path: Path, *, frames: int, fps: float, audio: bool = False, decoded: bool = True) -> list[str]:
    """What is wrong with ``path`` against the plan (empty when nothing is): decoding errors, a frame
    count other than ``frames``, a container duration more than a frame away from ``frames / fps``,
    and with ``audio`` a missing audio track or one more than a frame longer or shorter than the film.
    With ``decoded=False`` the video frames are taken as checked already (see :func:`check_copied_video`)."""
    if not decoded:
        return _duration_and_audio(path, frames=frames, fps=fps, audio=audio)
    try:
        decoded_video = decode_video(path)
    except FfmpegError as error:
        return [f"it does not decode: {error}"]
    problems = _decoding_problems(decoded_video, frames)
    return problems + _duration_and_audio(path, frames=frames, fps=fps, audio=audio)


def _decoding_problems(decoded: dict, frames: int) -> list[str]:
    problems = []
    if decoded["errors"]:
        problems.append(f"the decoder found damaged data ({len(decoded['errors'])} error(s), first: "
                        f"{decoded['errors'][0]})")
    if decoded["frames"] != frames:
        problems.append(f"{decoded['frames']} frames decode, the plan has {frames}")
    return problems


def _duration_and_audio(path: Path, *, frames: int, fps: float, audio: bool) -> list[str]:
    problems = []
    seconds, frame = frames / fps, 1 / fps
    duration = probe(path)["duration_s"]
    if duration is None or abs(duration - seconds) > frame + 0.01:  # the header gives 0.01 s
        problems.append(f"it lasts {duration} s, the plan {round(seconds, 3)} s")
    if audio:
        try:
            heard = decoded_audio_seconds(path)
        except FfmpegError:
            problems.append("it has no audio track that decodes")
        else:
            if abs(heard - seconds) > frame:
                problems.append(f"its audio lasts {heard:.3f} s, the film {seconds:.3f} s")
    return problems


def check_video(path: Path, *, what: str, frames: int, fps: float, audio: bool = False) -> dict:
    """Raise :class:`DamagedOutputError` naming ``what`` and every problem, or return the measured
    facts (``frames``, ``duration_s``) for the catalog."""
    problems = video_problems(path, frames=frames, fps=fps, audio=audio)
    if problems:
        raise DamagedOutputError(f"{what}: not published: " + "; ".join(problems))
    return {"frames": frames, "duration_s": round(frames / fps, 6)}


def check_copied_video(path: Path, source: Path, *, what: str, frames: int, fps: float, audio: bool = False) -> dict:
    """:func:`check_video` for a file whose video stream should be ``source``'s, copied (the final cut
    muxed onto a checked master): when both carry the same codec setup and the same packets, byte for
    byte, and ``source`` is still the file its record describes, the frames are not decoded again;
    otherwise (a lip-synced shot was re-encoded, say) every frame is. The source's packets are read
    from its record when it keeps their summary (:data:`VIDEO_STREAM`), else from the file."""
    copied = stream_summary(_stream_digest(path))
    same = copied is not None and _trusted(source) and copied == _source_summary(source)
    problems = video_problems(path, frames=frames, fps=fps, audio=audio, decoded=not same)
    if problems:
        raise DamagedOutputError(f"{what}: not published: " + "; ".join(problems))
    return {"frames": frames, "duration_s": round(frames / fps, 6), "decoded": not same}


def joined_video_problems(path: Path, clips: list[tuple[Path, int]], *, fps: float) -> list[str] | None:
    """Whether a master joined by stream copy from ``clips`` (``(path, frames)`` in order) needs no
    decoding of its own: every clip decodes cleanly to its frames (each decoded once, kept with its
    digest; two at a time), they share one codec setup, and the master has their packets' count,
    that setup and the plan's duration. Returns [] when so, or None when that cannot be shown (the
    master must then be decoded, which also names what is wrong)."""
    return _joined(path, clips, fps=fps)[0]


def _joined(path: Path, clips: list[tuple[Path, int]], *, fps: float) -> tuple[list[str] | None, dict | None]:
    """:func:`joined_video_problems`, and the master's stream summary when it was read."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        clean = list(pool.map(lambda clip: _decodes_cleanly(*clip), clips))
        if not all(clean):
            return None, None
        setups = set(pool.map(lambda clip: _codec_setup(clip[0]), clips))
    master = _stream_digest(path)
    frames = sum(count for _, count in clips)
    if master["packets"] is None or setups != {master["extradata"]} or len(master["packets"]) != frames:
        return None, None
    return _duration_and_audio(path, frames=frames, fps=fps, audio=False) or [], stream_summary(master)


def check_joined_video(path: Path, clips: list[tuple[Path, int]], *, what: str, fps: float) -> dict:
    """:func:`check_video` for a master joined from ``clips``, decoding only what was never decoded
    (see :func:`joined_video_problems`). The result carries the master's :data:`VIDEO_STREAM` summary
    when its packets were read (for its file record)."""
    frames = sum(count for _, count in clips)
    problems, summary = _joined(path, clips, fps=fps)
    if problems == []:
        return {"frames": frames, "duration_s": round(frames / fps, 6), "decoded": False, VIDEO_STREAM: summary}
    return {**check_video(path, what=what, frames=frames, fps=fps), "decoded": True}


def stream_summary(digest: dict) -> dict | None:
    """A video stream's codec setup, packet count and one digest of every packet's size and MD5 (None
    when its packets could not be read)."""
    if not digest["packets"]:
        return None
    packets = hashlib.sha256("\n".join(f"{size},{md5}" for size, md5 in digest["packets"]).encode()).hexdigest()
    return {"extradata": digest["extradata"], "packets": len(digest["packets"]), "packets_sha256": packets}


def _source_summary(source: Path) -> dict | None:
    record = integrity.read_sidecar(source) or {}
    kept = record.get(VIDEO_STREAM)
    return kept if isinstance(kept, dict) else stream_summary(_stream_digest(source))


def _decodes_cleanly(path: Path, frames: int) -> bool:
    if integrity.remembered(path, CLEAN_DECODE) == frames:
        return True
    try:
        decoded = decode_video(path)
    except FfmpegError:
        return False
    if decoded["errors"] or decoded["frames"] != frames:
        return False
    integrity.remember(path, CLEAN_DECODE, frames)
    return True


def _codec_setup(clip: Path) -> str | None:
    """A clip's codec setup (its extradata's size and MD5), read once per content (from its first packet)."""
    kept = integrity.remembered(clip, CODEC_SETUP)
    if isinstance(kept, str):
        return kept
    setup = _stream_digest(clip, packets=1)["extradata"]
    if setup is not None:
        integrity.remember(clip, CODEC_SETUP, setup)
    return setup


def _trusted(source: Path) -> bool:
    """``source`` has a file record (written only after it was checked) and still matches it."""
    record = integrity.read_sidecar(source)
    return bool(record and integrity.FILE_KEY in record) and integrity.output_problem(source) is None


def _stream_digest(path: Path, *, packets: int | None = None) -> dict:
    """The first video stream's codec setup and each packet's size and MD5 (the first ``packets``
    only, when given), read without decoding (ffmpeg's ``framemd5`` of a stream copy); empty when
    ffmpeg cannot read it."""
    only = ["-frames:v", str(packets)] if packets else []
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
                             "-c", "copy", *only, "-f", "framemd5", "-"], capture_output=True)
    extradata, packets = None, []
    if result.returncode != 0:
        return {"extradata": None, "packets": None}
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith("#extradata"):
            extradata = line.split(",", 1)[1].strip()
        elif line and not line.startswith("#"):
            fields = [field.strip() for field in line.split(",")]
            packets.append((fields[4], fields[5]))
    return {"extradata": extradata, "packets": packets}
