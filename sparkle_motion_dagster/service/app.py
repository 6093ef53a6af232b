"""The artifact service: a small HTTP API over the artifact root (the seed's filesystem shim).

Routes:

* ``GET /healthz`` — readiness, never behind the token;
* ``GET /artifacts?run_id=&stage=`` — the catalog's ``/artifacts`` payload with the
  review state as ``review_summary``; every row gets a ``download_url``;
* ``GET /status?run_id=`` — :func:`status.film_status`;
* ``GET /ready`` — the artifact root and the Dagster instance both answer, and which root this is
  (``root_id``, a fingerprint of its path; never behind the token);
* the control surface of :mod:`service.actions`: ``POST /runs``, ``/control/{pause,resume,stop}``,
  ``/review``, ``/regenerate``;
* ``GET|HEAD /files/<path>`` — a file under ``<root>/runs/``, with HTTP Range
  support (``206`` with ``Content-Range``). Paths that leave the run folders,
  directly or through a symlink, hidden files (also when a link resolves to one)
  and half-written temporary files are answered ``404``. The file is sent from
  the descriptor opened after the check, without following links, so swapping
  a file for a link during a request cannot serve anything outside ``runs/``.

With a token (``ARTIFACTS_FS_TOKEN``) every route but ``/healthz`` and ``/ready`` requires
``Authorization: Bearer <token>``; a ``/files`` link also passes with the signature that the
``download_url`` of its ``/artifacts`` row carries (:mod:`service.signing`: it names that one
file and expires). Without a token the service listens on loopback only and asks nothing. :func:`serve` refuses to listen on a
non-loopback address without one.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sparkle_motion_dagster.orchestration.status import artifacts_view, film_status
from sparkle_motion_dagster.insight.catalog import Catalog, guess_mime
from sparkle_motion_dagster.store.confined import open_beneath
from sparkle_motion_dagster.lifecycle.control import read_hold
from sparkle_motion_dagster.store.locations import path_id
from sparkle_motion_dagster.store.storage import (
    TEMP_MARKER,
    ArtifactStore,
    UnknownRunError,
    UnsafeIdError,
    check_run_id,
)
from sparkle_motion_dagster.service import signing
from sparkle_motion_dagster.service.actions import actions_router
from sparkle_motion_dagster.service.descriptor_response import DescriptorResponse
from sparkle_motion_dagster.service.strict_json import finite_json_body, validation_error

TOKEN_ENV = "ARTIFACTS_FS_TOKEN"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7077


def _bearer_guard(token: str | None, *, signed_files: bool = False) -> Callable[[Request], None]:
    """Checks the bearer header; with ``signed_files`` a valid ``expires``/``sig`` pair for the
    requested ``/files`` path passes too."""
    expected = token.encode() if token else None

    def guard(request: Request) -> None:
        if expected is None:
            return
        if signed_files and signing.valid(token, request.path_params.get("file_path", ""),
                                          request.query_params.get("expires"), request.query_params.get("sig")):
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(status_code=401, detail="a valid 'Authorization: Bearer <token>' header is required",
                                headers={"WWW-Authenticate": "Bearer"})

    return guard


def _run_id(value: str | None) -> str:
    if not value:
        raise UnsafeIdError("run_id: the query parameter run_id is required, e.g. ?run_id=run_9c29599b")
    return check_run_id(value)


def _servable(parts: tuple[str, ...]) -> bool:
    """Whether path components under ``runs/`` name a file the service may send: no hidden
    component, nothing that is not a plain name, no half-written temporary file."""
    return bool(parts) and TEMP_MARKER not in parts[-1] and not any(
        part in ("", ".", "..") or part.startswith(".") or "\\" in part or "\x00" in part for part in parts)


def resolve_served_file(root: Path, requested: str) -> Path | None:
    """The file ``requested`` names under ``<root>/runs/`` after following its links, or None when it
    may not be served: the request and the resolved path both stay inside ``runs/`` with no hidden
    or temporary name. Open it with :func:`open_served_file`, never by this path."""
    relative = PurePosixPath(requested)
    if relative.is_absolute() or not relative.parts or relative.parts[0] != "runs" \
            or not _servable(relative.parts[1:]):
        return None
    runs = (root / "runs").resolve()
    try:
        resolved = (root / Path(*relative.parts)).resolve(strict=True)  # follows every symlink
    except (OSError, RuntimeError):
        return None
    if runs not in resolved.parents or not _servable(resolved.relative_to(runs).parts):
        return None
    return resolved


def open_served_file(root: Path, requested: str) -> tuple[int, Path] | None:
    """``(descriptor, resolved path)`` of the file ``requested`` names, or None when it may not be served.

    The resolved path is opened one component at a time without following links
    (:func:`open_beneath`), so a component swapped for a link after the check fails the open
    instead of leading out of ``runs/``. The caller owns the descriptor."""
    resolved = resolve_served_file(root, requested)
    if resolved is None:
        return None
    runs = (root / "runs").resolve()
    try:
        return open_beneath(runs, resolved.relative_to(runs).parts), resolved
    except OSError:
        return None


def create_app(store_root: str | Path, instance_getter: Callable[[], Any], token: str | None = None) -> FastAPI:
    """The FastAPI app over ``store_root``; ``instance_getter()`` returns the Dagster instance."""
    store = ArtifactStore(store_root)
    root = store.root
    guard = Depends(_bearer_guard(token or None))
    file_guard = Depends(_bearer_guard(token or None, signed_files=True))
    instance_lock = threading.Lock()  # one reader of the Dagster instance at a time
    app = FastAPI(title="Sparkle Motion artifact service", docs_url=None, redoc_url=None, openapi_url=None)

    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(UnsafeIdError)
    async def bad_id(request: Request, exc: UnsafeIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(UnknownRunError)
    async def unknown_run(request: Request, exc: UnknownRunError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        problems = []
        if not root.is_dir():
            problems.append("the artifact root does not exist")
        elif not os.access(root, os.R_OK | os.X_OK):
            problems.append("the artifact root is not readable")
        body = {"status": "unhealthy" if problems else "ok", "backend": "filesystem",
                "auth": "token" if token else "none", "problems": problems}
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/ready")
    def ready() -> JSONResponse:
        problems = []
        if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
            problems.append(f"the artifact root {root} is missing or unreadable")
        try:
            with instance_lock:
                instance_getter().get_dynamic_partitions("run_id")
        except Exception as exc:  # noqa: BLE001 - any failure to reach the instance means not ready
            problems.append(f"the Dagster instance does not answer: {exc}")
        # root_id: which artifact root this is (a fingerprint), so a notebook can tell that an
        # already running service serves its state before it reuses it.
        return JSONResponse({"ready": not problems, "problems": problems, "root_id": path_id(root)},
                            status_code=503 if problems else 200)

    @app.get("/artifacts", dependencies=[guard])
    def artifacts(run_id: str | None = None, stage: str | None = None) -> dict[str, Any]:
        payload = artifacts_view(store, _run_id(run_id), stage or None, catalog=Catalog(root))
        for row in payload["artifacts"]:
            row["download_url"] = _download_url(root, row["local_path"], token or None)
        return payload

    @app.get("/status", dependencies=[guard])
    def status(run_id: str | None = None, log_lines: int = 20) -> dict[str, Any]:
        run_id = _run_id(run_id)
        if not 0 <= log_lines <= 1000:
            raise HTTPException(status_code=400, detail="log_lines: must be between 0 and 1000")
        with instance_lock:
            payload = film_status(instance_getter(), store, run_id, log_lines=log_lines)
        payload["hold"] = read_hold(store, run_id)  # where a paused run holds, once it does
        return payload

    def status_of(run_id: str) -> dict[str, Any]:
        with instance_lock:
            return film_status(instance_getter(), store, run_id, log_lines=0)

    app.include_router(actions_router(store, instance_getter, instance_lock, status_of),
                       dependencies=[guard, Depends(finite_json_body)])

    @app.api_route("/files/{file_path:path}", methods=["GET", "HEAD"], dependencies=[file_guard])
    def files(file_path: str) -> DescriptorResponse:
        opened = open_served_file(root, file_path)
        if opened is None:
            raise HTTPException(status_code=404, detail="not found")
        descriptor, path = opened
        return DescriptorResponse(descriptor, media_type=guess_mime(path) or "application/octet-stream")

    return app


def _download_url(root: Path, local_path: str, token: str | None) -> str | None:
    """The row's ``/files`` link: signed and expiring when the service has a token."""
    try:
        relative = Path(local_path).resolve().relative_to(root).as_posix()
    except ValueError:
        return None
    return signing.signed_path(token, relative) if token else "/files/" + relative


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_bind(host: str, port: int, token: str | None) -> None:
    """Refuse settings that would expose the artifacts: a non-loopback host needs a token."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port: must be between 1 and 65535, got {port!r}")
    if not is_loopback(host) and not token:
        raise ValueError(
            f"--host: refusing to serve artifacts on {host!r} (not a loopback address) without a token; "
            f"set {TOKEN_ENV} (`sparkle-motion artifacts-env --root DIR --index FILE --emit-token` prints one) "
            "or bind to 127.0.0.1")


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, store_root: str | Path | None = None,
          token: str | None = None, instance_getter: Callable[[], Any] | None = None,
          log_level: str = "info") -> None:
    """Run the service with uvicorn until interrupted. ``token`` defaults to ``ARTIFACTS_FS_TOKEN``,
    ``store_root`` to the configured artifact root, the instance to the project's DAGSTER_HOME."""
    import uvicorn

    from sparkle_motion_dagster.store.locations import artifacts_root

    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    check_bind(host, port, token)
    root = Path(store_root) if store_root else artifacts_root()
    if instance_getter is None:
        instance_getter = _project_instance()
    app = create_app(root, instance_getter, token=token)
    auth = "Bearer token required" if token else "no token: loopback only"
    print(f"serving artifacts from {ArtifactStore(root).root} on http://{host}:{port} ({auth})", flush=True)
    # Play links are a path under the root; `sparkle-motion link` finds where they play now here.
    from sparkle_motion_dagster.service.links import forget_service, record_service, service_url

    here = service_url(host, port)
    record_service(ArtifactStore(root).root, here)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        forget_service(ArtifactStore(root).root, here)


def _project_instance() -> Callable[[], Any]:
    """A getter for the persistent Dagster instance, opened on first use."""
    opened: list[Any] = []
    lock = threading.Lock()

    def get():
        with lock:
            if not opened:
                from sparkle_motion_dagster.store.locations import dagster_instance

                opened.append(dagster_instance())
            return opened[0]

    return get
