"""How a command that fails ends: one message on stderr and one exit status.

Every command raises; nothing below a command prints its own error or picks its own
exit status. :func:`exit_status_for` is the only place that turns an exception into
what the user sees:

====================================================  ======  =============================
raised                                                status  shown
====================================================  ======  =============================
click usage errors (unknown option, bad ``--size``)   2       click's usage and message
``--help``                                            0       the help
PlanValidationError (every problem, with its path)    2       ``error: ...``
PlanInputError, UnsafeIdError, UnknownRunError,       2       ``error: ...``
LookupError, FileExistsError, CliError, ValueError
KeyboardInterrupt                                     130     ``interrupted``
BrokenPipeError (``sparkle-motion runs | head``)      141     nothing
anything else (a bug or the environment)              1       ``error: Type: message``;
                                                              the traceback with
                                                              SPARKLE_DEBUG=1
====================================================  ======  =============================

The domain exceptions are imported only when something has gone wrong, so that
``--help`` does not load the plan schema.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_READER_GONE = 141


class CliError(Exception):
    """A problem with what the user asked for, reported in one line (exit status 2)."""


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the input was wrong: a plan, an id, a run, a file, a value."""
    from sparkle_motion_dagster.film.plan import PlanInputError, PlanValidationError
    from sparkle_motion_dagster.store.storage import UnknownRunError, UnsafeIdError

    return (PlanValidationError, PlanInputError, UnsafeIdError, UnknownRunError, CliError, FileExistsError,
            LookupError, ValueError)


def _message(exc: BaseException) -> str:
    """The exception's text; a LookupError's (KeyError's) own text would be quoted."""
    if isinstance(exc, LookupError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def _silence_stdout() -> None:
    """Send whatever is still buffered for a reader who has gone to /dev/null, so that no
    flush at exit complains about the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. captured output)
        sys.stdout = open(os.devnull, "w")
    finally:
        os.close(devnull)


def _say(message: str) -> None:
    try:
        click.echo(message, err=True)
    except OSError:  # stderr has gone too; the exit status still says it
        pass


def exit_status_for(exc: BaseException) -> int:
    """Tell the user what went wrong with a command and return the exit status for it."""
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        _say("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return EXIT_READER_GONE
    if isinstance(exc, _bad_input_errors()):
        _say(f"error: {_message(exc)}")
        return EXIT_BAD_INPUT
    if os.environ.get("SPARKLE_DEBUG") == "1":
        traceback.print_exception(exc)
    _say(f"error: {type(exc).__name__}: {exc} (set SPARKLE_DEBUG=1 for the traceback)")
    return EXIT_FAILED
