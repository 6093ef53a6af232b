"""Manual review of a film run's final video (the seed's ``finalize_manual_review``).

Automated QA is removed (``QA_AUTOMATION_REMOVED=1``, the default), so nothing
is ready to share until a person signs off ``finalize/video_final.mp4``. A
review is recorded three ways at once:

* the review record, appended to ``runs/<run_id>/review/reviews.json`` (a JSON
  list rewritten atomically under a lock, so concurrent reviewers never lose
  one another's records);
* reviewer attachments (screenshots, notes), copied into ``runs/<run_id>/review/``
  under safe names that never overwrite an existing file, and recorded in the
  artifact catalog under the stage ``review``;
* a ``finalize_manual_review`` event in the run's event log, with payload
  ``{"status", "reviewer", "notes", "attachments"}``.

A review binds to the video the reviewer watched: the caller gives its sha256
(the CLI prints the current final's and takes ``--sha256``; the panel sends the one
it played), and a review of a file that is not the current final, an approval while
the run is being filmed again, or an approval of a final that no longer matches its
record is refused with the reason (:class:`ReviewRefusedError`).

Each record remembers which final video it judged (size, mtime and sha256): when
the final video is rendered again after a review, that review no longer applies
and the state goes back to ``pending``. A ``finalize_manual_review`` event that
was written straight into the event log (the seed's notebooks do this for
``"skipped"``) counts as a review too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.lifecycle.events import read_events, write_event
from sparkle_motion_dagster.insight.qa import qa_blocks_sharing, qa_record
from sparkle_motion_dagster.store.run_files import stage_file
from sparkle_motion_dagster.store.storage import (
    ArtifactStore,
    CopyMismatchError,
    UnknownRunError,
    atomic_write_json,
    check_run_id,
    copy_file_atomic,
    sha256_file,
)

EVENT_TYPE = "finalize_manual_review"
REVIEW_CHECK = {"asset": "video_final", "name": "approved_by_reviewer"}
"""The Dagster asset check of the gate, as the service and the control panel name it to run it."""
REVIEW_STAGE = "review"
RECORDS_NAME = "reviews.json"
LOCK_NAME = ".reviews.lock"
DECISIONS = {"approve": "approved", "reject": "rejected", "skip": "skipped"}
STATUSES = frozenset(DECISIONS.values())
MAX_NAME = 100


class NothingToReviewError(ValueError):
    """The run has no final video yet."""


class ReviewRefusedError(ValueError):
    """The review cannot bind to what the reviewer saw: the final is another file now, the run is
    being filmed again, or the final is not the file that was made."""


FILMING = ("queued", "running", "paused")


def filming_again(store: ArtifactStore, run_id: str, film_status: str | None) -> str | None:
    """What is filming the run now, if anything: its status (``film_status``, from the Dagster
    instance) when that is queued, running or paused, else ``running`` while a process marks
    itself as filming it (``lifecycle/control.py``); None when nothing is."""
    from sparkle_motion_dagster.lifecycle import control

    if film_status in FILMING:
        return film_status
    return "running" if control.is_running(store, run_id) else None


def final_video_sha256(store: ArtifactStore, run_id: str) -> str:
    """The sha256 of the run's current final video (what a review of it binds to)."""
    final = final_video_path(store, run_id)
    if not final.is_file():
        raise NothingToReviewError(
            f"{run_id}: nothing to review: finalize/video_final.mp4 does not exist yet; "
            f"finish the film first (sparkle-motion resume {run_id})")
    from sparkle_motion_dagster.store.integrity import file_record

    return file_record(final)["sha256"]


def final_video_path(store: ArtifactStore, run_id: str) -> Path:
    return stage_file(store, run_id, "video_final", "video_final.mp4")


def reviews_path(store: ArtifactStore, run_id: str) -> Path:
    return store.path(run_id, REVIEW_STAGE, RECORDS_NAME)


# --- recording ----------------------------------------------------------------

