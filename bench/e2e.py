"""End-to-end speed of the embedded pipeline against two ffmpeg-only references.

Runs ``sparkle-motion run --sample --preview`` (the seed's sample plan) through
the console script and, in the same run, times ffmpeg alone encoding the same
frames at the same size with libx264 veryfast, two ways:

* ``encode_floor``: one libx264 encoder fed the whole film as RGB (the
  reference the figures have always used: it includes a colour conversion the
  animatic does not pay);
* ``yuv_parallel_floor``: a true floor for the animatic: the film's own YUV
  4:2:0 frames, shot by shot, encoded with the animatic's settings by as many
  encoders side by side as the animatic runs (``AnimaticClips.parallel_shots``).

The first film goes into a fresh state folder, so it also creates the
Dagster instance's SQLite storage, a one-time cost reported on its own
(``first_run_over_encode_floor``); the next ``--repeats`` films (default 3) run
on that instance as every later run does, and their median against the median
floor is ``e2e_over_encode_floor``. Medians, because a shared machine's noise
swings single timings by 10%. Also prints per-stage times of the median film
and the peak RSS of the runs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sparkle_motion_dagster.media.ffmpeg import VIDEO_QUALITY_ARGS, ffmpeg_exe, probe
from sparkle_motion_dagster.resources.clips.animatic import AnimaticClips
from sparkle_motion_dagster.stages import folder


def run_film(state: Path) -> tuple[float, int, str, float]:
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state)}
    env.pop("DAGSTER_HOME", None)
    env.pop("ARTIFACTS_FS_ROOT", None)
    started = time.perf_counter()
    # The console script, as a user runs it (``python -m`` would compile the CLI module every time).
    script = Path(sys.executable).with_name("sparkle-motion")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sparkle_motion_dagster.cli"]
    proc = subprocess.Popen([*command, "run", "--sample", "--preview"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the film run failed:\n{out}\n{err}")
    # CPU seconds of the film's process and its ffmpeg children: what the film costs, whatever else
    # the machine is doing (wall-clock time on a shared machine swings far more).
    return elapsed, usage.ru_maxrss * 1024, out, usage.ru_utime + usage.ru_stime


def encode_floor(final: Path, workdir: Path) -> tuple[float, int]:
    info = probe(final)
    raw = workdir / "frames.rgb"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(final), "-map", "0:v", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", str(raw)], check=True)
    frames = raw.stat().st_size // (info["width"] * info["height"] * 3)
    started = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{info['width']}x{info['height']}", "-r", f"{info['fps']:g}", "-i", str(raw),
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                    str(workdir / "floor.mp4")], check=True)
    return time.perf_counter() - started, frames


def yuv_parallel_floor(final: Path, workdir: Path) -> float:
    """Seconds for the animatic's number of encoders to encode the film's shots from raw YUV 4:2:0."""
    clips = sorted((final.parent.parent / folder("video_clips")).glob("*.mp4"))
    jobs = []
    for index, clip in enumerate(clips):
        info = probe(clip)
        raw = workdir / f"shot{index}.yuv"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-f", "rawvideo",
                        "-pix_fmt", "yuv420p", str(raw)], check=True)
        jobs.append([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                     "-s", f"{info['width']}x{info['height']}", "-r", f"{info['fps']:g}", "-i", str(raw),
                     "-c:v", "libx264", *VIDEO_QUALITY_ARGS, "-pix_fmt", "yuv420p", str(workdir / f"shot{index}.mp4")])
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=AnimaticClips.parallel_shots) as pool:
        list(pool.map(lambda command: subprocess.run(command, check=True), jobs))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="films after the first to take the median of")
    repeats = max(1, parser.parse_args().repeats)
    films, floors, yuv_floors = [], [], []
    with tempfile.TemporaryDirectory(prefix="sparkle-bench-") as tmp:
        tmp_path = Path(tmp)
        for attempt in range(repeats + 1):
            elapsed, peak_rss, out, cpu = run_film(tmp_path / "state")
            final = Path(re.search(r"^video_final: (.+)$", out, re.M).group(1))
            floor, frames = encode_floor(final, tmp_path)
            yuv_floor = yuv_parallel_floor(final, tmp_path)
            films.append((elapsed, peak_rss, out, cpu))
            floors.append(floor)
            yuv_floors.append(yuv_floor)
            label = "first run (creates the instance)" if attempt == 0 else f"run {attempt}"
            print(f"{label}: e2e {elapsed:.2f} s (cpu {cpu:.2f} s), encode floor {floor:.2f} s, yuv parallel floor {yuv_floor:.2f} s",
                  flush=True)
    first, films = films[0], films[1:]
    elapsed = statistics.median(f[0] for f in films)
    floor = statistics.median(floors)
    yuv_floor = statistics.median(yuv_floors)
    _, peak_rss, out, _ = min(films, key=lambda f: abs(f[0] - elapsed))
    stages = re.findall(r"^  (\w+)\s+ok\s+([\d.]+) s$", out, re.M)
    film_seconds = float(re.search(r"^done in ([\d.]+) s$", out, re.M).group(1))
    print(f"frames={frames}")
    for stage, seconds in stages:
        print(f"stage {stage:<18} {float(seconds):6.2f} s")
    print(f"e2e_seconds={elapsed:.2f} (of which filming {film_seconds:.2f}, the rest is process start-up)")
    print(f"film_cpu_seconds={statistics.median(f[3] for f in films):.2f}  (user + system, the CLI and its children)")
    print(f"encode_floor_seconds={floor:.2f}  (one libx264 encoder fed RGB)")
    print(f"yuv_parallel_floor_seconds={yuv_floor:.2f}  (the film's YUV 4:2:0 shots, "
          f"{AnimaticClips.parallel_shots} encoders side by side, the animatic's settings)")
    print(f"peak_rss_mb={max(f[1] for f in [first, *films]) / 2**20:.0f}")
    print(f"film_over_encode_floor={film_seconds / floor:.2f}")
    print(f"first_run_over_encode_floor={first[0] / floor:.2f}")
    print(f"e2e_over_encode_floor={elapsed / floor:.2f}")
    print(f"film_over_yuv_parallel_floor={film_seconds / yuv_floor:.2f}")
    print(f"e2e_over_yuv_parallel_floor={elapsed / yuv_floor:.2f}")


if __name__ == "__main__":
    main()
