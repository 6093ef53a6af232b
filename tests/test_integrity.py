"""No broken film is shipped as good: on one small film (two shots on the embedded backends, made
once for the module), each file is damaged the way a hostile or unlucky user would — half a clip
overwritten with random bytes, a clip swapped for another shot's, the final cut truncated, a clip
deleted — and the film is either made whole again or refused naming the file. Every test leaves
the film whole for the next."""

import hashlib
import random
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from film_checks import audio_seconds, frame_md5s, identity, latest_metadata, small_plan, sparkle, use_state

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import film_run
from sparkle_motion_dagster.store import integrity
from sparkle_motion_dagster.store.storage import atomic_write_bytes
from sparkle_motion_dagster.stages import STAGE_KEYS

pytestmark = pytest.mark.slow

SHOTS, SECONDS, FPS = 2, 1.0, 12
FILM_FRAMES = round(SHOTS * SECONDS * FPS)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    """One finished two-shot film, made with `sparkle-motion run`, and its final's frames as made."""
    folder = tmp_path_factory.mktemp("integrity")
    with pytest.MonkeyPatch.context() as patch:
        use_state(patch, folder / "state")
        plan = small_plan(folder, shots=SHOTS, seconds=SECONDS, fps=FPS)
        made = sparkle("run", "--plan", plan)
        assert made.code == 0, made.stderr
        with dg.DagsterInstance.get() as instance:
            store = defs.resources["artifact_store"].store()
            run = store.run_dir(made.run_id)
            final = run / "finalize" / "video_final.mp4"
            yield SimpleNamespace(run_id=made.run_id, run=run, store=store, instance=instance, final=final,
                                  clips=run / "video_clips", frames=frame_md5s(final),
                                  clip_sha={p.name: sha256(p) for p in (run / "video_clips").glob("shot_*.mp4")})


def overwrite_second_half(path: Path) -> None:
    """Noise over the second half of the file, in place: same size, same name (the same noise every
    run, so the decoder fails the same way)."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(random.Random(size).randbytes(size - size // 2))


def assert_whole(film) -> None:
    """The final has every frame the film was made with, and audio of the film's length."""
    assert frame_md5s(film.final) == film.frames
    assert len(film.frames) == FILM_FRAMES
    assert abs(audio_seconds(film.final) - SHOTS * SECONDS) <= 1 / FPS
    assert {p.name: sha256(p) for p in film.clips.glob("shot_*.mp4")} == film.clip_sha
    assert sparkle("status", film.run_id).stdout.splitlines()[1].startswith("status:    succeeded")


def test_a_half_overwritten_clip_is_rendered_again_by_rerun_from_the_master(film):
    overwrite_second_half(film.clips / "shot_002.mp4")

    status = sparkle("status", film.run_id)
    assert ("failed (not the files that were made: video_clips/shot_002.mp4 (sha256 differs from record)"
            in status.stdout)

    rerun = sparkle("rerun", film.run_id, "--from", "video_raw_concat")
    print(rerun.stdout)
    assert rerun.code == 0, rerun.stderr
    assert (f"first making again what video_raw_concat needs: video_clips "
            f"(video_clips/shot_002.mp4 (sha256 differs from record))") in rerun.stdout
    metadata = latest_metadata(film.instance, "video_clips", film.run_id)
    assert metadata["rerendered"] == {"shot_002": "sha256 differs from record"}
    assert metadata["rendered_shots"] == ["shot_002"]
    assert_whole(film)


def test_a_clip_swapped_for_another_shots_clip_is_rendered_again_by_resume(film):
    shutil.copyfile(film.clips / "shot_001.mp4", film.clips / "shot_002.mp4")

    resume = sparkle("resume", film.run_id)
    print(resume.stdout)
    assert resume.code == 0, resume.stderr
    assert f"resuming {film.run_id}: video_clips, video_raw_concat, video_final" in resume.stdout
    assert "made again: video_clips/shot_002.mp4 (size" in resume.stdout
    assert_whole(film)


def test_a_same_size_swap_is_caught_by_the_sha256(film):
    # A file of the recorded size with other bytes (the digest cache must not vouch for it).
    clip = film.clips / "shot_001.mp4"
    before = integrity.file_record(clip)
    data = bytearray(clip.read_bytes())
    data[-1] ^= 0xFF
    clip.write_bytes(bytes(data))
    assert integrity.problem(clip, before) == "sha256 differs from record"

    resume = sparkle("resume", film.run_id)
    print(resume.stdout)
    assert resume.code == 0, resume.stderr
    assert "made again: video_clips/shot_001.mp4 (sha256 differs from record)" in resume.stdout
    assert_whole(film)