def record_review(store: ArtifactStore, run_id: str, decision: str, reviewer: str, notes: str = "",
                  attachments: Iterable[str | Path] = (), *, catalog=None, sha256: str | None = None,
                  refilming: str | None = None, qa_override: bool = False) -> dict[str, Any]:
    """Record a person's decision (``approve``, ``reject`` or ``skip``) on the run's final video.
    ``qa_override``: an approval that ships the film although automated checks failed (recorded with them).

    ``sha256``: the video the reviewer watched; a review of any other file is refused.
    ``refilming``: what is filming the run again (a status, e.g. ``running``), if anything; an
    approval then is refused, as is one of a final that no longer matches its record.
    Everything is checked before anything is written. Returns the review record.
    """
    check_run_id(run_id)
    if decision not in DECISIONS:
        raise ValueError(f"decision: must be one of approve, reject or skip, got {decision!r}")
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ValueError("reviewer: a reviewer name is required (e.g. --reviewer 'Ava K.')")
    if not isinstance(notes, str):
        raise ValueError("notes: must be text")
    reviewer = reviewer.strip()
    if not store.run_dir(run_id).is_dir():
        raise UnknownRunError(f"run_id: unknown run {run_id!r}: nothing was submitted under {store.root}")
    final = final_video_path(store, run_id)
    if not final.is_file():
        raise NothingToReviewError(
            f"{run_id}: nothing to review: finalize/video_final.mp4 does not exist yet; "
            f"finish the film first (sparkle-motion resume {run_id})")
    _check_binding(store, run_id, decision, final, sha256, refilming)
    sources = []
    for item in attachments:
        source = Path(item).expanduser()
        if not source.is_file():
            raise ValueError(f"attachments: {item} is not a readable file")
        sources.append(source.resolve())

    status = DECISIONS[decision]
    review_dir = store.stage_dir(run_id, REVIEW_STAGE)
    with _review_lock(review_dir):
        copied = [_copy_attachment(source, review_dir) for source in sources]
        review_id = uuid.uuid4().hex
        event = write_event(store.root, run_id, EVENT_TYPE, {
            "status": status,
            "reviewer": reviewer,
            "notes": notes,
            "attachments": [c["path"] for c in copied],
            "review_id": review_id,
        }, actor=reviewer)
        record = {
            "review_id": review_id,
            "run_id": run_id,
            "decision": decision,
            "status": status,
            "reviewer": reviewer,
            "notes": notes,
            "attachments": copied,
            "reviewed_at": event["timestamp"],
            "video_final": {"path": str(final), **_fingerprint(final)},
            "event_id": event["event_id"],
        }
        if qa_override:
            record["qa_override"] = {"failed_checks": qa_blocks_sharing(store, run_id)}
        records_file = reviews_path(store, run_id)
        atomic_write_json(records_file, _read_records(records_file) + [record])
    _catalog(store, run_id, record, records_file, catalog)
    return record


def _check_binding(store: ArtifactStore, run_id: str, decision: str, final: Path, sha256: str | None,
                   refilming: str | None) -> None:
    from sparkle_motion_dagster.store import integrity

    if sha256 is not None:
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise ValueError(f"sha256: 64 hexadecimal digits (the sha256 of the video watched), got {sha256!r}")
        current = final_video_sha256(store, run_id)
        if sha256.lower() != current:
            raise ReviewRefusedError(
                f"{run_id}: refused: the video you watched (sha256 {sha256.lower()[:16]}…) is not the current "
                f"finalize/video_final.mp4 (sha256 {current[:16]}…); watch the current one and review it")
    if decision != "approve":
        return
    if refilming:
        raise ReviewRefusedError(f"{run_id}: refused: the film is being made again ({refilming}); the final video "
                                 "may change; approve it once filming has ended")
    problem = integrity.output_problem(final)
    if problem:
        raise ReviewRefusedError(f"{run_id}: refused: finalize/video_final.mp4 is not the file that was made "
                                 f"({problem}); make it again with `sparkle-motion resume {run_id}`")


def _copy_attachment(source: Path, review_dir: Path) -> dict[str, Any]:
    """Copy one attachment into the review folder under a safe name, never over another file.
    A file already there with the same name stem and the same content is reused."""
    digest, size = sha256_file(source), source.stat().st_size
    stem, suffix = _split_name(safe_file_name(source.name))
    for n in range(10_000):
        candidate = review_dir / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
        if candidate.exists():
            if candidate.is_file() and candidate.stat().st_size == size and sha256_file(candidate) == digest:
                break  # the same file was attached before: reuse it
            continue
        try:  # renaming into place is safe: the review lock keeps other reviewers out
            copy_file_atomic(source, candidate, expected_sha256=digest)
        except CopyMismatchError:
            raise OSError(f"attachments: {source} changed while it was being copied; try again") from None
        break
    else:
        raise ValueError(f"attachments: too many files named like {source.name} in {review_dir}")
    return {"name": candidate.name, "path": str(candidate), "source": str(source), "sha256": digest,
            "size_bytes": size}


