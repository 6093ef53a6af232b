"""The per-run event log: append-only, readable while written, safe across processes."""

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from sparkle_motion_dagster.lifecycle.events import events_path, read_events, write_event
from sparkle_motion_dagster.store.storage import UnsafeIdError

REPO = Path(__file__).resolve().parents[1]
RUN = "run_9c29599b"


def test_write_and_read_back(tmp_path):
    first = write_event(tmp_path, RUN, "filesystem_artifacts.evacuate",
                        {"status": "pending_copy", "destination": Path("/drive/x")}, actor="notebook")
    second = write_event(tmp_path, RUN, "finalize_manual_review", {"status": "skipped"})
    assert first["payload"] == {"status": "pending_copy", "destination": "/drive/x"}
    assert (second["actor"], second["run_id"], second["event_type"]) == ("system", RUN, "finalize_manual_review")
    assert datetime.fromisoformat(second["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert first["event_id"] != second["event_id"]
    assert read_events(tmp_path, RUN) == [first, second]
    assert read_events(tmp_path, RUN, "finalize_manual_review") == [second]
    assert events_path(tmp_path, RUN) == tmp_path.resolve() / "runs" / RUN / "events" / "events.jsonl"


def test_unknown_run_has_no_events(tmp_path):
    assert read_events(tmp_path, "run_00000000") == []


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(UnsafeIdError):
        write_event(tmp_path, "../../etc", "x", {})
    with pytest.raises(UnsafeIdError):
        read_events(tmp_path, "run_nothex!")
    with pytest.raises(ValueError):
        write_event(tmp_path, RUN, "has spaces", {})
    with pytest.raises(TypeError):
        write_event(tmp_path, RUN, "x", ["not", "a", "dict"])
    with pytest.raises(ValueError):
        write_event(tmp_path, RUN, "x", {}, actor=" ")


def test_a_torn_last_line_is_skipped_and_not_glued_to(tmp_path):
    first = write_event(tmp_path, RUN, "a", {"n": 1})
    with open(events_path(tmp_path, RUN), "ab") as handle:
        handle.write(b'{"event_id": "torn", "payl')  # a crash in the middle of a write
    second = write_event(tmp_path, RUN, "b", {"n": 2})
    assert read_events(tmp_path, RUN) == [first, second]


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sparkle_motion_dagster.lifecycle.events import write_event
    root, run_id, writer, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    while not go.exists():
        time.sleep(0.005)
    for seq in range(count):
        padding = "x" * (20000 if seq % 20 == 0 else 10)   # some lines far beyond one pipe buffer
        write_event(root, run_id, "step.progress", {"writer": writer, "seq": seq, "padding": padding},
                    actor=f"writer-{writer}")
    print("ok")
""")

READER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sparkle_motion_dagster.lifecycle.events import read_events
    root, run_id, go, done = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.005)
    reads, last = 0, 0
    while True:
        finished = done.exists()
        events = read_events(root, run_id)
        assert len(events) >= last, (len(events), last)
        next_seq = {}
        for event in events:   # every line whole, each writer's events in order
            writer, seq = event["payload"]["writer"], event["payload"]["seq"]
            assert seq == next_seq.get(writer, 0), (writer, seq)
            next_seq[writer] = seq + 1
        last, reads = len(events), reads + 1
        if finished:
            break
    print(reads)
""")


def spawn(script: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_several_processes_append_at_once(tmp_path):
    go, done = tmp_path / "go", tmp_path / "done"
    writers, per_writer = 4, 200
    procs = [spawn(WRITER, tmp_path, RUN, index, per_writer, go) for index in range(writers)]
    reader = spawn(READER, tmp_path, RUN, go, done)
    go.touch()
    results = [proc.communicate() + (proc.returncode,) for proc in procs]
    done.touch()
    reader_out, reader_err = reader.communicate()

    for index, (out, err, code) in enumerate(results):
        assert (code, out.strip(), err) == (0, "ok", ""), f"writer {index}:\n{err}"
    assert reader.returncode == 0, reader_err
    assert int(reader_out) >= 1

    events = read_events(tmp_path, RUN)
    assert len(events) == writers * per_writer
    assert len({e["event_id"] for e in events}) == len(events)
    for index in range(writers):
        mine = [e for e in events if e["actor"] == f"writer-{index}"]
        assert [e["payload"]["seq"] for e in mine] == list(range(per_writer))
    lines = events_path(tmp_path, RUN).read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