def test_a_truncated_final_is_not_complete_and_resume_repairs_it(film):
    with open(film.final, "r+b") as handle:
        handle.truncate(2000)

    status = sparkle("status", film.run_id)
    assert "status:    failed" in status.stdout and "finalize/video_final.mp4 (size 2000 bytes" in status.stdout
    refused = sparkle("review", film.run_id, "--approve", "--reviewer", "ana")
    print(refused.stderr)
    assert refused.code == 2 and (f"{film.run_id}: refused: finalize/video_final.mp4 is not the file that was made "
                                  "(size 2000 bytes differs from record") in refused.stderr
    resume = sparkle("resume", film.run_id)
    print(resume.stdout)
    assert resume.code == 0, resume.stderr
    assert f"resuming {film.run_id}: video_final" in resume.stdout
    assert_whole(film)


def test_a_deleted_clip_is_rendered_again_by_resume(film):
    (film.clips / "shot_001.mp4").unlink()

    resume = sparkle("resume", film.run_id)
    print(resume.stdout)
    assert resume.code == 0, resume.stderr
    assert "made again: video_clips/shot_001.mp4 (missing)" in resume.stdout
    assert_whole(film)
    again = sparkle("resume", film.run_id)
    assert f"{film.run_id} is complete (every file matches its record); nothing to do" in again.stdout

    # The clip and its record both gone: the manifest still lists it, and rerun makes it first.
    (film.clips / "shot_001.mp4").unlink()
    integrity.sidecar_path(film.clips / "shot_001.mp4").unlink()
    rerun = sparkle("rerun", film.run_id, "--from", "video_raw_concat")
    print(rerun.stdout)
    assert rerun.code == 0, rerun.stderr
    assert ("first making again what video_raw_concat needs: video_clips (video_clips/shot_001.mp4 (missing))"
            in rerun.stdout)
    assert_whole(film)


def test_the_master_is_checked_before_it_is_published(film):
    # A damaged clip whose record was made after the damage (so reuse cannot tell): assembly decodes
    # what it made, refuses it naming the clip, and leaves the published master as it was.
    clip = film.clips / "shot_002.mp4"
    overwrite_second_half(clip)
    record = integrity.read_sidecar(clip)
    integrity.atomic_write_json(integrity.sidecar_path(clip), {**record, "file": integrity.file_record(clip)})
    master = film.run / "assembly" / "video_raw_concat.mp4"
    published = identity(master)

    result = film_run(defs, film.instance, film.run_id, store=film.store, stages=["video_raw_concat"])
    assert not result.success
    assert "video_raw_concat.mp4: not published" in result.error
    # ffmpeg either decodes part of the clip or gives up on it, depending on where the noise lands
    assert re.search(r"at fault: shot_002\.mp4 \((\d+ frames decode, the plan has 12|it does not decode)", result.error)
    assert identity(master) == published

    forced = sparkle("rerun", film.run_id, "--from", "video_clips")
    assert forced.code == 0, forced.stderr
    assert_whole(film)


