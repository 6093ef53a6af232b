"""The artifact catalog: records, rebuild from disk, the /artifacts payload, and
several processes writing and reading one catalog at once."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path

import pytest
from PIL import Image

from sparkle_motion_dagster.insight.catalog import (
    ArtifactRecord,
    Catalog,
    CatalogBusyError,
    artifacts_payload,
    describe_file,
    infer_artifact_type,
)
from sparkle_motion_dagster.store.storage import TEMP_MARKER, UnsafeIdError

REPO = Path(__file__).resolve().parents[1]
RUN = "run_9c29599b"
OTHER_RUN = "run_0123abcd"
PLAN_ID = "plan_0123456789ab"
COMPARED = ("run_id", "plan_id", "stage", "shot_id", "artifact_type", "artifact_uri", "local_path", "media_type",
            "mime_type", "size_bytes", "sha256", "duration_s", "width", "height")


@pytest.fixture(autouse=True)
def _no_index_override(monkeypatch):
    monkeypatch.delenv("ARTIFACTS_FS_INDEX", raising=False)


def make_png(path: Path, width: int = 32, height: int = 24, color=(200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path, format="PNG")
    return path


def make_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(rate)
        clip.writeframes(b"\x00\x00" * int(seconds * rate))
    return path


def make_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_run_tree(root: Path, run_id: str = RUN) -> dict[str, Path]:
    """A small film run on disk, plus files rebuild must ignore."""
    run = root / "runs" / run_id
    files = {
        "validation": make_file(run / "plan_intake" / "plan_validation.json",
                                json.dumps({"summary": {"plan_id": PLAN_ID}}).encode()),
        "frame0": make_png(run / "base_images" / "frame_000.png", 32, 24),
        "frame1": make_png(run / "base_images" / "frame_001.png", 32, 24, (10, 10, 200)),
        "line0": make_wav(run / "dialogue_audio" / "line_000.wav", 1.0),
        "line1": make_wav(run / "dialogue_audio" / "line_001.wav", 0.5),
        "timeline": make_wav(run / "dialogue_audio" / "tts_timeline.wav", 4.0),
        "srt": make_file(run / "dialogue_audio" / "dialogue.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n"),
        "clip": make_file(run / "video_clips" / "shot_001.mp4", b"not really an mp4"),
        "final": make_file(run / "finalize" / "video_final.mp4", b"\x00" * 64),
    }
    make_file(run / "base_images" / ".meta" / "frame_000.png.json", b"{}")
    make_file(run / "video_clips" / "shot_002.partial-1-abc.mp4", b"half")
    make_file(run / "events" / "events.jsonl", b"")
    return files


def record_tree(catalog: Catalog, files: dict[str, Path], run_id: str = RUN) -> None:
    for path in files.values():
        stage = path.parent.name
        shot_id = path.stem if stage == "video_clips" else None
        catalog.record_file(run_id, stage, path, plan_id=PLAN_ID, shot_id=shot_id,
                            dagster_run_id="dagster-1", metadata={"source": "test"})


def compared(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(row[k] for k in COMPARED) for row in rows)


# --- describing and recording ---------------------------------------------------

def test_describe_file_reads_png_and_wav(tmp_path):
    png = make_png(tmp_path / "a.png", 40, 30)
    wav = make_wav(tmp_path / "a.wav", 1.25)
    image, audio = describe_file(png), describe_file(wav)
    assert (image["media_type"], image["mime_type"], image["width"], image["height"]) == ("image", "image/png", 40, 30)
    assert image["sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
    assert image["size_bytes"] == png.stat().st_size
    assert (audio["media_type"], audio["mime_type"], audio["duration_s"]) == ("audio", "audio/wav", 1.25)
    junk = describe_file(make_file(tmp_path / "junk.mp4", b"not an mp4"))
    assert junk["media_type"] == "video" and junk["duration_s"] is None and junk["width"] is None


def test_artifact_types_are_inferred_from_stage_and_name():
    assert infer_artifact_type("base_images", "x/frame_000.png") == "shot_frames"
    assert infer_artifact_type("dialogue_audio", "x/line_000.wav") == "shot_dialogue_audio"
    assert infer_artifact_type("dialogue_audio", "x/tts_timeline.wav") == "tts_timeline_audio"
    assert infer_artifact_type("video_clips", "x/shot_001.mp4") == "shot_video"
    assert infer_artifact_type("lipsync", "x/shot_001.mp4") == "shot_lipsync_video"
    assert infer_artifact_type("assembly", "x/video_raw_concat.mp4") == "video_raw"
    assert infer_artifact_type("assembly", "x/assembly_plan.json") == "assembly_plan"
    assert infer_artifact_type("finalize", "x/video_final.mp4") == "video_final"
    assert infer_artifact_type("dialogue_audio", "x/dialogue.vtt") == "subtitles"


def test_record_then_read_back(tmp_path):
    catalog = Catalog(tmp_path)
    png = make_png(tmp_path / "runs" / RUN / "base_images" / "frame_000.png")
    catalog.record_file(RUN, "base_images", png, plan_id=PLAN_ID, shot_id="shot_001",
                        dagster_run_id="abc", metadata={"seed": 7, "source": Path("/x")})
    assert not catalog.index_path.exists()  # recording never opens the database
    [row] = catalog.artifacts(RUN)
    assert row["artifact_uri"] == png.resolve().as_uri() and row["local_path"] == str(png.resolve())
    assert (row["stage"], row["artifact_type"], row["media_type"], row["shot_id"]) == (
        "base_images", "shot_frames", "image", "shot_001")
    assert (row["width"], row["height"], row["plan_id"], row["dagster_run_id"]) == (32, 24, PLAN_ID, "abc")
    assert row["metadata"] == {"seed": 7, "source": "/x"}
    assert row["created_at"].endswith("Z")
    assert catalog.index_path == tmp_path.resolve() / "index.duckdb"
    assert catalog.runs() == [RUN]


def test_index_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS_FS_INDEX", str(tmp_path / "elsewhere" / "index.db"))
    catalog = Catalog(tmp_path / "root")
    catalog.record(ArtifactRecord(run_id=RUN, stage="plan_intake", local_path=tmp_path / "root" / "movie_plan.json"))
    assert [r["artifact_type"] for r in catalog.artifacts(RUN)] == ["movie_plan"]
    assert (tmp_path / "elsewhere" / "index.db").exists()


def test_rerecording_a_path_replaces_the_row_with_the_newer_one(tmp_path):
    catalog = Catalog(tmp_path)
    path = tmp_path / "runs" / RUN / "finalize" / "video_final.mp4"
    catalog.record({"run_id": RUN, "stage": "finalize", "local_path": path, "metadata": {"version": 1}})
    spool = catalog.root / "runs" / RUN / ".catalog" / "inbox"
    [older] = list(spool.glob("*.json"))
    stale_copy = older.read_bytes()
    catalog.record({"run_id": RUN, "stage": "finalize", "local_path": path, "metadata": {"version": 2}})
    assert [r["metadata"] for r in catalog.artifacts(RUN)] == [{"version": 2}]
    assert not list(spool.glob("*.json"))  # consumed
    # An older record arriving late (or ingested twice) never wins.
    (spool / older.name).write_bytes(stale_copy)
    assert [r["metadata"] for r in catalog.artifacts(RUN)] == [{"version": 2}]
    catalog.record({"run_id": RUN, "stage": "finalize", "local_path": path, "metadata": {"version": 3}})
    assert [r["metadata"] for r in catalog.artifacts(RUN)] == [{"version": 3}]


def test_bad_records_are_refused(tmp_path):
    catalog = Catalog(tmp_path)
    with pytest.raises(UnsafeIdError):
        catalog.record({"run_id": "../etc", "stage": "x", "local_path": "/tmp/a.png"})
    with pytest.raises(UnsafeIdError):
        catalog.record({"run_id": RUN, "stage": "a/b", "local_path": "/tmp/a.png"})
    with pytest.raises(ValueError, match="absolute"):
        catalog.record({"run_id": RUN, "stage": "x", "local_path": "a.png"})
    with pytest.raises(ValueError, match="unknown"):
        catalog.record({"run_id": RUN, "stage": "x", "local_path": "/tmp/a.png", "colour": "red"})


def test_unreadable_spool_file_is_set_aside(tmp_path):
    catalog = Catalog(tmp_path)
    catalog.record({"run_id": RUN, "stage": "x", "local_path": "/tmp/a.png"})
    spool = catalog.root / "runs" / RUN / ".catalog" / "inbox"
    (spool / "00000000000000000001-1-bad.json").write_text("{not json")
    assert len(catalog.artifacts(RUN)) == 1
    assert [p.name for p in (spool.parent / "rejected").iterdir()] == ["00000000000000000001-1-bad.json"]


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_spool_temporaries_of_killed_writers_are_removed_by_rebuild_and_the_next_record(tmp_path):
    catalog = Catalog(tmp_path)
    catalog.record({"run_id": RUN, "stage": "x", "local_path": "/tmp/a.png"})
    spool = catalog.root / "runs" / RUN / ".catalog" / "inbox"

    def temporary(pid: int) -> Path:
        path = spool / f"00000000000000000002-{pid}-0a0b0c0d{TEMP_MARKER}{pid}-a1b2c3.json"
        path.write_text('{"half": ')
        return path

    stale, live = temporary(_gone_pid()), temporary(os.getpid())
    assert catalog.rebuild() == 0
    assert not stale.exists() and live.exists()  # a writer still alive keeps its file
    live.unlink()

    # A killed film's next run (a new process) clears them with its first record, before any reader.
    stale = temporary(_gone_pid())
    script = ("import sys; from sparkle_motion_dagster.insight.catalog import Catalog; "
              "Catalog(sys.argv[1]).record({'run_id': sys.argv[2], 'stage': 'x', 'local_path': '/tmp/b.png'})")
    subprocess.run([sys.executable, "-c", script, str(tmp_path), RUN], check=True, cwd=tmp_path)
    assert not stale.exists()
    assert [row["local_path"] for row in catalog.artifacts(RUN)] == ["/tmp/b.png"]  # rebuild dropped a.png


def test_stage_filter_runs_and_delete_run(tmp_path):
    catalog = Catalog(tmp_path)
    record_tree(catalog, make_run_tree(tmp_path, RUN), RUN)
    record_tree(catalog, make_run_tree(tmp_path, OTHER_RUN), OTHER_RUN)
    assert catalog.runs() == sorted([RUN, OTHER_RUN])
    rows = catalog.artifacts(RUN)
    assert [r["stage"] for r in rows] == ["plan_intake", "dialogue_audio", "dialogue_audio", "dialogue_audio",
                                          "dialogue_audio", "base_images", "base_images", "video_clips", "finalize"]
    assert {r["artifact_type"] for r in catalog.artifacts(RUN, "dialogue_audio")} == {
        "shot_dialogue_audio", "tts_timeline_audio", "subtitles"}
    assert catalog.delete_run(OTHER_RUN) == 9
    assert catalog.runs() == [RUN] and catalog.artifacts(OTHER_RUN) == []
    assert (tmp_path / "runs" / OTHER_RUN / "base_images" / "frame_000.png").exists()  # files stay


# --- rebuild ------------------------------------------------------------------

def test_rebuild_after_losing_the_index_reproduces_the_rows(tmp_path):
    catalog = Catalog(tmp_path)
    record_tree(catalog, make_run_tree(tmp_path))
    before = catalog.artifacts(RUN)
    assert len(before) == 9
    for leftover in tmp_path.glob("index.duckdb*"):
        leftover.unlink()

    fresh = Catalog(tmp_path)
    assert fresh.artifacts(RUN) == []
    assert fresh.rebuild(tmp_path) == 9
    after = fresh.artifacts(RUN)
    assert compared(after) == compared(before)
    durations = {Path(r["local_path"]).name: r["duration_s"] for r in after}
    assert (durations["line_000.wav"], durations["tts_timeline.wav"]) == (1.0, 4.0)


def test_rebuild_keeps_recorded_details_of_unchanged_files_and_drops_missing_ones(tmp_path):
    catalog = Catalog(tmp_path)
    files = make_run_tree(tmp_path)
    record_tree(catalog, files)
    files["line1"].unlink()
    make_png(files["frame1"], 8, 8)  # changed since it was recorded
    assert catalog.rebuild() == 8
    rows = {Path(r["local_path"]).name: r for r in catalog.artifacts(RUN)}
    assert "line_001.wav" not in rows
    assert rows["frame_000.png"]["metadata"] == {"source": "test"}
    assert rows["frame_001.png"]["metadata"] == {} and rows["frame_001.png"]["width"] == 8


# --- the /artifacts payload ----------------------------------------------------

def test_artifacts_payload_shape(tmp_path):
    catalog = Catalog(tmp_path)
    files = make_run_tree(tmp_path)
    record_tree(catalog, files)
    catalog.record_file(RUN, "base_images", files["frame1"], metadata={"review_status": "needs_changes"})

    payload = artifacts_payload(catalog, RUN, review_summary={"finalize": {"status": "pending"}})
    assert set(payload) == {"run_id", "stages", "artifacts"} and payload["run_id"] == RUN
    assert len(payload["artifacts"]) == 9
    sections = {s["stage"]: s for s in payload["stages"]}
    assert list(sections) == ["plan_intake", "dialogue_audio", "base_images", "video_clips", "finalize"]
    for section in sections.values():
        assert set(section) == {"stage", "count", "artifact_types", "media_types", "preview", "media_summary",
                                "review_summary", "artifacts"}
        assert section["count"] == len(section["artifacts"])
        assert set(section["preview"]) == {"image", "audio", "video"}

    audio = sections["dialogue_audio"]
    assert audio["count"] == 4
    assert audio["artifact_types"] == ["shot_dialogue_audio", "subtitles", "tts_timeline_audio"]
    assert audio["media_types"] == ["audio", "text"]
    assert audio["media_summary"]["audio"]["count"] == 3
    assert audio["media_summary"]["audio"]["total_duration_s"] == pytest.approx(5.5)
    assert audio["media_summary"]["text"]["count"] == 1
    assert audio["preview"]["audio"]["artifact_type"] == "tts_timeline_audio"
    assert audio["preview"]["image"] is None and audio["preview"]["video"] is None

    images = sections["base_images"]
    assert images["preview"]["image"]["local_path"].endswith("frame_000.png")
    assert images["preview"]["image"]["width"] == 32
    assert images["media_summary"] == {"image": {"count": 2, "total_duration_s": 0.0,
                                                 "total_size_bytes": sum(r["size_bytes"] for r in images["artifacts"])}}
    assert images["review_summary"] == {"by_status": {"needs_changes": 1}}

    final = sections["finalize"]
    assert final["preview"]["video"]["artifact_type"] == "video_final"
    assert final["preview"]["video"]["playback_ready"] is True
    assert final["review_summary"] == {"status": "pending"}
    assert sections["plan_intake"]["review_summary"] is None

    only = artifacts_payload(catalog, RUN, stage="finalize")
    assert [s["stage"] for s in only["stages"]] == ["finalize"] and len(only["artifacts"]) == 1
    files["final"].unlink()
    assert artifacts_payload(catalog, RUN, "finalize")["stages"][0]["preview"]["video"]["playback_ready"] is False
    assert artifacts_payload(catalog, RUN, "assembly") == {"run_id": RUN, "stages": [], "artifacts": []}
    json.dumps(payload)  # ready to serve as is


# --- several processes at once ----------------------------------------------

WRITER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from sparkle_motion_dagster.insight.catalog import Catalog
    root, run_id, writer, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    catalog = Catalog(root)
    while not go.exists():
        time.sleep(0.005)
    for seq in range(count):
        path = Path(root) / "runs" / run_id / "video_clips" / f"w{writer}_{seq:04d}.mp4"
        catalog.record({"run_id": run_id, "stage": "video_clips", "local_path": path,
                        "metadata": {"writer": writer, "seq": seq, "version": 1}})
        if seq % 25 == 0:
            catalog.sync(wait=False)   # consolidate opportunistically, like a step finishing
        if seq % 100 == 99:
            catalog.sync()             # and sometimes wait for the lock
    for seq in range(10):              # re-record some paths: the newer record must win
        path = Path(root) / "runs" / run_id / "video_clips" / f"w{writer}_{seq:04d}.mp4"
        catalog.record({"run_id": run_id, "stage": "video_clips", "local_path": path,
                        "metadata": {"writer": writer, "seq": seq, "version": 2}})
    print(json.dumps({"writer": writer, "recorded": count}))
""")

READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from sparkle_motion_dagster.insight.catalog import Catalog, artifacts_payload
    root, runs, go, done = sys.argv[1], sys.argv[2].split(","), Path(sys.argv[3]), Path(sys.argv[4])
    catalog = Catalog(root)
    while not go.exists():
        time.sleep(0.005)
    reads, last = 0, {run: 0 for run in runs}
    while True:
        finished = done.exists()
        for run in runs:
            seen = len(catalog.artifacts(run)) if reads % 2 else len(artifacts_payload(catalog, run)["artifacts"])
            assert seen >= last[run], (run, seen, last[run])   # rows never disappear
            last[run] = seen
        reads += 1
        if finished:
            break
    print(json.dumps({"reads": reads, "last": last}))
""")


def spawn(script: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_many_processes_write_and_read_one_catalog_without_lock_errors(tmp_path):
    root, go, done = tmp_path / "artifacts", tmp_path / "go", tmp_path / "writers_done"
    runs = [RUN, OTHER_RUN]
    per_writer, writers = 200, 4
    procs = [spawn(WRITER, root, runs[i % 2], i, per_writer, go) for i in range(writers)]
    reader = spawn(READER, root, ",".join(runs), go, done)
    go.touch()
    results = [proc.communicate() + (proc.returncode,) for proc in procs]
    done.touch()
    reader_out, reader_err, reader_code = reader.communicate() + (reader.returncode,)

    for index, (out, err, code) in enumerate(results):
        assert code == 0, f"writer {index} failed:\n{err}"
        assert err == "", err
        assert json.loads(out) == {"writer": index, "recorded": per_writer}
    assert reader_code == 0, f"reader failed:\n{reader_err}"
    assert reader_err == "" and json.loads(reader_out)["reads"] >= 1

    catalog = Catalog(root)
    for run_index, run in enumerate(runs):
        rows = catalog.artifacts(run)
        assert len(rows) == per_writer * writers // 2
        by_writer: dict[int, dict[int, int]] = {}
        for row in rows:
            meta = row["metadata"]
            by_writer.setdefault(meta["writer"], {})[meta["seq"]] = meta["version"]
        assert sorted(by_writer) == [w for w in range(writers) if w % 2 == run_index]
        for versions in by_writer.values():
            assert sorted(versions) == list(range(per_writer))
            assert all(versions[seq] == (2 if seq < 10 else 1) for seq in versions)
    assert not list(root.glob("runs/*/.catalog/inbox/*"))  # everything consolidated


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    from pathlib import Path
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS other_tool (x INTEGER)")
    print("holding", flush=True)
    release = Path(sys.argv[2])
    while not release.exists():
        time.sleep(0.01)
    con.close()
""")


