"""Rendering a stage's items side by side when the renderer allows it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


def results_in_order(work: Callable[[Job], Result], jobs: Iterable[Job], *, workers: int) -> Iterator[Result]:
    """``work(job)`` for every job, up to ``workers`` at once, yielded in the jobs' order.

    One worker runs each job in the calling thread. When a job fails, the jobs not
    started yet are cancelled, the ones running are waited for, and the error is raised.
    """
    jobs = list(jobs)
    if workers <= 1:
        yield from map(work, jobs)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, job) for job in jobs]
        try:
            for future in futures:
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
