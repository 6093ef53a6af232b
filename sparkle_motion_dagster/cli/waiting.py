"""Waiting in the foreground: a command that must wait (a film held at a pause, a ``resume``
waiting for another Dagster run of its film) says what it waits for and since when, and
Ctrl-C or SIGTERM ends the wait at once (the caller exits with 128 + the signal)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import click

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def wait_until(done: Callable[[], object], *, poll_seconds: float = 0.5,
               announce: Callable[[], None] | None = None) -> tuple[object, int | None]:
    """Call ``done`` until it returns something true (returned, with None), or until SIGINT or
    SIGTERM comes (returned: None and the signal). ``announce`` says what is awaited once the
    signals are taken here (a signal right after the line is read ends the wait too). Only the
    main thread can take signals; the wait is on an event that the signal sets, so it ends at once."""
    received: list[int] = []
    woken = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        received.append(signum)
        woken.set()

    main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS} if main else {}
    try:
        if announce:
            announce()
        while not received:
            value = done()
            if value:
                return value, None
            woken.wait(poll_seconds)
        return None, received[0]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def say(message: str) -> None:
    """A line about waiting, on stderr (stdout stays the command's result)."""
    try:
        click.echo(message, err=True)
    except BrokenPipeError:
        pass


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
