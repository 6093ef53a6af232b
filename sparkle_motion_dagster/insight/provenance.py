"""What made every file of a film run: one provenance record per published file.

A record names the file (path, sha256, size), where it belongs (stage, shot or
line), what made it (backend; for a real model its id or local path, a digest
of its weights' contents, dtype, device and settings), the seed and prompt or
text, every input file it was made from with its sha256, and the versions of
the project, Dagster, the model libraries in use and ffmpeg.

Records live with the run, one JSON file per published file under
``runs/<run_id>/.provenance/<stage>/<file name>.json`` (a JSON file's record keeps
the file's own name: ``alignment_map.json``, not ``alignment_map.json.json``;
records written under that older name are still read). Records are written
atomically, in a hidden folder, so catalog rebuilds never list them as artifacts, and in the
catalog row's ``metadata.provenance``. :func:`lineage` follows the inputs of a
file back to the plan. Dagster-free.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.store.storage import ArtifactStore, atomic_write_json, check_run_id, sha256_file

FOLDER = ".provenance"
SCHEMA = "sparkle-motion/provenance@1"
# Keys of an item's fingerprint inputs that are the prompt or text it was made from.
PROMPT_KEYS = ("prompt", "motion_prompt", "text")
# Model libraries whose versions matter, reported only when the process imported them.
MODEL_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".gguf", ".onnx", ".msgpack", ".h5")


# --- versions -------------------------------------------------------------------

def _distribution_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The checkout's commit when the package runs from a git working tree (``+dirty`` when changed)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


@lru_cache(maxsize=1)
def _ffmpeg_version() -> str | None:
    try:
        from sparkle_motion_dagster.media.ffmpeg import ffmpeg_exe

        first = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:  # noqa: BLE001 - a version we cannot read is reported as unknown, never fails a stage
        return None
    words = first.split()
    return words[2] if len(words) > 2 and words[0] == "ffmpeg" else (first.splitlines() or [None])[0]


def versions() -> dict[str, Any]:
    """The project (package version, git commit from a checkout), Dagster, the model libraries this
    process imported, ffmpeg and Python."""
    found: dict[str, Any] = {
        "sparkle_motion": _distribution_version("sparkle-motion-dagster"),
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
    }
    if "dagster" in sys.modules:
        found["dagster"] = _distribution_version("dagster")
    for name in MODEL_LIBRARIES:
        if name in sys.modules:
            found[name] = _distribution_version(name)
    found["ffmpeg"] = _ffmpeg_version()
    return found


# --- weights --------------------------------------------------------------------

_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()
# Files at least this big (weights) have their digest remembered across processes, in the state
# folder, so a 10 GB model is read once per change, not once per film.
REMEMBERED_BYTES = 64 * 1024 * 1024
DIGEST_CACHE = Path("cache") / "file_digests.json"


def file_digest(path: Path) -> str:
    """sha256 of a file's contents, remembered per (path, size, mtime): in this process for every file,
    and in the state folder for big ones."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _DIGESTS_LOCK:
        known = _DIGESTS.get(key)
    if known is None and stat.st_size >= REMEMBERED_BYTES:
        known = _remembered(key)
    if known is None:
        known = sha256_file(path)
        if stat.st_size >= REMEMBERED_BYTES:
            _remember(key, known)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = known
    return known


def _digest_cache() -> Path:
    from sparkle_motion_dagster.store.locations import state_dir

    return state_dir() / DIGEST_CACHE


def _remembered(key: tuple[str, int, int]) -> str | None:
    try:
        return json.loads(_digest_cache().read_text(encoding="utf-8")).get("\x00".join(map(str, key)))
    except (OSError, ValueError, AttributeError):
        return None


def _remember(key: tuple[str, int, int], digest: str) -> None:
    import contextlib
    import fcntl

    path = _digest_cache()
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs a re-read
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            except ValueError:
                known = {}
            known["\x00".join(map(str, key))] = digest
            atomic_write_json(path, known)


def weights_digest(source: str | Path) -> str | None:
    """A digest of a model's weights by their contents: for a folder, every weight file's relative
    path and sha256 (config files too, since they shape the model), never the folder's own name; for a
    file, its sha256. None when ``source`` is not on this disk (a repo id: see ``model``)."""
    path = Path(source).expanduser()
    if path.is_file():
        return "sha256:" + file_digest(path)
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts):
        if file.suffix.lower() in WEIGHT_SUFFIXES or file.suffix.lower() in (".json", ".txt", ".model"):
            digest.update(f"{file.relative_to(path).as_posix()}\x00{file_digest(file)}\n".encode())
    return "sha256:" + digest.hexdigest()


