"""Manual review of the final video: records, attachments, events and the review state."""

import json
import os
import threading
from pathlib import Path

import dagster as dg
import pytest
from helpers import small_sample

from sparkle_motion_dagster.cli import inspection as cli_inspect
from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import film_run, submit_run
from sparkle_motion_dagster.orchestration.status import film_status
from sparkle_motion_dagster.insight.catalog import Catalog
from sparkle_motion_dagster.lifecycle.events import read_events, write_event
from sparkle_motion_dagster.store.locations import artifacts_root, ensure_dagster_home
from sparkle_motion_dagster.insight.qa import qa_flags
from sparkle_motion_dagster.lifecycle.review import (
    NothingToReviewError,
    latest_review,
    record_review,
    review_state,
    reviews,
    safe_file_name,
)
from sparkle_motion_dagster.store.storage import ArtifactStore, UnknownRunError, UnsafeIdError, atomic_write_bytes

SAMPLE = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "rooftop_revelations.json"
RUN = "run_0a1b2c3d"


@pytest.fixture(autouse=True)
def _qa_default(monkeypatch):
    monkeypatch.delenv("QA_AUTOMATION_REMOVED", raising=False)


@pytest.fixture(scope="module")
def filmed(tmp_path_factory):
    """One real film of the seed's sample, shared by the module: (instance, store, run_id)."""
    state = tmp_path_factory.mktemp("review") / "state"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARKLE_STATE_DIR", str(state))
        mp.setenv("DAGSTER_HOME", str(state / "dagster_home"))
        mp.delenv("ARTIFACTS_FS_ROOT", raising=False)
        mp.delenv("ARTIFACTS_FS_INDEX", raising=False)
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
        store = ArtifactStore(artifacts_root())
        clips = defs.resources["clips"]
        run_id = submit_run(store, instance, small_sample(), source="test", preview=True,
                            clip_model_ids=clips.model_ids, clip_backend=clips.backend)
        assert film_run(defs, instance, run_id, store=store).success
        yield instance, store, run_id
        instance.dispose()


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("ARTIFACTS_FS_INDEX", raising=False)
    return ArtifactStore(tmp_path / "artifacts")


def fake_final(store: ArtifactStore, run_id: str = RUN, data: bytes = b"\x00\x00\x00\x18ftypmp42 final cut") -> Path:
    return atomic_write_bytes(store.path(run_id, "finalize", "video_final.mp4"), data)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- the flag ----------------------------------------------------------------------------

def test_qa_flags(monkeypatch):
    assert qa_flags() == {"manual_review_required": True, "qa_mode": "disabled", "review_gate": "blocking"}
    monkeypatch.setenv("QA_AUTOMATION_REMOVED", "0")
    # Before any check has run nothing may claim automated QA: the flags alone say "disabled".
    assert qa_flags() == {"manual_review_required": False, "qa_mode": "disabled", "review_gate": "advisory"}
    monkeypatch.setenv("QA_AUTOMATION_REMOVED", "yes")
    with pytest.raises(ValueError, match="QA_AUTOMATION_REMOVED"):
        qa_flags()


# --- bad input writes nothing ----------------------------------------------------------------

def test_errors_name_the_argument_and_write_nothing(store, tmp_path):
    with pytest.raises(UnsafeIdError, match="run_id"):
        record_review(store, "../run", "approve", "Ava")
    with pytest.raises(UnknownRunError, match="run_id: unknown run"):
        record_review(store, RUN, "approve", "Ava")
    store.path(RUN, "plan_intake", "x").parent.mkdir(parents=True)
    with pytest.raises(NothingToReviewError, match="nothing to review"):
        record_review(store, RUN, "approve", "Ava")
    fake_final(store)
    with pytest.raises(ValueError, match="decision"):
        record_review(store, RUN, "approved", "Ava")
    with pytest.raises(ValueError, match="reviewer"):
        record_review(store, RUN, "approve", "  ")
    shot = write(tmp_path / "shot.png", b"png")
    with pytest.raises(ValueError, match=r"attachments: .*missing\.png"):
        record_review(store, RUN, "reject", "Ava", attachments=[shot, tmp_path / "missing.png"])
    assert not store.stage_dir(RUN, "review").exists()
    assert read_events(store.root, RUN) == []
    assert review_state(store, RUN)["status"] == "pending"


def test_safe_file_names():
    assert safe_file_name("my shot #2 (final).png") == "my_shot_2_final_.png"
    assert safe_file_name(".bashrc") == "bashrc"
    assert safe_file_name("a..b.png") == "a.b.png"
    assert safe_file_name("") == "attachment"
    assert safe_file_name("ünïcode.txt") == "n_code.txt"
    assert len(safe_file_name("x" * 300 + ".png")) == 100 and safe_file_name("x" * 300 + ".png").endswith(".png")


# --- the flow on a real film ---------------------------------------------------------------

