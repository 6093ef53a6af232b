"""An HTTP response that sends an already-open file descriptor, with single byte ranges.

Starlette's ``FileResponse`` takes a path and opens it again when it sends the
body, after the path was checked; a file swapped for a symbolic link in between
is then what gets sent, and its size no longer matches the ``Content-Length``
taken from the first look. This response never touches a path: the size, the
validators (``ETag``, ``Last-Modified``) and every byte come from one descriptor
(``fstat`` and ``pread``), which it closes when the response is done.

Ranges: one ``bytes=`` range (``a-b``, ``a-``, ``-n``) is answered ``206`` with
``Content-Range``; a range starting past the end is ``416``; several ranges, a
malformed header or an ``If-Range`` that does not match are answered with the
whole file (``200``), which HTTP allows a server to do.
"""

from __future__ import annotations

import os
import re
import weakref
from email.utils import formatdate

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

CHUNK_BYTES = 64 * 1024
_SINGLE_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(ValueError):
    """A byte range that starts at or past the end of the file."""


def parse_single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of one ``bytes=`` range within a file of ``size`` bytes;
    None when the whole file should be sent (no header, several ranges, a malformed one).
    Raises :class:`RangeNotSatisfiable` for a range that selects nothing."""
    match = _SINGLE_RANGE.match(header or "")
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # a suffix: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - suffix, 0), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None  # a-b with b < a is not a valid range: ignore it
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size)


def _close_quietly(descriptor: int) -> None:
    try:
        os.close(descriptor)
    except OSError:
        pass


class DescriptorResponse(Response):
    """Send the regular file open at ``descriptor`` (owned from now on: it is closed after sending,
    or when the response is dropped unsent)."""

    def __init__(self, descriptor: int, *, media_type: str, headers: dict[str, str] | None = None) -> None:
        self.descriptor = descriptor
        self._close = weakref.finalize(self, _close_quietly, descriptor)
        info = os.fstat(descriptor)
        self.size = info.st_size
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        self.headers.setdefault("accept-ranges", "bytes")
        self.headers.setdefault("last-modified", formatdate(info.st_mtime, usegmt=True))
        self.headers.setdefault("etag", f'"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"')

    def _wanted_range(self, scope: Scope) -> tuple[int, int] | None:
        """The byte range the request asks for, or None for the whole file."""
        request_headers = Headers(scope=scope)
        if_range = request_headers.get("if-range")
        if if_range is not None and if_range not in (self.headers["etag"], self.headers["last-modified"]):
            return None
        return parse_single_range(request_headers.get("range"), self.size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            try:
                wanted = self._wanted_range(scope)
            except RangeNotSatisfiable:
                refusal = Response(status_code=416, headers={"content-range": f"bytes */{self.size}"})
                await refusal(scope, receive, send)
                return
            start, end = wanted or (0, self.size)
            headers = self.headers.mutablecopy()
            headers["content-length"] = str(end - start)
            if wanted is not None:
                headers["content-range"] = f"bytes {start}-{end - 1}/{self.size}"
            await send({"type": "http.response.start", "status": 206 if wanted else 200, "headers": headers.raw})
            header_only = scope.get("method", "GET").upper() == "HEAD"
            await self._send_bytes(send, start, 0 if header_only else end - start)
        finally:
            self._close()

    async def _send_bytes(self, send: Send, offset: int, length: int) -> None:
        """Send exactly ``length`` bytes from ``offset``; a file that shrank ends the response with an error
        rather than with fewer bytes than announced."""
        remaining = length
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(os.pread, self.descriptor, min(CHUNK_BYTES, remaining), offset)
            if not chunk:
                raise RuntimeError("the file became shorter while it was being sent")
            offset += len(chunk)
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        if length == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
