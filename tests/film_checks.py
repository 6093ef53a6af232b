"""Shared by the tests that check rendered films: the CLI driven in this process, and what real
ffmpeg (the imageio-ffmpeg binary) reads back from the files."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RUN_ID = re.compile(r"\brun_[0-9a-f]{8,32}\b")


# ---------------------------------------------------------------------- the command line, in process


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def run_id(self) -> str:
        match = RUN_ID.search(self.stdout)
        assert match, f"no run id in the output:\n{self.stdout}\n{self.stderr}"
        return match.group(0)


def sparkle(*args: str) -> CliResult:
    """``sparkle-motion ARGS`` through the CLI's ``main``, in this process (no interpreter start-up)."""
    from sparkle_motion_dagster.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def use_state(patch, state: Path) -> None:
    """Point the state folder, DAGSTER_HOME and the artifact root at ``state`` for the CLI in this process,
    with every model adapter left to its embedded default."""
    patch.setenv("SPARKLE_STATE_DIR", str(state))
    patch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    patch.delenv("ARTIFACTS_FS_ROOT", raising=False)
    patch.delenv("ARTIFACTS_FS_INDEX", raising=False)


def small_plan(folder: Path, *, shots: int = 4, seconds: float = 1.0, fps: int = 12, size=(160, 90),
               name: str = "plan.json", **changes) -> Path:
    """A plan on the embedded animatic: ``shots`` shots between ``shots + 1`` distinct keyframes, one line."""
    frames = [{"id": f"frame_{i:03d}", "prompt": f"Keyframe {i}: a harbour at dusk, boat {i}",
               "metadata": {"seed": 100 + i}} for i in range(shots + 1)]
    plan = {
        "title": "Harbour",
        "characters": [{"id": "ava", "name": "Ava"}],
        "base_images": frames,
        "shots": [{"id": f"shot_{i + 1:03d}", "duration_sec": seconds, "start_base_image_id": f"frame_{i:03d}",
                   "end_base_image_id": f"frame_{i + 1:03d}", "motion_prompt": f"drift {i}"} for i in range(shots)],
        "dialogue_timeline": [{"type": "dialogue", "character_id": "ava", "text": "The boats are back.",
                               "start_time_sec": 0.5, "duration_sec": 1.5}],
        "render_profile": {"video": {"model_id": "animatic", "max_fps": fps, "width": size[0], "height": size[1]}},
    }
    plan.update(changes)
    path = folder / name
    path.write_text(json.dumps(plan))
    return path


def identity(path: Path) -> tuple[int, int]:
    """(inode, mtime): every write is a rename of a new file, so a rewritten file changes both."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def sidecar(path: Path) -> Path:
    """Where a rendered item's fingerprint is kept (README: "beside each output in .meta/")."""
    return path.parent / ".meta" / f"{path.name}.json"


def latest_metadata(instance, asset: str, run_id: str) -> dict:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[run_id]), limit=1).records
    assert records, f"{asset} has no materialization for {run_id}"
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


# ---------------------------------------------------------------------- reading media back with real ffmpeg


def ffmpeg() -> str:
    import imageio_ffmpeg

    return os.environ.get("FFMPEG_PATH") or imageio_ffmpeg.get_ffmpeg_exe()


def _run(*args: str) -> bytes:
    result = subprocess.run([ffmpeg(), "-hide_banner", "-nostdin", *args], capture_output=True)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout


_STREAM = re.compile(r"Stream #\d+:\d+[^:]*: (Video|Audio|Subtitle|Data): (\w+)")


def streams(path: Path) -> list[tuple[str, str]]:
    """Every stream of the file as (kind, codec), in order, from ``ffmpeg -i``."""
    probe = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True)
    text = probe.stderr.decode(errors="replace")
    return [match.groups() for match in map(_STREAM.search, text.splitlines()) if match]


def frame_md5s(path: Path) -> list[str]:
    """The MD5 of every decoded video frame."""
    out = _run("-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-").decode()
    return [line.rsplit(",", 1)[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def decode_rgb(path: Path, width: int, height: int) -> np.ndarray:
    """Every video frame as RGB, shape (frames, height, width, 3)."""
    raw = _run("-i", str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def audio_seconds(path: Path, rate: int = 48000) -> float:
    """The decoded length of the first audio stream."""
    return len(_run("-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", str(rate), "-")) / 2 / rate
