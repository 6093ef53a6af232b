"""Temporary files live under the state folder and are cleared once their writer is gone."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sparkle_motion_dagster.store.scratch import (
    clear_stale_scratch,
    make_scratch_dir,
    scratch_root,
)
from sparkle_motion_dagster.store.storage import (
    TEMP_MARKER,
    is_stale_temp,
    temp_writer_pid,
)

SPEAK_THEN_DIE = """
import os, signal
from sparkle_motion_dagster.media import espeak
engine = espeak.engine()
engine.synthesize("hello", espeak.EspeakVoice("en-us+" + espeak.VARIANT_PREFIX + "f1", 160, 50))
print(engine.data_dir, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
SPEAK_AND_EXIT = """
from sparkle_motion_dagster.media import espeak
print(espeak.engine().data_dir, flush=True)
"""
RECORD = """
import sys
from sparkle_motion_dagster.insight.catalog import Catalog
Catalog(sys.argv[1]).record({"run_id": "run_9c29599b", "stage": "x", "local_path": "/tmp/a.png"})
"""


def _python(code: str, env: dict, *args: str, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temp_names_carry_their_writer():
    assert temp_writer_pid(f"espeak{TEMP_MARKER}4242-x1y2") == 4242
    assert temp_writer_pid(f"frame_000{TEMP_MARKER}17-abc.png") == 17
    assert temp_writer_pid("frame_000.png") is None and temp_writer_pid(f"a{TEMP_MARKER}x-1") is None
    assert not is_stale_temp(f"a{TEMP_MARKER}{os.getpid()}-1")
    assert is_stale_temp(f"a{TEMP_MARKER}{_gone_pid()}-1")


def test_a_killed_speaker_leaves_nothing_outside_the_state_folder_and_the_next_run_clears_it(isolated_state,
                                                                                             tmp_path):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = {**os.environ, "SPARKLE_STATE_DIR": str(isolated_state), "TMPDIR": str(system_tmp)}
    overlay = Path(_python(SPEAK_THEN_DIE, env, check=False))
    assert overlay.parent == scratch_root() and overlay.is_relative_to(isolated_state)
    assert overlay.is_dir()  # killed: it could not clean up after itself
    assert list(system_tmp.iterdir()) == []

    # The next process that speaks clears it (and removes its own overlay when it exits).
    second = Path(_python(SPEAK_AND_EXIT, env))
    assert second.parent == scratch_root() and not overlay.exists() and not second.exists()

    # So does the first record of the next run or resume, whatever its speech engine.
    overlay = Path(_python(SPEAK_THEN_DIE, env, check=False))
    assert overlay.is_dir()
    _python(RECORD, env, str(isolated_state / "artifacts"))
    assert not overlay.exists()
    assert list(system_tmp.iterdir()) == []


def test_scratch_folders_of_live_writers_are_kept(isolated_state):
    mine = make_scratch_dir("espeak")
    stale = scratch_root() / f"espeak{TEMP_MARKER}{_gone_pid()}-zz"
    (stale / "voices").mkdir(parents=True)
    not_temporary = scratch_root() / "notes.txt"
    not_temporary.write_text("kept")
    assert clear_stale_scratch() == 1
    assert mine.is_dir() and not stale.exists() and not_temporary.exists()


def test_a_path_too_long_for_a_library_goes_to_the_system_temp_folder_and_is_cleared_too(isolated_state,
                                                                                         tmp_path, monkeypatch):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    short = make_scratch_dir("espeak", max_path_length=10)
    assert short.parent == system_tmp and short.name.startswith(f"sparkle-espeak{TEMP_MARKER}{os.getpid()}-")
    stale = system_tmp / f"sparkle-espeak{TEMP_MARKER}{_gone_pid()}-abcdefgh"
    stale.mkdir()
    unrelated = system_tmp / f"other{TEMP_MARKER}{_gone_pid()}-abcdefgh"
    unrelated.mkdir()
    assert clear_stale_scratch() == 1
    assert short.is_dir() and not stale.exists() and unrelated.exists()


def test_a_stage_clears_what_a_killed_writer_left_beside_its_files_sidecars_and_provenance_records(tmp_path):
    from sparkle_motion_dagster.assets.stage import _clear_stale_partials

    folder, records = tmp_path / "video_clips", tmp_path / ".provenance" / "video_clips"
    (folder / ".meta").mkdir(parents=True)
    records.mkdir(parents=True)
    gone = _gone_pid()
    left = [folder / f"shot_001.mp4{TEMP_MARKER}{gone}-a1", folder / ".meta" / f"shot_001.mp4{TEMP_MARKER}{gone}-b2.json",
            records / f"shot_001.mp4{TEMP_MARKER}{gone}-c3.json"]
    other_item = records / f"shot_002.mp4{TEMP_MARKER}{gone}-d4.json"  # another step's item: not this step's to judge
    writing = records / f"shot_001.mp4{TEMP_MARKER}{os.getppid()}-e5.json"  # a live writer's
    for path in [*left, other_item, writing]:
        path.write_text("{")
    _clear_stale_partials(folder, ["shot_001"], records=records)
    assert not any(path.exists() for path in left) and other_item.exists() and writing.exists()