def safe_file_name(name: str) -> str:
    """A single path component of letters, digits, '_', '-' and '.', not hidden, at most 100 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip("._-")
    stem, suffix = _split_name(cleaned or "attachment")
    suffix = suffix[:16]
    return (stem[:MAX_NAME - len(suffix)] or "attachment") + suffix


def _split_name(name: str) -> tuple[str, str]:
    path = Path(name)
    return (path.stem, path.suffix) if path.stem else (name, "")


@contextlib.contextmanager
def _review_lock(review_dir: Path) -> Iterator[None]:
    review_dir.mkdir(parents=True, exist_ok=True)
    with open(review_dir / LOCK_NAME, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _catalog(store: ArtifactStore, run_id: str, record: dict, records_file: Path, catalog) -> None:
    """Spool catalog rows for the attachments and the review record (never blocks on the index)."""
    from sparkle_motion_dagster.insight.catalog import Catalog

    catalog = catalog or Catalog(store.root)
    for attachment in record["attachments"]:
        catalog.record_file(run_id, REVIEW_STAGE, attachment["path"], artifact_type="review_attachment",
                            metadata={"review_id": record["review_id"], "review_status": record["status"],
                                      "reviewer": record["reviewer"], "source": attachment["source"]})
    catalog.record_file(run_id, REVIEW_STAGE, records_file, artifact_type="review_record",
                        metadata={"latest_review_id": record["review_id"], "review_status": record["status"]})


# --- reading ------------------------------------------------------------------

def _read_records(path: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    if not isinstance(records, list):
        raise ValueError(f"{path} is not a JSON list of reviews")
    return records


def reviews(store: ArtifactStore, run_id: str) -> list[dict[str, Any]]:
    """Every review of the run, oldest first: the records, plus any ``finalize_manual_review``
    event that was written without a record (``"source": "event"``)."""
    check_run_id(run_id)
    records = [{**r, "source": "record"} for r in _read_records(reviews_path(store, run_id))]
    known = {r.get("review_id") for r in records} | {r.get("event_id") for r in records}
    for event in read_events(store.root, run_id, EVENT_TYPE):
        payload = event.get("payload") or {}
        if payload.get("review_id") in known or event.get("event_id") in known:
            continue
        if payload.get("status") not in STATUSES:
            continue
        records.append({
            "review_id": None, "run_id": run_id,
            "decision": {v: k for k, v in DECISIONS.items()}[payload["status"]], "status": payload["status"],
            "reviewer": payload.get("reviewer") or event.get("actor"), "notes": payload.get("notes", ""),
            "attachments": payload.get("attachments", []), "reviewed_at": event["timestamp"],
            "video_final": None, "event_id": event.get("event_id"), "source": "event",
        })
    return sorted(records, key=lambda r: _parse_time(r["reviewed_at"]))


def latest_review(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    """The most recent review of the run, or None."""
    found = reviews(store, run_id)
    return found[-1] if found else None


def review_state(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """Where the run stands: ``status`` is pending, approved, rejected or skipped;
    ``ready_to_share`` only when the current final video is approved."""
    flags = qa_record(store, run_id)
    found = reviews(store, run_id)
    latest = found[-1] if found else None
    final = final_video_path(store, run_id)
    status, stale = "pending", False
    if latest is not None:
        judged = latest.get("video_final")
        stale = bool(judged) and not _same_video(final, judged)
        status = "pending" if stale else latest["status"]
    # While checks are blocking (QA_AUTOMATION_REMOVED=0) a failed check holds the film back unless the
    # approval says, in so many words, that the reviewer overrides it.
    failed_checks = qa_blocks_sharing(store, run_id)
    overridden = bool(failed_checks) and status == "approved" and bool((latest or {}).get("qa_override"))
    state = {
        "status": status,
        "ready_to_share": status == "approved" and (not failed_checks or overridden),
        "failed_checks": failed_checks,
        "qa_override": overridden,
        **flags,
        "video_final_exists": final.is_file(),
        "reviewer": latest["reviewer"] if latest else None,
        "reviewed_at": latest["reviewed_at"] if latest else None,
        "notes": latest["notes"] if latest else None,
        "review_count": len(found),
        "stale_review": stale,
    }
    state["banner"] = _banner(state, run_id)
    return state


def _banner(state: dict[str, Any], run_id: str) -> str | None:
    if state["ready_to_share"]:
        return None
    if state["failed_checks"]:
        return (f"Automated checks failed (QA_AUTOMATION_REMOVED=0): {state['failed_checks'][0]}. Re-render the "
                f"item, or approve with the override (sparkle-motion review {run_id} --approve --override-qa "
                "--reviewer NAME).")
    if state["stale_review"]:
        return (f"The final video changed after the last review ({state['reviewer']}, {state['reviewed_at']}): "
                f"review it again before sharing (sparkle-motion review {run_id} --approve --reviewer NAME).")
    if state["manual_review_required"]:
        return ("Manual review required: QA automation is removed (QA_AUTOMATION_REMOVED=1). Review "
                "finalize/video_final.mp4 and record a finalize_manual_review decision before sharing "
                f"(sparkle-motion review {run_id} --approve|--reject|--skip --reviewer NAME).")
    return None


def _fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}


def _same_video(final: Path, judged: dict[str, Any]) -> bool:
    """Is ``final`` still the file that was reviewed? (size+mtime first, sha256 when they differ)."""
    try:
        stat = final.stat()
    except FileNotFoundError:
        return False
    if stat.st_size != judged.get("size_bytes"):
        return False
    if stat.st_mtime_ns == judged.get("mtime_ns"):
        return True
    return sha256_file(final) == judged.get("sha256")


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
