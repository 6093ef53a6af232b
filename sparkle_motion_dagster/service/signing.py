"""Signed, expiring file links: a browser fetches ``/files/<path>?expires=..&sig=..`` without the
bearer header (a ``<video src>`` cannot send one).

The signature is an HMAC-SHA256, keyed with the service token, of the file path and the expiry
time, so a link names one file until one moment and cannot be widened to another file or
stretched in time. Dagster-free.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

DEFAULT_TTL_S = 6 * 3600  # long enough for an evening of review, short enough to go stale
MAX_EXPIRES_DIGITS = 12  # Unix seconds until the year 33658: more digits is not a link this service made


def signature(token: str, path: str, expires: int) -> str:
    message = f"{path}\n{int(expires)}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def signed_path(token: str, path: str, *, ttl_s: int = DEFAULT_TTL_S, now: float | None = None) -> str:
    """``/files/<path>?expires=..&sig=..`` for ``path`` (relative to the artifact root)."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"/files/{quote(path)}?" + urlencode({"expires": expires, "sig": signature(token, path, expires)})


def valid(token: str, path: str, expires: str | None, sig: str | None, *, now: float | None = None) -> bool:
    """Whether ``sig`` signs ``path`` until ``expires`` and that time has not passed. Anything
    else in the query (non-ASCII digits such as ``²``, a number of thousands of digits, a
    signature that is not ASCII hex) is simply not a valid signature."""
    if not expires or not sig or len(expires) > MAX_EXPIRES_DIGITS or not (expires.isascii() and expires.isdigit()):
        return False
    if len(sig) != 64 or not sig.isascii():
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature(token, path, int(expires)).encode(), sig.encode())
