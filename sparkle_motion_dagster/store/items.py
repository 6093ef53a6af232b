"""The one per-item loop of every rendering stage: keyframes, clips and dialogue lines.

For each item in plan order: fingerprint its inputs; reuse the file when its
sidecar in ``.meta/`` matches and the file is still the one recorded (size and
sha256: a missing, damaged or swapped file is rendered again, and the stage is
told which and why), else render it (side by side where the backend
allows); write the sidecar as soon as the file exists, so a later failure does
not cost it; hand the finished item over at once (the stage publishes it to the
catalog then, not at the end). Dagster-free: the stage supplies the rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.store import cache
from sparkle_motion_dagster.store.parallel import results_in_order


@dataclass
class Item:
    """One output of a stage: its file, what shapes it, and what the renderer needs."""

    id: str
    path: Path
    inputs: dict[str, Any]
    """Everything that shapes the output; its fingerprint decides reuse."""
    request: Any = None
    """What the render function needs beyond ``inputs``."""
    also_needs: tuple[Path, ...] = ()
    """Files written with the output that must exist too for it to be reused."""
    sources: tuple[Path, ...] = ()
    """The files it is made from (the plan, a shot's keyframes), for its provenance record."""


@dataclass
class Rendered:
    """An item once it exists: its sidecar record, and whether this run made it."""

    item: Item
    record: dict[str, Any]
    rendered: bool
    extra: Any = None
    """What the render function returned beside the record (e.g. a thumbnail)."""
    fingerprint: str = field(default="", repr=False)
    problem: str | None = None
    """Why a file made before could not be reused (missing, damaged, swapped), when it could not."""


def render_items(
    items: Iterable[Item],
    render: Callable[[Item], tuple[dict[str, Any], Any] | dict[str, Any]],
    *,
    force: bool = False,
    workers: int = 1,
    on_ready: Callable[[Rendered], None] | None = None,
    before_render: Callable[[], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> list[Rendered]:
    """Every item, reused or rendered, in the items' order.

    ``render(item)`` writes ``item.path`` (atomically) and returns the details to record in
    its sidecar, optionally with an extra value: ``(details, extra)``. ``on_ready`` is
    called for each item as soon as it exists: reused ones first, then rendered ones in
    order as they finish. ``before_render`` runs before each render (a stop check).
    ``force`` renders every item again. ``on_problem`` is told of each item made before whose
    file no longer matches its record (it is rendered again): ``shot_002.mp4: sha256 differs ...``.
    """
    results: list[Rendered] = []
    for item in items:
        key = cache.fingerprint(item.inputs)
        record, problem = None, None
        if not force:
            record, problem = cache.check(item.path, key)
            missing = next((path for path in item.also_needs if not path.exists()), None)
            if record is not None and missing is not None:
                record, problem = None, f"{missing.name} is missing"
        result = Rendered(item, record or {}, rendered=record is None, fingerprint=key, problem=problem)
        if problem and on_problem:
            on_problem(f"{item.path.name}: rendering it again: {problem}")
        results.append(result)
        if not result.rendered and on_ready:
            on_ready(result)

    def work(result: Rendered) -> Rendered:
        if before_render:
            before_render()
        returned = render(result.item)
        details, result.extra = returned if isinstance(returned, tuple) else (returned, None)
        result.record = cache.record(result.item.path, result.fingerprint, details)  # as soon as the file exists
        return result

    for result in results_in_order(work, [r for r in results if r.rendered], workers=workers):
        if on_ready:
            on_ready(result)
    return results


def rerendered(results: list[Rendered]) -> dict[str, str]:
    """Items rendered again because their file no longer matched its record, with why:
    ``{"shot_002": "sha256 differs from record"}``."""
    return {r.item.id: r.problem for r in results if r.rendered and r.problem}


def counts(results: list[Rendered]) -> dict[str, int]:
    """The ``count``/``rendered``/``reused`` figures every rendering stage reports."""
    rendered = sum(1 for r in results if r.rendered)
    return {"count": len(results), "rendered": rendered, "reused": len(results) - rendered}