def model_provenance(resource: Any) -> dict[str, Any]:
    """What a stage's resource says about itself: backend and settings; for a real model (one with
    ``runtime()``), also its id, local path, weights digest, dtype and device, resolved without loading
    weights. A runtime that cannot be resolved is recorded as such, never raised."""
    settings = resource.model_dump() if hasattr(resource, "model_dump") else {}
    found: dict[str, Any] = {"backend": getattr(resource, "backend", type(resource).__name__),
                             "settings": json.loads(json.dumps(settings, default=str))}
    runtime = getattr(resource, "runtime", None)
    if not callable(runtime):
        return found
    try:
        resolved = runtime()
    except Exception as exc:  # noqa: BLE001 - a provenance record never fails a stage
        return {**found, "runtime_error": str(exc)}
    source = resolved.get("source") or resolved.get("checkpoint")
    model_id = settings.get("model") or settings.get("checkpoint")
    local = Path(str(source)).expanduser() if source else None
    found.update({
        "model": model_id,
        "local_path": str(local.resolve()) if local and local.exists() else None,
        "weights_digest": weights_digest(local) if local and local.exists() else None,
        "dtype": resolved.get("dtype") or resolved.get("preset"),
        "device": resolved.get("device") or resolved.get("preset"),
    })
    for key in ("family", "loras"):  # the model family a video adapter ran, LoRA files by sha256
        if resolved.get(key) is not None:
            found[key] = resolved[key]
    if found["weights_digest"] is None and source:
        from sparkle_motion_dagster.resources.model_support import model_digest

        found["weights_digest"] = model_digest(str(source))  # a cached snapshot's commit, or the repo id
    return found


# --- records --------------------------------------------------------------------

def record_name(file_name: str) -> str:
    """The record's file name for a file: ``<name>.json`` (``frame_000.png.json``), or the file's own
    name when it is a JSON file already (``alignment_map.json``), never a double ``.json.json``."""
    return file_name if file_name.lower().endswith(".json") else f"{file_name}.json"


def record_path(store: ArtifactStore, run_id: str, stage: str, path: Path) -> Path:
    """Where the record of ``path`` (a file of ``stage``) is kept; for a JSON file whose record was
    written under the older ``<name>.json.json`` name, that file while it is the only one on disk."""
    folder = store.run_dir(run_id) / FOLDER / stage
    name = Path(path).name
    current = folder / record_name(name)
    older = folder / f"{name}.json"
    return older if older != current and older.exists() and not current.exists() else current


def build_record(
    path: Path, *, store: ArtifactStore, run_id: str, stage: str, shot_id: str | None = None,
    line_id: str | None = None, item_id: str | None = None, backend: str | None = None, seed: int | None = None,
    prompt: str | None = None,
    sources: list[Path] | tuple[Path, ...] = (), model: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None, dagster_run_id: str | None = None,
) -> dict[str, Any]:
    """One file's record (see the module docstring); input paths are kept relative to the run."""
    path = Path(path)
    run_dir = store.run_dir(run_id)
    settings = {k: v for k, v in (settings or {}).items() if k not in ("renderer", "engine", "planner")}
    if prompt is None:
        prompt = next((settings[k] for k in PROMPT_KEYS if isinstance(settings.get(k), str)), None)
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "path": _relative(path, run_dir),
        "sha256": file_digest(path),
        "size_bytes": path.stat().st_size,
        "stage": stage,
        "shot_id": shot_id,
        "line_id": line_id,
        "item_id": item_id or shot_id or line_id,
        "backend": backend or (model or {}).get("backend"),
        "seed": seed,
        "prompt": prompt,
        "inputs": [{"path": _relative(Path(s), run_dir), "sha256": file_digest(Path(s))} for s in sources
                   if Path(s).is_file()],
        "model": model,
        "settings": json.loads(json.dumps(settings, default=str)),
        "versions": versions(),
        "dagster_run_id": dagster_run_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
    }


