"""The artifact catalog: one row per file a film run wrote, kept in DuckDB.

Concurrency design
------------------
DuckDB lets one process at a time hold a database file open for writing, and
while it does no other process can open it at all, not even read-only. Many
processes write artifacts at once (a Dagster step process per asset, several
film runs side by side), so writers never open the database:

* :meth:`Catalog.record` publishes each record as one small JSON file in the
  run's spool, ``<root>/runs/<run_id>/.catalog/inbox/``, written to a temporary
  name and renamed into place. A rename is atomic, so a reader sees a whole
  record or none, and writers never wait for one another or for a reader.
* Whoever reads (or calls :meth:`Catalog.sync`) takes an exclusive ``fcntl``
  lock on ``<index>.lock``, opens the DuckDB file, moves every spooled record
  into it, answers the query, closes the file and releases the lock. Our own
  processes therefore never meet DuckDB's lock; a foreign process holding the
  file (a DuckDB shell left open on it) is waited out by retrying the open
  with backoff, and only after ``busy_timeout_s`` does :class:`CatalogBusyError`
  reach the caller.

Records are idempotent per ``(run_id, local_path)``: each carries the time it
was recorded in nanoseconds, and a row is replaced only by a record at least
as new, so spool files ingested twice (a crash between commit and clean-up) or
out of order change nothing. This was chosen over one DuckDB file per run
because step processes of the same run write at the same time too, so per-run
files would still need a lock, and a query across runs would have to attach
every file. If the index is lost, :meth:`Catalog.rebuild` recreates the rows
from the files under ``runs/*/``.

The index lives at ``ARTIFACTS_FS_INDEX`` when that is set, else at
``<artifact root>/index.duckdb``. The lock file must be on a filesystem with
working ``flock`` (a local disk; keep the index off network mounts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import mimetypes
import os
import random
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # DuckDB loads only when the index is opened: writers just spool files.
    import duckdb

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.store.scratch import clear_stale_scratch
from sparkle_motion_dagster.store.storage import (
    RUN_ID_PATTERN,
    TEMP_MARKER,
    ArtifactStore,
    atomic_write_bytes,
    check_id,
    check_run_id,
    remove_stale_temps,
    sha256_file,
)

INDEX_ENV = "ARTIFACTS_FS_INDEX"
SPOOL_DIR = ".catalog"
EVENTS_DIR = "events"  # the run's event log (see events.py), not a stage's output
STAGE_ORDER = stages.folder_order()
PLAYABLE_VIDEO = {"video/mp4", "video/webm"}
# Which artifact of a media type a stage preview shows first, when present.
PREVIEW_FIRST = stages.preview_first()

MIME_OVERRIDES = {".wav": "audio/wav", ".srt": "application/x-subrip", ".vtt": "text/vtt",
                  ".jsonl": "application/x-ndjson", ".mp4": "video/mp4", ".json": "application/json",
                  ".txt": "text/plain", ".md": "text/markdown"}
JSON_MIMES = {"application/json", "application/x-ndjson"}
TEXT_MIMES = {"application/x-subrip"}
_SWEPT: set[str] = set()  # the spools this process has cleared of stale temporaries
_SWEPT_LOCK = threading.Lock()

COLUMNS = ("run_id", "plan_id", "stage", "shot_id", "artifact_type", "artifact_uri", "local_path", "media_type",
           "mime_type", "size_bytes", "sha256", "duration_s", "width", "height", "created_at", "dagster_run_id",
           "metadata")
SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    run_id VARCHAR NOT NULL, plan_id VARCHAR, stage VARCHAR NOT NULL, shot_id VARCHAR,
    artifact_type VARCHAR NOT NULL, artifact_uri VARCHAR NOT NULL, local_path VARCHAR NOT NULL,
    media_type VARCHAR NOT NULL, mime_type VARCHAR, size_bytes BIGINT, sha256 VARCHAR,
    duration_s DOUBLE, width INTEGER, height INTEGER, created_at TIMESTAMP NOT NULL,
    dagster_run_id VARCHAR, metadata JSON, recorded_ns BIGINT NOT NULL,
    PRIMARY KEY (run_id, local_path)
)
"""
ALL_COLUMNS = COLUMNS + ("recorded_ns",)
UPSERT = f"""
INSERT INTO artifacts SELECT {", ".join(ALL_COLUMNS)} FROM staging
QUALIFY row_number() OVER (PARTITION BY run_id, local_path ORDER BY recorded_ns DESC) = 1
ON CONFLICT (run_id, local_path) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in ALL_COLUMNS if c not in ("run_id", "local_path"))}
WHERE excluded.recorded_ns >= artifacts.recorded_ns
"""