def test_a_foreign_process_holding_the_index_is_waited_out(tmp_path, monkeypatch):
    catalog = Catalog(tmp_path)
    catalog.index_path.parent.mkdir(parents=True, exist_ok=True)
    release = tmp_path / "release"
    holder = spawn(HOLDER, catalog.index_path, release)
    assert holder.stdout.readline().strip() == "holding"

    path = tmp_path / "runs" / RUN / "finalize" / "video_final.mp4"
    catalog.record({"run_id": RUN, "stage": "finalize", "local_path": path})  # writers never wait
    with pytest.raises(CatalogBusyError):
        Catalog(tmp_path, busy_timeout_s=0.2).artifacts(RUN)

    import duckdb

    met_lock, opened = threading.Event(), threading.Event()
    real_connect = duckdb.connect

    def connect(*args, **kwargs):
        try:
            con = real_connect(*args, **kwargs)
        except duckdb.IOException:
            met_lock.set()
            raise
        opened.set()
        return con

    monkeypatch.setattr(duckdb, "connect", connect)
    result: dict = {}
    reader = threading.Thread(target=lambda: result.setdefault("rows", catalog.artifacts(RUN)))
    reader.start()
    assert met_lock.wait(timeout=60), "the reader never tried the held index"
    # It met the foreign lock and keeps waiting (it neither failed nor answered without the index).
    assert reader.is_alive() and not opened.is_set() and "rows" not in result
    release.touch()
    reader.join()
    assert opened.is_set()
    holder.communicate()
    assert holder.returncode == 0
    assert [r["local_path"] for r in result["rows"]] == [str(path)]
