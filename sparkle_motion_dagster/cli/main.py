"""The ``sparkle-motion`` command line: one click group of every command.

Each command module defines its commands without knowing this group; this module only
gathers them. Nothing in the package imports it: it is the entry point
(``sparkle-motion``, ``python -m sparkle_motion_dagster.cli``). Every command prints a
clear message and exits non-zero on bad input (see :mod:`sparkle_motion_dagster.cli.errors`);
no traceback reaches the user unless SPARKLE_DEBUG=1.
"""

from __future__ import annotations

import os

# torch's OpenMP threads busy-wait by default, which starves ffmpeg and the other
# stage work on small machines; passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import atexit
import sys
from collections.abc import Sequence

import click

from sparkle_motion_dagster.cli import (
    cluster,
    files,
    filming,
    inspection,
    installation,
    lineage,
    plans,
    quality,
    redo,
)
from sparkle_motion_dagster.cli.invocation import command_group, run_command

DESCRIPTION = "Turn a story prompt into a short film."


def build_cli() -> click.Group:
    """The whole command tree."""
    return command_group(DESCRIPTION, (*plans.COMMANDS, *filming.COMMANDS, *redo.COMMANDS, *lineage.COMMANDS,
                                       *inspection.COMMANDS, *quality.COMMANDS, *files.COMMANDS, *installation.COMMANDS,
                                       *cluster.COMMANDS))


cli = build_cli()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (default: this process's arguments); returns the exit status."""
    return run_command(cli, argv)


def entry() -> None:
    """The console script. Everything is written and flushed when main returns; tearing down
    Dagster's module graph at interpreter exit would add ~0.4 s to every command, so the exit
    handlers run here and the process leaves at once."""
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader has gone; the exit status says the rest
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