class CatalogBusyError(RuntimeError):
    """Another program kept the DuckDB file locked for longer than the catalog waits."""


@dataclasses.dataclass
class ArtifactRecord:
    """One file of a film run. Only ``run_id``, ``stage`` and ``local_path`` are required;
    :meth:`Catalog.record` fills the URI, media and mime type, artifact type and time."""

    run_id: str
    stage: str
    local_path: str | Path
    artifact_type: str | None = None
    plan_id: str | None = None
    shot_id: str | None = None
    artifact_uri: str | None = None
    media_type: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    created_at: str | datetime | None = None
    dagster_run_id: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


# --- what a file is ---------------------------------------------------------

def guess_mime(path: str | Path) -> str | None:
    suffix = Path(path).suffix.lower()
    return MIME_OVERRIDES.get(suffix) or mimetypes.guess_type(Path(path).name)[0]


def media_type_for(mime_type: str | None) -> str:
    """image, audio, video, json, text or other."""
    if not mime_type:
        return "other"
    major = mime_type.split("/", 1)[0]
    if major in ("image", "audio", "video"):
        return major
    if mime_type in JSON_MIMES:
        return "json"
    if major == "text" or mime_type in TEXT_MIMES:
        return "text"
    return "other"


def infer_artifact_type(stage: str, path: str | Path, media_type: str | None = None) -> str:
    """The artifact type a file gets when the caller names none (also used by rebuild): a media
    file's comes from the stage table's ``file_types``; a manifest's is its name."""
    path = Path(path)
    stem, suffix = path.stem.lower(), path.suffix.lower()
    media_type = media_type or media_type_for(guess_mime(path))
    from_table = stages.artifact_type(stage, path.name, media_type)
    if from_table:
        return from_table
    if suffix in (".srt", ".vtt"):
        return "subtitles"
    return "".join(c if c.isalnum() else "_" for c in stem) or media_type  # manifests: their name


MEDIA_FACTS = ("width", "height", "duration_s")


def describe_file(path: str | Path, *, read_media: bool = True) -> dict[str, Any]:
    """Facts read from the file itself: size, sha256, mime and media type, and when the
    header allows (and ``read_media``), width/height (images, MP4) and duration_s (WAV, MP4;
    an MP4's to 0.01 s, from the media layer's probe)."""
    path = Path(path)
    mime = guess_mime(path)
    facts: dict[str, Any] = {"size_bytes": path.stat().st_size, "sha256": sha256_file(path), "mime_type": mime,
                             "media_type": media_type_for(mime), "width": None, "height": None, "duration_s": None}
    with contextlib.suppress(Exception):  # an unreadable header leaves the optional facts empty
        if not read_media:
            pass
        elif facts["media_type"] == "image":
            from PIL import Image

            with Image.open(path) as image:
                facts["width"], facts["height"] = image.size
        elif path.suffix.lower() == ".wav":
            from sparkle_motion_dagster.media.wav import wav_duration_s

            facts["duration_s"] = round(wav_duration_s(path), 6)
        elif path.suffix.lower() in (".mp4", ".mov", ".m4a"):
            from sparkle_motion_dagster.media.ffmpeg import probe

            info = probe(path)
            facts.update({key: info[key] for key in ("width", "height", "duration_s") if info[key] is not None})
    return facts


