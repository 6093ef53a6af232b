"""Running a click command tree as a function: arguments in, exit status out.

click's own ``main`` exits the process (or, in its non-standalone mode, turns a closed
pipe into exit status 1); here every outcome goes through :mod:`cli.errors` instead, so
``main(argv)`` returns the status the console script exits with.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import click

from sparkle_motion_dagster.cli.errors import EXIT_OK, exit_status_for

PROG_NAME = "sparkle-motion"
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def command_group(description: str, commands: Iterable[click.Command]) -> click.Group:
    """A ``sparkle-motion`` group holding ``commands`` (each command module defines its own)."""
    group = click.Group(PROG_NAME, help=description, context_settings=CONTEXT_SETTINGS)
    for command in commands:
        group.add_command(command)
    return group


def run_command(command: click.Command, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: this process's arguments), run the command, return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with command.make_context(PROG_NAME, args) as ctx:
            status = command.invoke(ctx)
        sys.stdout.flush()  # a reader who left during the last lines is noticed here, not at exit
    except (Exception, KeyboardInterrupt) as exc:
        return exit_status_for(exc)
    return EXIT_OK if status is None else int(status)
