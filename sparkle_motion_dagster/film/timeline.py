"""Timeline arithmetic shared by the clip, audio and assembly stages."""

from __future__ import annotations


def shot_frame_counts(durations_sec: list[float], fps: float) -> list[int]:
    """Frames per shot, rounded on the cumulative clock.

    Rounding each shot alone would let the error grow with the number of shots;
    rounding the running end time keeps the whole film within half a frame of
    the planned runtime while each shot stays within one frame of
    ``duration * fps`` (exactly that when it is a whole number).
    """
    counts: list[int] = []
    elapsed = 0.0
    previous_frame = 0
    for duration in durations_sec:
        elapsed += duration
        end_frame = round(elapsed * fps + 1e-9)
        counts.append(end_frame - previous_frame)
        previous_frame = end_frame
    return counts


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    return int(round(seconds * sample_rate))


def format_timestamp(seconds: float, *, separator: str) -> str:
    """``HH:MM:SS<sep>mmm`` as SRT (``,``) and WebVTT (``.``) want it."""
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