# --- the catalog --------------------------------------------------------------

_last_ns = 0
_ns_lock = threading.Lock()


def _record_ns() -> int:
    """Nanoseconds since the epoch, strictly increasing within this process."""
    global _last_ns
    with _ns_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _as_utc(value: str | datetime | None) -> datetime:
    if value is None:
        return _utc_now()
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


class Catalog:
    """Every artifact file of every film run under one artifact root.

    ``record``/``record_file`` only spool (never blocking, never touching DuckDB);
    ``artifacts``, ``runs``, ``sync``, ``delete_run`` and ``rebuild`` open the index
    briefly under the catalog lock.
    """

    def __init__(self, root: str | Path, index_path: str | Path | None = None, *, busy_timeout_s: float = 120.0):
        self.store = ArtifactStore(root)
        self.root = self.store.root
        configured = index_path or os.environ.get(INDEX_ENV)
        self.index_path = Path(configured).expanduser().resolve() if configured else self.root / "index.duckdb"
        self.lock_path = self.index_path.with_name(self.index_path.name + ".lock")
        self.busy_timeout_s = busy_timeout_s
        self._ingested = 0

    # writing ---------------------------------------------------------------
    def record(self, entry: ArtifactRecord | Mapping[str, Any]) -> dict[str, Any]:
        """Spool one record; it replaces any earlier record of the same (run_id, local_path).
        Returns the normalized record. Does not read the file (see :meth:`record_file`)."""
        row = self._normalize(entry)
        spool = self._spool(row["run_id"])
        self._sweep_once(row["run_id"])
        name = f"{row['recorded_ns']:020d}-{os.getpid()}-{secrets.token_hex(4)}.json"
        atomic_write_bytes(spool / name, json.dumps(row, default=str).encode())
        return row

    def record_file(self, run_id: str, stage: str, path: str | Path, **fields: Any) -> dict[str, Any]:
        """Describe ``path`` (size, sha256, media facts) and record it. ``fields`` are any
        :class:`ArtifactRecord` fields; those not None override what the file says. A stage gives
        ``duration_s`` only when it measured it from the file (frames it decoded, samples it read);
        a duration from the plan is never recorded as the file's."""
        # A stage that measured a file's size and duration spares the probe (~15 ms per MP4).
        facts = describe_file(path, read_media=any(fields.get(k) is None for k in MEDIA_FACTS))
        facts.update({k: v for k, v in fields.items() if v is not None})
        return self.record({**facts, "run_id": run_id, "stage": stage, "local_path": path})

    def _normalize(self, entry: ArtifactRecord | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(entry, ArtifactRecord):
            entry = dataclasses.asdict(entry)
        unknown = set(entry) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown artifact record fields: {sorted(unknown)}")
        row = {column: entry.get(column) for column in COLUMNS}
        check_run_id(row["run_id"])
        check_id(row["stage"], field="stage")
        if row["shot_id"] is not None:
            check_id(row["shot_id"], field="shot_id")
        if not row["local_path"]:
            raise ValueError("local_path is required")
        local = Path(row["local_path"]).expanduser()
        if not local.is_absolute():
            raise ValueError(f"local_path must be absolute, got {row['local_path']!r}")
        local = local.resolve()
        row["local_path"] = str(local)
        row["artifact_uri"] = row["artifact_uri"] or local.as_uri()
        row["mime_type"] = row["mime_type"] or guess_mime(local)
        row["media_type"] = row["media_type"] or media_type_for(row["mime_type"])
        row["artifact_type"] = row["artifact_type"] or infer_artifact_type(row["stage"], local, row["media_type"])
        row["created_at"] = _as_utc(row["created_at"]).isoformat()
        metadata = row["metadata"] or {}
        if not isinstance(metadata, Mapping):
            raise ValueError("metadata must be a dict")
        row["metadata"] = json.loads(json.dumps(dict(metadata), default=str))
        row["recorded_ns"] = _record_ns()
        return row

    def _spool(self, run_id: str) -> Path:
        return self.store.run_dir(run_id) / SPOOL_DIR / "inbox"

    def _sweep_once(self, run_id: str) -> None:
        """The first record a process spools for a run clears what killed writers left behind:
        that run's stale spool temporaries and, once per process, the state folder's stale scratch."""
        key = str(self._spool(run_id))
        with _SWEPT_LOCK:
            first_in_process = not _SWEPT
            if key in _SWEPT:
                return
            _SWEPT.add(key)
        with contextlib.suppress(OSError):  # tidying up must never fail a record
            if first_in_process:
                clear_stale_scratch()
            self.clear_stale_spool(run_id)

    def clear_stale_spool(self, run_id: str | None = None) -> int:
        """Remove spool temporaries whose writer is gone (killed between writing a record and renaming
        it into place): one run's, or every run's. Returns how many were removed."""
        return remove_stale_temps([p for p in self._spool_files(run_id) if TEMP_MARKER in p.name])

    # reading ---------------------------------------------------------------
    def artifacts(self, run_id: str, stage: str | None = None) -> list[dict[str, Any]]:
        """The run's rows (optionally one stage's), in stage order, then by path."""
        check_run_id(run_id)
        sql = f"SELECT {', '.join(COLUMNS)} FROM artifacts WHERE run_id = ?"
        params: list[Any] = [run_id]
        if stage is not None:
            sql, params = sql + " AND stage = ?", params + [check_id(stage, field="stage")]
        with self._session() as con:
            rows = con.execute(sql + " ORDER BY stage, local_path", params).fetchall()
        entries = [self._entry(row) for row in rows]
        return sorted(entries, key=lambda e: (stage_rank(e["stage"]), e["local_path"]))

    def runs(self) -> list[str]:
        with self._session() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT run_id FROM artifacts ORDER BY run_id").fetchall()]

    def sync(self, *, wait: bool = True) -> int:
        """Move spooled records into the index; returns how many. With ``wait=False`` it
        returns 0 at once when another process is consolidating."""
        with self._session(wait=wait) as con:
            return 0 if con is None else self._ingested

    @staticmethod
    def _entry(row: tuple) -> dict[str, Any]:
        entry = dict(zip(COLUMNS, row))
        entry["created_at"] = entry["created_at"].isoformat() + "Z"
        entry["metadata"] = json.loads(entry["metadata"]) if entry["metadata"] else {}
        return entry

    # maintenance -----------------------------------------------------------
    def delete_run(self, run_id: str) -> int:
        """Forget a run's rows and spooled records (its files stay). Returns rows removed."""
        check_run_id(run_id)
        with self._session() as con:
            for path in self._spooled(run_id):
                path.unlink(missing_ok=True)
            removed = con.execute("SELECT count(*) FROM artifacts WHERE run_id = ?", [run_id]).fetchone()[0]
            con.execute("DELETE FROM artifacts WHERE run_id = ?", [run_id])
        return removed

    def rebuild(self, store_root: str | Path | None = None) -> int:
        """Recreate the rows from the files under ``<store_root>/runs/*/`` (default: this
        catalog's root). Rows whose file is unchanged (same sha256) keep what was recorded;
        other files get inferred rows; rows whose file is gone are dropped; spool temporaries
        left by killed writers are removed. Returns the number of files found."""
        found = scan_runs(Path(store_root).expanduser().resolve() if store_root else self.root)
        with self._session() as con:
            existing = {(row["run_id"], row["local_path"]): row for row in map(self._entry, con.execute(
                f"SELECT {', '.join(COLUMNS)} FROM artifacts").fetchall())}
            rows = []
            for row in found:
                kept = existing.pop((row["run_id"], row["local_path"]), None)
                rows.append(kept if kept and kept["sha256"] == row["sha256"] else row)
            rows += [row for row in existing.values() if Path(row["local_path"]).exists()]
            con.execute("DELETE FROM artifacts")
            self._insert(con, [{**r, "recorded_ns": _record_ns()} for r in rows])
        return len(found)

    # the locked session ----------------------------------------------------
    @contextlib.contextmanager
    def _session(self, *, wait: bool = True) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """Hold the catalog lock, open the index, ingest the spool, yield, commit, close."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield None
                return
            try:
                con = self._connect()
                try:
                    con.execute(SCHEMA)
                    consumed = self._ingest(con)
                    yield con
                    con.commit()
                finally:
                    con.close()
                for path in consumed:  # only after the rows are safely in the index
                    path.unlink(missing_ok=True)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Open the index read-write, waiting out a foreign process that holds it."""
        import duckdb

        deadline, delay = time.monotonic() + self.busy_timeout_s, 0.02
        while True:
            try:
                con = duckdb.connect(str(self.index_path))
                con.begin()
                return con
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise CatalogBusyError(f"{self.index_path} stayed locked by another program: {exc}") from exc
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 1.0)

    def _spool_files(self, run_id: str | None = None) -> list[Path]:
        """Every ``.json`` in the spool of one run (or of every run), temporaries included."""
        runs = self.root / "runs"
        pattern = f"{run_id or '*'}/{SPOOL_DIR}/inbox/*.json"
        return sorted(p for p in runs.glob(pattern) if RUN_ID_PATTERN.fullmatch(p.parent.parent.parent.name))

    def _spooled(self, run_id: str | None = None) -> list[Path]:
        """The spooled records (whole files) of one run, or of every run."""
        return [p for p in self._spool_files(run_id) if TEMP_MARKER not in p.name]

    def _ingest(self, con: duckdb.DuckDBPyConnection) -> list[Path]:
        """Load spooled records into the open index; returns the spool files consumed. Temporaries
        whose writer is gone are removed on the way."""
        consumed, rows = [], []
        files = self._spool_files()
        remove_stale_temps([p for p in files if TEMP_MARKER in p.name])
        for path in (p for p in files if TEMP_MARKER not in p.name):
            try:
                row = json.loads(path.read_bytes())
                rows.append({column: row[column] for column in ALL_COLUMNS})
                consumed.append(path)
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError):  # unreadable: keep it aside, never fail a read
                rejected = path.parent.parent / "rejected"
                rejected.mkdir(exist_ok=True)
                os.replace(path, rejected / path.name)
        self._insert(con, rows)
        self._ingested = len(rows)
        return consumed

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        con.execute("CREATE OR REPLACE TEMP TABLE staging AS SELECT * FROM artifacts LIMIT 0")
        placeholders = ", ".join("?" * len(ALL_COLUMNS))
        con.executemany(f"INSERT INTO staging ({', '.join(ALL_COLUMNS)}) VALUES ({placeholders})", [
            [_as_utc(r["created_at"]) if c == "created_at" else json.dumps(r[c]) if c == "metadata" else r[c]
             for c in ALL_COLUMNS] for r in rows])
        con.execute(UPSERT)
        con.execute("DROP TABLE staging")