def write_record(store: ArtifactStore, record: dict[str, Any]) -> dict[str, Any]:
    """Keep the record with the run. A file that is still the one an earlier Dagster run made (the
    same sha256: a reused keyframe, say) keeps that run's id and time: they say when it was made."""
    folder = store.run_dir(record["run_id"]) / FOLDER / record["stage"]
    target = folder / record_name(Path(record["path"]).name)
    try:
        earlier = json.loads(record_path(store, record["run_id"], record["stage"], Path(record["path"]))
                             .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if earlier and earlier.get("sha256") == record["sha256"]:
        record = {**record, "dagster_run_id": earlier.get("dagster_run_id"), "created_at": earlier.get("created_at")}
    atomic_write_json(target, record)
    return record


def _relative(path: Path, run_dir: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def read_records(store: ArtifactStore, run_id: str) -> list[dict[str, Any]]:
    """Every record of the run, in stage order then by path (unreadable ones are skipped)."""
    from sparkle_motion_dagster.insight.catalog import stage_rank

    check_run_id(run_id)
    records = []
    for file in sorted((store.run_dir(run_id) / FOLDER).glob("*/*.json")):
        if file.name.endswith(".json.json") and file.with_name(file.name[:-len(".json")]).exists():
            continue  # an older record of a JSON file that has been written again under its new name
        try:
            records.append(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: (stage_rank(r["stage"]), r["path"]))


def find_record(records: list[dict[str, Any]], wanted: str, run_dir: Path) -> dict[str, Any] | None:
    """The record of a file named by its path (absolute, relative to the run or to the current folder)
    or by its file name when that is unique."""
    candidates = {wanted}
    as_path = Path(wanted).expanduser()
    for absolute in (as_path if as_path.is_absolute() else Path.cwd() / as_path,):
        candidates.add(_relative(absolute, run_dir))
    for record in records:
        if record["path"] in candidates:
            return record
    named = [r for r in records if Path(r["path"]).name == wanted]
    return named[0] if len(named) == 1 else None


def lineage(records: list[dict[str, Any]], record: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's record and every record it was made from, depth first (each once): for the final
    video, the master and the timeline, then every clip, keyframe and line, back to the plan."""
    by_path = {r["path"]: r for r in records}
    seen: set[str] = set()
    ordered: list[dict[str, Any]] = []

    def visit(current: dict[str, Any], depth: int) -> None:
        if current["path"] in seen:
            return
        seen.add(current["path"])
        ordered.append({**current, "depth": depth})
        for source in current.get("inputs", []):
            upstream = by_path.get(source["path"])
            if upstream is not None:
                visit(upstream, depth + 1)

    visit(record, 0)
    return ordered


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A materialization's lineage summary for the Dagster UI: its files, their inputs, backends, seeds."""
    return {
        "files": len(records),
        "inputs": sum(len(r["inputs"]) for r in records),
        "backends": sorted({r["backend"] for r in records if r.get("backend")}),
        "seeds": {(r.get("item_id") or Path(r["path"]).stem): r["seed"]
                  for r in records if r.get("seed") is not None},
        "weights": sorted({r["model"]["weights_digest"] for r in records
                           if (r.get("model") or {}).get("weights_digest")}),
        "records": sorted({f"{FOLDER}/{r['stage']}/{record_name(Path(r['path']).name)}" for r in records}),
    }


def markdown(records: list[dict[str, Any]]) -> str:
    """The summary as a small table (file, backend, seed, inputs)."""
    rows = ["| file | backend | seed | inputs |", "| --- | --- | --- | --- |"]
    for r in records:
        inputs = ", ".join(Path(i["path"]).name for i in r["inputs"]) or "-"
        rows.append(f"| {r['path']} | {r.get('backend') or '-'} | "
                    f"{'-' if r.get('seed') is None else r['seed']} | {inputs} |")
    return "\n".join(rows)


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What differs between two records of the same file (e.g. a replay's and the original's):
    sha256, backend, seed, model, settings and versions, key by key."""
    found = {}
    for key in ("sha256", "backend", "seed", "prompt"):
        if old.get(key) != new.get(key):
            found[key] = {"was": old.get(key), "now": new.get(key)}
    for key in ("model", "settings", "versions"):
        a, b = old.get(key) or {}, new.get(key) or {}
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                found[f"{key}.{name}"] = {"was": a.get(name), "now": b.get(name)}
    return found