def test_a_short_clip_is_cataloged_at_its_real_length_and_no_master_is_made_from_it(film, tmp_path, monkeypatch):
    from dataclasses import replace

    from sparkle_motion_dagster.insight.catalog import Catalog

    # A clip model that hands back half the frames it was asked for.
    renderer = type(defs.resources["clips"])
    original = renderer.render
    monkeypatch.setattr(renderer, "render", lambda self, request, out: original(
        self, replace(request, frames=request.frames // 2), out))
    run_id = sparkle("submit", "--plan", small_plan(tmp_path, shots=SHOTS, seconds=SECONDS, fps=FPS)).run_id
    result = film_run(defs, film.instance, run_id, store=film.store)
    assert not result.success
    assert "video_raw_concat.mp4: not published: 12 frames decode, the plan has 24" in result.error
    assert "at fault: shot_001.mp4 (6 frames decode, the plan has 12" in result.error
    assert not (film.store.run_dir(run_id) / "assembly" / "video_raw_concat.mp4").exists()
    # The catalog has each clip's length as measured from the file, not the plan's 1.0 s.
    clips = [row for row in Catalog(film.store.root).artifacts(run_id, "video_clips") if row["shot_id"]]
    assert sorted(row["duration_s"] for row in clips) == [0.5, 0.5]


def test_a_final_whose_audio_is_short_is_refused(film, tmp_path):
    import numpy as np

    from sparkle_motion_dagster.media.ffmpeg import mux_audio
    from sparkle_motion_dagster.media.verify import DamagedOutputError, check_video
    from sparkle_motion_dagster.media.wav import wav_bytes

    short = tmp_path / "short.wav"
    short.write_bytes(wav_bytes(np.zeros(24000, dtype=np.float32), 48000))  # half a second
    made = tmp_path / "final.mp4"
    mux_audio(film.run / "assembly" / "video_raw_concat.mp4", short, made)
    with pytest.raises(DamagedOutputError,
                       match=r"final.mp4: not published: its audio lasts 0\.5\d* s, the film 2\.000 s"):
        check_video(made, what="final.mp4", frames=FILM_FRAMES, fps=FPS, audio=True)
    assert check_video(film.final, what="final", frames=FILM_FRAMES, fps=FPS, audio=True)["duration_s"] == 2.0


def test_an_unchanged_file_is_not_hashed_again(tmp_path, monkeypatch):
    hashed = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    item = tmp_path / "shot_001.mp4"
    item.write_bytes(b"frames")
    first = integrity.file_record(item)
    assert integrity.file_record(item) == first and hashed == ["shot_001.mp4"]
    assert (tmp_path / ".meta" / ".digests" / "shot_001.mp4.json").is_file()

    item.write_bytes(b"framez")  # same size, new bytes: hashed again
    assert integrity.file_record(item)["sha256"] != first["sha256"] and hashed == ["shot_001.mp4"] * 2


def test_frames_are_decoded_once_clips_for_the_master_and_the_master_for_the_final(film, tmp_path, monkeypatch):
    from sparkle_motion_dagster.media import verify
    from sparkle_motion_dagster.media.ffmpeg import run_ffmpeg

    decoded = []
    real = verify.decode_video
    monkeypatch.setattr(verify, "decode_video", lambda path: decoded.append(Path(path).name) or real(path))
    master = film.run / "assembly" / "video_raw_concat.mp4"
    clips = [(film.clips / f"shot_{i:03d}.mp4", FILM_FRAMES // SHOTS) for i in range(1, SHOTS + 1)]
    for clip, _ in clips:  # forget what earlier checks learnt
        atomic_write_bytes(clip, clip.read_bytes())

    assert verify.check_joined_video(master, clips, what="master", fps=FPS)["decoded"] is False
    assert sorted(decoded) == ["shot_001.mp4", "shot_002.mp4"]  # each clip's frames, not the master's
    decoded.clear()
    assert verify.check_joined_video(master, clips, what="master", fps=FPS)["decoded"] is False
    assert decoded == []  # the clips' clean decodes are kept with their digests
    read = []
    real_digest = verify._stream_digest
    monkeypatch.setattr(verify, "_stream_digest", lambda path, **k: read.append(Path(path).name) or real_digest(path, **k))
    final = verify.check_copied_video(film.final, master, what="final", frames=FILM_FRAMES, fps=FPS, audio=True)
    assert final["decoded"] is False and decoded == []  # its video packets are the checked master's
    assert read == ["video_final.mp4"]  # the master's packets are summarised in its record, not read again

    short = tmp_path / "short.mp4"  # packets that are not the clips': decoded, and refused
    run_ffmpeg(["-i", str(master), "-frames:v", str(FILM_FRAMES - 6), "-c", "copy", str(short)])
    with pytest.raises(verify.DamagedOutputError, match=r"short.mp4: not published: 18 frames decode"):
        verify.check_joined_video(short, clips, what="short.mp4", fps=FPS)
    assert decoded == ["short.mp4"]
    # a video that is not a copy of its source is decoded (the first clip is not the master)
    assert verify.check_copied_video(master, clips[0][0], what="m", frames=FILM_FRAMES, fps=FPS)["decoded"] is True


def test_a_clip_is_judged_again_only_when_it_or_what_it_is_judged_against_changes(film, tmp_path, monkeypatch):
    from sparkle_motion_dagster.film import quality

    read = []
    real = quality.analysis.read_clip
    monkeypatch.setattr(quality.analysis, "read_clip", lambda path, *a, **k: read.append(Path(path).name) or real(path, *a, **k))
    clip = film.clips / "shot_001.mp4"
    keyframes = sorted((film.run / "base_images").glob("*.png"))
    against = dict(shot_id="shot_001", expected_frames=FILM_FRAMES // SHOTS, fps=FPS, mode="crossfade",
                   start_keyframe=keyframes[0], end_keyframe=keyframes[1])
    atomic_write_bytes(clip, clip.read_bytes())
    first = quality.judged_once(clip, **against)
    assert quality.judged_once(clip, **against) == first and read == ["shot_001.mp4"]
    assert quality.judged_once(clip, **{**against, "end_keyframe": keyframes[0]}) and len(read) == 2
    atomic_write_bytes(clip, clip.read_bytes())  # rewritten: judged again
    assert quality.judged_once(clip, **against) == first and len(read) == 3
    # its clean read stands for assembly's decode; a damaged clip's does not
    from sparkle_motion_dagster.media import verify
    assert integrity.remembered(clip, verify.CLEAN_DECODE) == FILM_FRAMES // SHOTS
    damaged = tmp_path / "shot_001.mp4"
    damaged.write_bytes(clip.read_bytes())
    overwrite_second_half(damaged)
    row, failures = quality.judged_once(damaged, **against)
    assert failures and integrity.remembered(damaged, verify.CLEAN_DECODE) is None


# ---------------------------------------------------------------------- approval binds to what was seen


def test_an_approval_binds_to_the_video_the_reviewer_watched(film):
    from sparkle_motion_dagster.lifecycle import control

    current = sha256(film.final)
    stale = hashlib.sha256(b"the final before a regenerate").hexdigest()
    refused = sparkle("review", film.run_id, "--approve", "--reviewer", "ana", "--sha256", stale)
    print(refused.stdout, refused.stderr)
    assert refused.code == 2
    assert refused.stdout.splitlines()[0] == f"finalize/video_final.mp4 sha256 {current}"
    assert (f"error: {film.run_id}: refused: the video you watched (sha256 {stale[:16]}…) is not the current "
            f"finalize/video_final.mp4 (sha256 {current[:16]}…)") in refused.stderr

    # While something films the run again (its marker, as a filming process leaves it), no approval binds.
    control.mark_active(film.store, film.run_id)
    try:
        refilming = sparkle("review", film.run_id, "--approve", "--reviewer", "ana")
    finally:
        control.clear_active(film.store, film.run_id)
    print(refilming.stdout, refilming.stderr)
    assert refilming.code == 2
    assert f"{film.run_id}: refused: the film is being made again (running)" in refilming.stderr
    assert "review:    pending" in sparkle("status", film.run_id).stdout

    approved = sparkle("review", film.run_id, "--approve", "--reviewer", "ana", "--sha256", current)
    print(approved.stdout)
    assert approved.code == 0, approved.stderr
    assert f"{film.run_id}: approved by ana" in approved.stdout and f"of sha256 {current}" in approved.stdout
    assert "ready to share" in approved.stdout.splitlines()

    # A new final after that review (a regenerate): approving it without naming it is refused.
    before = film.final.read_bytes()
    film.final.write_bytes(before[:-1] + bytes([before[-1] ^ 1]))
    try:
        unnamed = sparkle("review", film.run_id, "--approve", "--reviewer", "ana")
    finally:
        atomic_write_bytes(film.final, before)
    print(unnamed.stderr)
    assert unnamed.code == 2
    assert (f"{film.run_id}: refused: finalize/video_final.mp4 changed since the last review; watch it, then "
            "approve it with --sha256") in unnamed.stderr


# ---------------------------------------------------------------------- evacuation is honest


def test_evacuating_a_film_being_made_is_refused_or_recorded_incomplete(film, tmp_path):
    from sparkle_motion_dagster.lifecycle import control
    from sparkle_motion_dagster.lifecycle.events import read_events

    # A second film of the plan, paused before its final cut.
    plan = small_plan(tmp_path, shots=SHOTS, seconds=SECONDS, fps=FPS)
    run_id = sparkle("submit", "--plan", plan).run_id
    made = film_run(defs, film.instance, run_id, store=film.store,
                    stages=[stage for stage in STAGE_KEYS if stage != "video_final"])
    assert made.success, made.error
    control.set_state(film.store, run_id, "paused")
    dest = tmp_path / "drive"

    refused = sparkle("evacuate", run_id, "--to", dest)
    print(refused.stderr)
    assert refused.code == 2
    assert (f"error: refused: {run_id} is paused (stages missing: video_final); evacuate once filming has ended, "
            "or pass --allow-incomplete") in refused.stderr
    assert not (dest / "runs" / run_id).exists()

    copied = sparkle("evacuate", run_id, "--allow-incomplete", "--to", dest)
    print(copied.stdout)
    assert copied.code == 0, copied.stderr
    assert f"-> {dest / 'runs' / run_id} (incomplete: missing video_final; it was paused)" in copied.stdout
    assert f"evacuated 1 run(s) to {dest}, 1 of them incomplete ({run_id})" in copied.stdout
    assert not (dest / "runs" / run_id / "finalize" / "video_final.mp4").exists()
    last = read_events(film.store.root, run_id, "filesystem_artifacts.evacuate")[-1]["payload"]
    assert (last["status"], last["missing_stages"], last["filming"]) == ("incomplete", ["video_final"], "paused")

    # The finished film is completed, and says nothing is missing.
    whole = sparkle("evacuate", film.run_id, "--to", dest)
    assert whole.code == 0, whole.stderr
    assert "incomplete" not in whole.stdout
    assert read_events(film.store.root, film.run_id, "filesystem_artifacts.evacuate")[-1]["payload"]["status"] == \
        "completed"
