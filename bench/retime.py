"""What the motion-compensated retime costs next to the blend (the floor), on one Wan-sized clip.

A 5 s shot generated at 16 fps (81 frames) retimed to 24 fps (121 frames), at
Wan's 480p generation size by default. Prints seconds per clip for the blend,
the motion retime in one ffmpeg and cut into one piece per CPU, and the ratios
to the blend measured in the same run.

    python bench/retime.py [--size 832x480] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from sparkle_motion_dagster.media.retime import blend_frames, motion_frames


def moving_clip(frames: int, width: int, height: int) -> np.ndarray:
    """Textured background with a bright block crossing it: motion for the estimator to find."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 200, size=(height, width, 3), dtype=np.uint8)
    video = np.repeat(background[None], frames, axis=0)
    for index in range(frames):
        x = int(index * (width - 64) / max(frames - 1, 1))
        video[index, height // 3: height // 3 + 64, x:x + 64] = 255
    return video


def timed(retimer, video: np.ndarray, count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        frames = list(retimer(video, count))
        best = min(best, time.perf_counter() - start)
        assert len(frames) == count
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    video = moving_clip(81, width, height)
    cores = len(os.sched_getaffinity(0))
    floor = timed(blend_frames, video, 121, args.repeats)
    one = timed(lambda v, c: motion_frames(v, c, workers=1), video, 121, args.repeats)
    every = timed(lambda v, c: motion_frames(v, c, workers=cores), video, 121, args.repeats)
    print(f"retime 81 -> 121 frames at {width}x{height} (best of {args.repeats}, {cores} CPUs)")
    print(f"  blend  (floor)          {floor:8.2f} s")
    print(f"  motion, one ffmpeg      {one:8.2f} s   {one / floor:6.1f}x the blend")
    print(f"  motion, {cores} pieces       {every:8.2f} s   {every / floor:6.1f}x the blend")


if __name__ == "__main__":
    main()
