"""What the commands print besides plain lines: tables, JSON, sizes and progress.

On a terminal tables get a rule under their headings; written to a pipe or a file they
are plain columns, one row a line, so that ``grep``, ``awk`` and the tests read them.
Progress bars go to stderr and never mix with what a command prints on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

BAR_WIDTH = 20
BAR_CHARS = "-#"  # empty, full


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default: stdout) is a terminal a person looks at."""
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Rows under headers, aligned; a missing value is shown as ``-``."""
    from tabulate import tabulate

    text = tabulate(rows, headers=headers, tablefmt="simple" if is_terminal() else "plain",
                    missingval="-", disable_numparse=True)
    return "\n".join(line.rstrip() for line in text.splitlines())


def echo_table(headers: list[str], rows: list[list[Any]]) -> None:
    click.echo(table(headers, rows))


def echo_json(payload: Any) -> None:
    """``payload`` as indented JSON (paths and datetimes as strings)."""
    click.echo(json.dumps(payload, indent=2, default=str))


def human_bytes(size: int | None) -> str:
    """``1.5 MB``; ``-`` when the size is unknown."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def progress_bar(fraction: float) -> str:
    """A fixed-width bar for ``fraction`` (0..1) inside a line of text, e.g. ``[#####-----]``."""
    from tqdm import tqdm

    done = max(0.0, min(1.0, fraction))
    return tqdm.format_meter(done, 1.0, 0, bar_format=f"[{{bar:{BAR_WIDTH}}}]", ascii=BAR_CHARS)


class CopyProgress:
    """A progress bar on stderr for copying files: bytes done, files done, the file being copied.

    Call it with the evacuation's progress records (``files_done``, ``files_total``,
    ``bytes_done``, ``bytes_total``, ``run_id``, ``path``); :meth:`close` ends the line.
    """

    def __init__(self, label: str, stream: IO[str] | None = None):
        self.label = label
        self.stream = stream
        self._bar = None

    def __call__(self, info: dict[str, Any]) -> None:
        if self._bar is None:
            self._bar = self._open(info["bytes_total"])
        self._bar.set_postfix_str(f"{info['files_done']}/{info['files_total']} files {info['run_id']}/{info['path']}",
                                  refresh=False)
        self._bar.update(info["bytes_done"] - self._bar.n)

    def _open(self, total_bytes: int):
        from tqdm import tqdm

        stream = self.stream or sys.stderr
        return tqdm(total=total_bytes, desc=self.label, file=stream, unit="B", unit_scale=True, unit_divisor=1024,
                    ascii=BAR_CHARS, bar_format=f"{{desc}} [{{bar:{BAR_WIDTH}}}] {{n_fmt}}B/{{total_fmt}}B{{postfix}}",
                    mininterval=0.1 if is_terminal(stream) else 1.0, dynamic_ncols=is_terminal(stream))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
