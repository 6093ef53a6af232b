"""Opening a file under a folder so that no symbolic link can lead the open out of it.

Checking a path and then opening it leaves a window in which a component can be
swapped for a symbolic link. :func:`open_beneath` closes that window: it walks the
path one component at a time from a descriptor of the folder, opening each with
``O_NOFOLLOW`` relative to the one before (``dir_fd``), so a link met anywhere on
the way fails the open instead of being followed. What it returns is a
descriptor of a regular file reached only through real folders under ``base``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO never blocks


class NotConfinedError(OSError):
    """The path cannot be opened as a regular file without leaving the folder or following a link."""


def _check_part(part: str) -> str:
    if part in ("", ".", "..") or "/" in part or "\x00" in part:
        raise NotConfinedError(f"path component {part!r} is not a plain name")
    return part


def open_beneath(base: str | Path, parts: Sequence[str]) -> int:
    """A read-only descriptor of the regular file ``base/<parts...>``; the caller closes it.

    ``base`` itself is opened normally (it is trusted); every component under it is
    opened with ``O_NOFOLLOW``. Raises :class:`NotConfinedError` when a component is
    a symbolic link, ``..`` or not a plain name, or when the file is not a regular
    file; ``FileNotFoundError`` when something on the way is missing.
    """
    if not parts:
        raise NotConfinedError("no file named under the folder")
    names = [_check_part(part) for part in parts]
    folder = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names[:-1]:
            folder = _step(folder, name, _FOLDER_FLAGS)
        descriptor = _open_at(folder, names[-1], _FILE_FLAGS)
    finally:
        os.close(folder)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotConfinedError(f"{names[-1]!r} is not a regular file")
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _step(folder: int, name: str, flags: int) -> int:
    """Open ``name`` in ``folder`` and close ``folder``: one step down the path."""
    try:
        return _open_at(folder, name, flags)
    finally:
        os.close(folder)


def _open_at(folder: int, name: str, flags: int) -> int:
    """``os.open(name, flags, dir_fd=folder)``; a link (ELOOP, EMLINK on BSD) or a file where a
    folder was expected (ENOTDIR) is reported as :class:`NotConfinedError`."""
    try:
        return os.open(name, flags, dir_fd=folder)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
            raise NotConfinedError(exc.errno, f"{name!r} is a symbolic link or not a folder") from exc
        raise
