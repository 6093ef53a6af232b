"""Where a film run's files live, and how they are written.

Every artifact path goes through :class:`ArtifactStore`: ids are checked before
they become path components, paths are confirmed to stay under the root, and
files are published atomically (written to a temporary name in the same
folder, then renamed), so a crash never leaves a half-written file under a
final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.film.plan import id_problem

# \Z, not $: "$" also matches before a trailing newline. Callers use fullmatch; \Z keeps .match safe too.
RUN_ID_PATTERN = re.compile(r"run_[0-9a-f]{8,32}\Z")
TEMP_MARKER = ".partial-"


class UnsafeIdError(ValueError):
    """An id that would not be a safe single path component under the artifact root."""


class UnknownRunError(LookupError):
    """A run_id with nothing submitted under the artifact root."""


def new_run_id() -> str:
    return f"run_{secrets.token_hex(4)}"


def check_id(value: str, *, field: str) -> str:
    if not isinstance(value, str):
        raise UnsafeIdError(f"{field}: must be a string")
    problem = id_problem(value)
    if problem:
        raise UnsafeIdError(f"{field}: {value!r} {problem}")
    return value


def check_run_id(run_id: str) -> str:
    check_id(run_id, field="run_id")
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise UnsafeIdError(f"run_id: {run_id!r} must look like run_<8-32 hex digits>, e.g. run_9c29599b")
    return run_id


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- temporary files and folders: named with their writer's pid ---------------------------



def temp_writer_pid(name: str) -> int | None:
    """The pid of the process writing a temporary file or folder, read from its name
    (``<anything>.partial-<pid>-<anything>``), or None when the name is not a temporary one."""
    if TEMP_MARKER not in name:
        return None
    pid = name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def is_stale_temp(name: str) -> bool:
    """A temporary name whose writer is gone: another process, and none with that pid is alive."""
    pid = temp_writer_pid(name)
    return pid is not None and pid != os.getpid() and not process_alive(pid)


def remove_stale_temps(paths) -> int:
    """Remove the stale temporary files and folders among ``paths`` (links are unlinked, never
    followed); returns how many were removed."""
    removed = 0
    for path in paths:
        if not is_stale_temp(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


COPY_CHUNK_BYTES = 1 << 20


class CopyMismatchError(OSError):
    """A copied file's sha256 is not the one expected (the source changed, or the copy reads back wrong)."""


def sha256_file(path: Path, chunk_size: int = COPY_CHUNK_BYTES) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_output(final_path: Path, *, marker: str = TEMP_MARKER) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it into place on success.

    The temporary name keeps the extension so tools that infer a format from it
    (ffmpeg, PIL) still work, and contains ``marker`` (which must contain
    ``TEMP_MARKER``, so catalog scans and the file service skip it). On error the
    temporary file is removed and the previous file under the final name, if any,
    is untouched.
    """
    if TEMP_MARKER not in marker:
        raise ValueError(f"marker: {marker!r} must contain {TEMP_MARKER!r}")
    final_path.parent.mkdir(parents=True, exist_ok=True)
    temp = final_path.with_name(f"{final_path.stem}{marker}{os.getpid()}-{secrets.token_hex(3)}{final_path.suffix}")
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"nothing was written to {temp}")
        descriptor = os.open(temp, os.O_RDONLY)  # read-only: the file may already carry read-only bits
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temp, final_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def copy_file_atomic(source: Path, destination: Path, *, expected_sha256: str | None = None,
                     read_back: bool = False, keep_metadata: bool = False,
                     marker: str = TEMP_MARKER) -> tuple[str, int]:
    """Copy ``source`` to ``destination`` through a temporary name beside it, hashing the bytes as they
    are copied, then rename it into place (see :func:`atomic_output`). Returns (sha256, bytes copied).

    ``expected_sha256``: refuse the copy unless the bytes read have it (the source did not
    change since it was hashed). ``read_back``: hash the written copy again and refuse it
    unless it matches. ``keep_metadata``: copy the permission bits and times too. A refused
    copy raises :class:`CopyMismatchError` and leaves nothing under the final name.
    """
    with atomic_output(destination, marker=marker) as temp:
        digest, copied = hashlib.sha256(), 0
        with open(source, "rb") as src, open(temp, "wb") as dst:
            for chunk in iter(lambda: src.read(COPY_CHUNK_BYTES), b""):
                digest.update(chunk)
                dst.write(chunk)
                copied += len(chunk)
        sha256 = digest.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise CopyMismatchError(f"{source} changed while it was being copied (sha256 {sha256}, "
                                    f"expected {expected_sha256})")
        if read_back and sha256_file(temp) != sha256:
            raise CopyMismatchError(f"the copy of {source} at {temp} does not match its sha256")
        if keep_metadata:
            shutil.copystat(source, temp)
    return sha256, copied


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    with atomic_output(path) as temp:
        temp.write_bytes(data)
    return path


def atomic_write_json(path: Path, payload: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


class ArtifactStore:
    """The artifact root on local disk: ``<root>/runs/<run_id>/<stage>/<file>``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def run_dir(self, run_id: str) -> Path:
        return self._inside(self.root / "runs" / check_run_id(run_id))

    def stage_dir(self, run_id: str, stage: str) -> Path:
        return self._inside(self.run_dir(run_id) / check_id(stage, field="stage"))

    def path(self, run_id: str, stage: str, *names: str) -> Path:
        path = self.stage_dir(run_id, stage)
        for name in names:
            path = path / check_id(name, field="file name")
        return self._inside(path)

    def step_value_path(self, run_id: str, dagster_run_id: str, name: str) -> Path:
        """Where a value one step hands to the next (a list of shot ids, a tally) is kept:
        ``runs/<run_id>/.steps/<dagster run id>/<name>.json`` (hidden: not an artifact)."""
        return self._inside(self.run_dir(run_id) / ".steps" / check_id(dagster_run_id, field="dagster run id")
                            / f"{check_id(name, field='step value')}.json")

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UnsafeIdError(f"path {path} leaves the artifact root {self.root}")
        return resolved

    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        if not runs.is_dir():
            return []
        return sorted(p.name for p in runs.iterdir() if p.is_dir() and RUN_ID_PATTERN.fullmatch(p.name))

    # The request a film run was submitted with (plan + run options).
    def request_path(self, run_id: str) -> Path:
        return self.path(run_id, "request", "plan_request.json")

    def write_request(self, run_id: str, request: dict[str, Any]) -> Path:
        path = self.request_path(run_id)
        if path.exists():
            raise FileExistsError(f"run {run_id} already has a submitted plan at {path}")
        return atomic_write_json(path, request)

    def read_request(self, run_id: str) -> dict[str, Any]:
        path = self.request_path(run_id)
        if not path.exists():
            raise UnknownRunError(
                f"no plan was submitted for {run_id} (expected {path}); "
                "submit one with `sparkle-motion submit --plan FILE` or pass plan_path in the run config"
            )
        return json.loads(path.read_text(encoding="utf-8"))
