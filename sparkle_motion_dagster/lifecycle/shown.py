"""Text from users (file names, plan fields) as logs and messages show it: on one line, escaped.

A log line is one record per line; a file name holding a newline would otherwise write
lines that look like the log's own (a forged "RUN_SUCCESS"). Escapes are Python's
``repr`` ones (``\\n``, ``\\x1b``, ``\\u2028``), a backslash is doubled so an escape
cannot be faked either, and bytes that are not UTF-8 show as ``\\udcXX``."""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Control, format, separator and surrogate code points: anything that could break or hide a line.
_ESCAPED_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")


def _escaped(character: str) -> str:
    if character in _NAMED:
        return _NAMED[character]
    if unicodedata.category(character) not in _ESCAPED_CATEGORIES:
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` escaped onto one line (see the module), cut to ``limit`` characters when given."""
    shown = "".join(_escaped(character) for character in str(text))
    return shown if limit is None or len(shown) <= limit else shown[:limit] + "…"