@pytest.mark.slow
def test_reject_then_approve_a_real_film(filmed, tmp_path):
    instance, store, run_id = filmed
    state = review_state(store, run_id)
    # The film job runs the quality checks, so the film records that automated checks ran.
    assert (state["status"], state["ready_to_share"], state["manual_review_required"], state["qa_mode"]) == (
        "pending", False, True, "automated")
    assert "Manual review required" in state["banner"]
    assert latest_review(store, run_id) is None

    screenshot = write(tmp_path / "frame grab 1.png", b"\x89PNG first")
    rejected = record_review(store, run_id, "reject", "Ava K.", notes="hands look wrong at 00:09",
                             attachments=[screenshot])
    copied = Path(rejected["attachments"][0]["path"])
    assert copied == store.path(run_id, "review", "frame_grab_1.png")
    assert copied.read_bytes() == b"\x89PNG first"
    state = review_state(store, run_id)
    assert (state["status"], state["ready_to_share"], state["reviewer"]) == ("rejected", False, "Ava K.")

    # Same name, other content: a new file, the first one untouched. Same content: reused.
    write(screenshot, b"\x89PNG second")
    again = record_review(store, run_id, "reject", "Ava K.", attachments=[screenshot, copied])
    assert [Path(a["path"]).name for a in again["attachments"]] == ["frame_grab_1-1.png", "frame_grab_1.png"]
    assert copied.read_bytes() == b"\x89PNG first"
    assert store.path(run_id, "review", "frame_grab_1-1.png").read_bytes() == b"\x89PNG second"

    approved = record_review(store, run_id, "approve", "Miko", notes="ship it")
    state = review_state(store, run_id)
    assert (state["status"], state["ready_to_share"], state["banner"]) == ("approved", True, None)
    assert latest_review(store, run_id)["review_id"] == approved["review_id"]
    assert film_status(instance, store, run_id)["review"]["status"] == "approved"

    # The record file, the events and the catalog all say the same.
    records = json.loads(store.path(run_id, "review", "reviews.json").read_text())
    assert [r["status"] for r in records] == ["rejected", "rejected", "approved"]
    events = read_events(store.root, run_id, "finalize_manual_review")
    assert [e["payload"]["status"] for e in events] == ["rejected", "rejected", "approved"]
    assert events[0]["payload"]["reviewer"] == "Ava K." and events[0]["payload"]["notes"] == "hands look wrong at 00:09"
    assert events[0]["payload"]["attachments"] == [str(copied)] and events[0]["actor"] == "Ava K."
    assert [r["event_id"] for r in records] == [e["event_id"] for e in events]
    rows = Catalog(store.root).artifacts(run_id, "review")
    assert {(Path(r["local_path"]).name, r["artifact_type"]) for r in rows} == {
        ("frame_grab_1.png", "review_attachment"), ("frame_grab_1-1.png", "review_attachment"),
        ("reviews.json", "review_record")}


@pytest.mark.slow
def test_review_command(filmed, tmp_path, capsys):
    _, store, run_id = filmed
    notes = write(tmp_path / "notes.txt", b"checked lipsync and subtitles")
    assert cli_inspect.main(["review", run_id, "--skip", "--reviewer", "ci", "--notes", "smoke run",
                             "--attach", str(notes)]) == 0
    out = capsys.readouterr().out
    assert f"{run_id}: skipped by ci" in out and "not ready to share" in out
    assert review_state(store, run_id)["status"] == "skipped"
    assert cli_inspect.main(["review", run_id, "--approve", "--reviewer", "ci", "--attach",
                             str(tmp_path / "nope.txt")]) == 2
    assert "attachments" in capsys.readouterr().err
    assert cli_inspect.main(["events", run_id]) == 0
    assert "finalize_manual_review" in capsys.readouterr().out


# --- staleness, foreign events, concurrency ----------------------------------------------------

def test_an_approval_does_not_survive_a_new_final_video(store):
    fake_final(store)
    record_review(store, RUN, "approve", "Ava")
    assert review_state(store, RUN)["ready_to_share"] is True
    final = store.path(RUN, "finalize", "video_final.mp4")
    os.utime(final, ns=(1, 1))  # touched, same bytes: still the reviewed video
    assert review_state(store, RUN)["status"] == "approved"
    fake_final(store, data=b"\x00\x00\x00\x18ftypmp42 other cut")  # re-rendered, same size
    state = review_state(store, RUN)
    assert (state["status"], state["ready_to_share"], state["stale_review"]) == ("pending", False, True)
    assert "changed after the last review" in state["banner"]


def test_an_event_written_directly_counts_as_a_review(store):
    fake_final(store)
    record_review(store, RUN, "reject", "Ava")
    write_event(store.root, RUN, "finalize_manual_review", {"status": "skipped"}, actor="notebook")
    write_event(store.root, RUN, "finalize_manual_review", {"status": "bogus"}, actor="notebook")
    found = reviews(store, RUN)
    assert [(r["status"], r["source"]) for r in found] == [("rejected", "record"), ("skipped", "event")]
    assert review_state(store, RUN)["status"] == "skipped" and found[-1]["reviewer"] == "notebook"


def test_concurrent_reviewers_lose_no_record(store, tmp_path):
    fake_final(store)
    shot = write(tmp_path / "same.png", b"same bytes")
    errors = []

    def review(n):
        try:
            record_review(store, RUN, "approve" if n % 2 else "reject", f"reviewer {n}", attachments=[shot])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=review, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    records = json.loads(store.path(RUN, "review", "reviews.json").read_text())
    assert sorted(r["reviewer"] for r in records) == sorted(f"reviewer {n}" for n in range(8))
    visible = sorted(p.name for p in store.stage_dir(RUN, "review").iterdir() if not p.name.startswith("."))
    assert visible == ["reviews.json", "same.png"]  # the same attachment is kept once, no temporary files left
