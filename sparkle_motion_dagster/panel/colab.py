"""Colab's browser is not on the VM: a loopback URL must go through Colab's kernel port proxy."""

from __future__ import annotations

import functools
import sys
from urllib.parse import urlsplit, urlunsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def in_colab() -> bool:
    return "google.colab" in sys.modules


@functools.lru_cache(maxsize=32)
def _proxied_base(port: int) -> str:
    from google.colab.output import eval_js  # only in Colab

    return str(eval_js(f"google.colab.kernel.proxyPort({int(port)})")).rstrip("/")


def browser_url(url: str) -> str:
    """``url`` as the notebook's browser reaches it: unchanged outside Colab or for a host that is
    not loopback; in Colab a loopback URL goes through ``google.colab.kernel.proxyPort``."""
    parts = urlsplit(url)
    if not in_colab() or parts.hostname not in LOOPBACK or parts.port is None:
        return url
    base = urlsplit(_proxied_base(parts.port))
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, parts.fragment))
