import hashlib
import os

import pytest

from sparkle_motion_dagster.film.subtitles import Cue, to_srt, to_vtt
from sparkle_motion_dagster.film.timeline import format_timestamp, shot_frame_counts
from sparkle_motion_dagster.store.storage import (
    TEMP_MARKER,
    ArtifactStore,
    CopyMismatchError,
    UnsafeIdError,
    atomic_output,
    check_run_id,
    copy_file_atomic,
)


def test_frame_counts_are_exact_when_whole_and_never_drift():
    assert shot_frame_counts([8.0, 9.5], 24) == [192, 228]
    counts = shot_frame_counts([1.01] * 100, 24)
    assert sum(counts) == round(101 * 24)
    assert all(abs(c - 1.01 * 24) <= 1 for c in counts)


def test_subtitle_formats():
    cues = [Cue(8.4, 9.9416, "Ava", "I was scared."), Cue(3661.5, 3662.0, "Miko", "Fine.")]
    srt = to_srt(cues)
    assert "1\n00:00:08,400 --> 00:00:09,942\nAva: I was scared.\n" in srt
    assert "2\n01:01:01,500 --> 01:01:02,000\nMiko: Fine.\n" in srt
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:08.400 --> 00:00:09.942\n<v Ava>I was scared.\n")
    assert format_timestamp(-1, separator=".") == "00:00:00.000"


@pytest.mark.parametrize("run_id", ["../run_12345678", "run_1234", "run_ZZZZZZZZ", "run_12345678/..", ""])
def test_run_ids_are_checked(run_id):
    with pytest.raises(UnsafeIdError):
        check_run_id(run_id)


def test_paths_stay_under_the_root(tmp_path):
    store = ArtifactStore(tmp_path / "root")
    path = store.path("run_0123abcd", "video_clips", "shot_001.mp4")
    assert path == (tmp_path / "root" / "runs" / "run_0123abcd" / "video_clips" / "shot_001.mp4").resolve()
    for bad in ("../x", "a/b", ".."):
        with pytest.raises(UnsafeIdError):
            store.path("run_0123abcd", "video_clips", bad)
        with pytest.raises(UnsafeIdError):
            store.path("run_0123abcd", bad)


def test_paths_through_a_symlink_out_of_the_root_are_refused(tmp_path):
    store = ArtifactStore(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    store.run_dir("run_0123abcd").mkdir(parents=True)
    os.symlink(outside, store.run_dir("run_0123abcd") / "video_clips")
    with pytest.raises(UnsafeIdError, match="leaves the artifact root"):
        store.path("run_0123abcd", "video_clips", "shot_001.mp4")


def test_atomic_output_never_leaves_a_partial_file(tmp_path):
    final = tmp_path / "clip.mp4"
    final.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError):
        with atomic_output(final) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("renderer crashed")
    assert final.read_bytes() == b"old complete file"
    assert list(tmp_path.iterdir()) == [final]
    with atomic_output(final) as temp:
        assert temp.suffix == ".mp4" and temp.parent == tmp_path
        temp.write_bytes(b"new")
    assert final.read_bytes() == b"new" and list(tmp_path.iterdir()) == [final]


def test_a_submitted_request_is_never_overwritten(tmp_path):
    store = ArtifactStore(tmp_path)
    store.write_request("run_0123abcd", {"a": 1})
    with pytest.raises(FileExistsError):
        store.write_request("run_0123abcd", {"a": 2})
    assert store.read_request("run_0123abcd") == {"a": 1}


def test_a_copy_is_hashed_as_it_is_copied_and_renamed_into_place(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3 * (1 << 20) + 17))  # more than one chunk
    os.utime(source, (1_000_000_000, 1_000_000_000))
    dest = tmp_path / "out" / "copy.bin"
    digest, copied = copy_file_atomic(source, dest, read_back=True, keep_metadata=True)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest() and copied == source.stat().st_size
    assert dest.read_bytes() == source.read_bytes() and dest.stat().st_mtime == 1_000_000_000
    assert os.listdir(dest.parent) == ["copy.bin"]


def test_a_copy_whose_source_changed_is_refused_and_leaves_the_old_file(tmp_path):
    source, dest = tmp_path / "source.txt", tmp_path / "dest.txt"
    source.write_text("new")
    dest.write_text("old")
    with pytest.raises(CopyMismatchError, match="changed while it was being copied"):
        copy_file_atomic(source, dest, expected_sha256=hashlib.sha256(b"what was hashed before").hexdigest())
    assert dest.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["dest.txt", "source.txt"]


def test_a_copy_names_its_temporary_file_with_the_marker_given(tmp_path, monkeypatch):
    import sparkle_motion_dagster.store.storage as storage

    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(storage.os, "replace", lambda src, dst: (renamed.append(src.name), real_replace(src, dst)))
    (tmp_path / "a.mp4").write_bytes(b"x")
    copy_file_atomic(tmp_path / "a.mp4", tmp_path / "b.mp4", marker=TEMP_MARKER + "evac-")
    assert len(renamed) == 1 and renamed[0].startswith("b" + TEMP_MARKER + "evac-") and renamed[0].endswith(".mp4")
    with pytest.raises(ValueError, match="must contain"):
        copy_file_atomic(tmp_path / "a.mp4", tmp_path / "c.mp4", marker=".tmp-")