def stage_rank(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage), "") if stage in STAGE_ORDER else (len(STAGE_ORDER), stage)


def scan_runs(store_root: Path) -> list[dict[str, Any]]:
    """Rows inferred from the files of every run under ``store_root``: the stage is the
    first folder under the run, a folder between stage and file is the shot_id, and
    hidden files, temporary files and the event log are skipped."""
    rows = []
    for run_dir in sorted((store_root / "runs").glob("run_*")):
        if not (run_dir.is_dir() and RUN_ID_PATTERN.match(run_dir.name)):
            continue
        plan_id = _plan_id(run_dir)
        for folder, dirs, files in os.walk(run_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            parts = Path(folder).relative_to(run_dir).parts
            if not parts or parts[0] == EVENTS_DIR:
                continue
            for name in sorted(files):
                if name.startswith(".") or TEMP_MARKER in name:
                    continue
                path = Path(folder) / name
                facts = describe_file(path)
                artifact_type = infer_artifact_type(parts[0], path, facts["media_type"])
                shot_id = parts[1] if len(parts) > 1 else (
                    path.stem if artifact_type in ("shot_video", "shot_lipsync_video") else None)
                created = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(tzinfo=None)
                rows.append({**facts, "run_id": run_dir.name, "plan_id": plan_id, "stage": parts[0],
                             "shot_id": shot_id, "artifact_type": artifact_type, "artifact_uri": path.as_uri(),
                             "local_path": str(path), "created_at": created.isoformat(),
                             "dagster_run_id": None, "metadata": {}})
    return rows


def _plan_id(run_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        report = json.loads((run_dir / stages.folder("movie_plan") / "plan_validation.json").read_text(encoding="utf-8"))
        return report["summary"]["plan_id"]
    return None


# --- the /artifacts payload -----------------------------------------------------

def artifacts_payload(catalog: Catalog, run_id: str, stage: str | None = None,
                      review_summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The seed's ``GET /artifacts`` response for a run (optionally one stage).

    ``review_summary`` maps a stage name to its manual-review summary (recorded elsewhere,
    e.g. from ``finalize_manual_review`` events). A stage without one gets a count of its
    rows' ``metadata.review_status`` values, or None when none has a status.
    """
    entries = catalog.artifacts(run_id, stage)
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_stage.setdefault(entry["stage"], []).append(entry)
    return {
        "run_id": run_id,
        "stages": [stage_section(name, rows, (review_summary or {}).get(name)) for name, rows in by_stage.items()],
        "artifacts": entries,
    }


def stage_section(stage: str, rows: list[dict[str, Any]], review: Any = None) -> dict[str, Any]:
    media_summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        summary = media_summary.setdefault(row["media_type"],
                                           {"count": 0, "total_duration_s": 0.0, "total_size_bytes": 0})
        summary["count"] += 1
        summary["total_duration_s"] = round(summary["total_duration_s"] + (row["duration_s"] or 0.0), 6)
        summary["total_size_bytes"] += row["size_bytes"] or 0
    video = _preview_entry(rows, "video")
    if video is not None:
        video = {**video, "playback_ready": playback_ready(video)}
    if review is None:
        statuses = [r["metadata"]["review_status"] for r in rows if r["metadata"].get("review_status")]
        review = {"by_status": {s: statuses.count(s) for s in sorted(set(statuses))}} if statuses else None
    return {
        "stage": stage,
        "count": len(rows),
        "artifact_types": sorted({r["artifact_type"] for r in rows}),
        "media_types": sorted({r["media_type"] for r in rows}),
        "preview": {"image": _preview_entry(rows, "image"), "audio": _preview_entry(rows, "audio"), "video": video},
        "media_summary": media_summary,
        "review_summary": review,
        "artifacts": rows,
    }


def _preview_entry(rows: list[dict[str, Any]], media_type: str) -> dict[str, Any] | None:
    candidates = [r for r in rows if r["media_type"] == media_type]
    for artifact_type in PREVIEW_FIRST:
        for row in candidates:
            if row["artifact_type"] == artifact_type:
                return row
    return candidates[0] if candidates else None


def playback_ready(entry: Mapping[str, Any]) -> bool:
    """The file is on local disk, whole (its recorded size) and in a format browsers play."""
    try:
        size = os.path.getsize(entry["local_path"])
    except OSError:
        return False
    recorded = entry.get("size_bytes")
    return size > 0 and (recorded is None or recorded == size) and entry.get("mime_type") in PLAYABLE_VIDEO
