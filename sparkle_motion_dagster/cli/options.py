"""Parameter types and parsing rules that click does not have built in.

- :class:`FrameSize` reads ``--size 640x360``.
- :class:`SeedType` reads ``--seed``, with the plan's rule (``0 <= seed < 2**32``).
- :func:`at_most_one` / :func:`exactly_one` make options mutually exclusive.
- :class:`GreedyOptionsCommand` lets an option take every following word, as in
  ``--attach shot.png notes.txt``.
"""

from __future__ import annotations

import re
from typing import Any

import click


class FrameSize(click.ParamType):
    """``WxH`` in even pixels of at least 64, e.g. ``640x360`` -> ``(640, 360)``."""

    name = "WxH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r"(\d+)x(\d+)", str(value).strip().lower())
        if not match:
            self.fail(f"expected WxH such as 640x360, got {value!r}", param, ctx)
        width, height = int(match.group(1)), int(match.group(2))
        if width % 2 or height % 2 or width < 64 or height < 64:
            self.fail(f"{value} must be even numbers of at least 64", param, ctx)
        return width, height


class SeedType(click.ParamType):
    """A seed the renderers take: an integer with ``0 <= seed < 2**32`` (the plan's rule)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from sparkle_motion_dagster.film.plan import seed_problem

        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"must be an integer with 0 <= seed < 2**32, got {str(value)!r:.48}", param, ctx)
        problem = seed_problem(number)
        if problem:
            self.fail(problem, param, ctx)
        return number


SEED = SeedType()


def _given(options: dict[str, Any]) -> list[str]:
    """The options that were given: a flag that is set, a value (0 counts), some values."""
    return [name for name, value in options.items() if value is not None and value is not False and value != ()]


def at_most_one(**options: Any) -> None:
    """Refuse two of these options together; keys are option names without dashes
    (``run_id`` for ``--run-id``), values what click parsed."""
    given = _given(options)
    if len(given) > 1:
        shown = [f"--{name.replace('_', '-')}" for name in given]
        raise click.UsageError(f"{' and '.join(shown)} cannot be given together")


def exactly_one(**options: Any) -> None:
    """Require one, and only one, of these options."""
    at_most_one(**options)
    if not _given(options):
        shown = [f"--{name.replace('_', '-')}" for name in options]
        raise click.UsageError(f"give one of {', '.join(shown)}")


def spread_greedy_values(args: list[str], greedy: tuple[str, ...], ctx: click.Context | None = None) -> list[str]:
    """``--attach a b --notes n`` -> ``--attach a --attach b --notes n``.

    After a bare greedy option every word up to the next one that starts with ``-``
    is one more value of it; it needs at least one.
    """
    spread: list[str] = []
    current: str | None = None
    first = False
    for index, arg in enumerate(args):
        if arg == "--":
            spread.extend(args[index:])
            break
        if current and first and arg.startswith("-"):
            raise click.BadOptionUsage(current, f"{current} needs at least one value before {arg}", ctx=ctx)
        if arg in greedy:
            current, first = arg, True
        elif current and not arg.startswith("-"):
            if not first:
                spread.append(current)
            first = False
        else:
            current = None
        spread.append(arg)
    return spread


class GreedyOptionsCommand(click.Command):
    """A command whose ``greedy_options`` (``multiple=True`` options) take every following
    word up to the next option: ``--attach a.png b.txt`` is ``--attach a.png --attach b.txt``."""

    def __init__(self, *args: Any, greedy_options: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.greedy_options = tuple(greedy_options)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_greedy_values(args, self.greedy_options, ctx))
