"""What an assembled film file must be before it is published: every frame decodes, as many
frames as the plan asks (so its duration is the plan's to a frame), and for the final cut one
audio track as long as the film. Dagster-free; ffmpeg does the reading (``media/ffmpeg.py``)."""

from __future__ import annotations

from pathlib import Path

from sparkle_motion_dagster.media.ffmpeg import FfmpegError, decode_video, decoded_audio_seconds, probe


class DamagedOutputError(ValueError):
    """A file just made is not what the plan asks for (a damaged input or a failed tool); the
    published file, if any, was left as it was."""


def video_problems(path: Path, *, frames: int, fps: float, audio: bool = False) -> list[str]:
    """What is wrong with ``path`` against the plan (empty when nothing is): decoding errors, a frame
    count other than ``frames``, a container duration more than a frame away from ``frames / fps``,
    and with ``audio`` a missing audio track or one more than a frame longer or shorter than the film."""
    try:
        decoded = decode_video(path)
    except FfmpegError as error:
        return [f"it does not decode: {error}"]
    problems = []
    if decoded["errors"]:
        problems.append(f"the decoder found damaged data ({len(decoded['errors'])} error(s), first: "
                        f"{decoded['errors'][0]})")
    if decoded["frames"] != frames:
        problems.append(f"{decoded['frames']} frames decode, the plan has {frames}")
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
