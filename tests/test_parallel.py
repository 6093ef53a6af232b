"""Side-by-side rendering: results in order, failures cancel what has not started."""

import concurrent.futures
import threading

import pytest

from sparkle_motion_dagster.store.parallel import results_in_order


def test_results_come_in_job_order_and_jobs_overlap():
    # Jobs meet in pairs at a barrier, which only opens while two run at once; each even job waits
    # until the odd job beside it has finished, so later jobs finish first.
    pair = threading.Barrier(2)
    finished = {job: threading.Event() for job in range(6)}
    finish_order = []

    def work(job):
        pair.wait(timeout=60)
        if job % 2 == 0:
            assert finished[job + 1].wait(timeout=60)
        finish_order.append(job)
        finished[job].set()
        return job * 10

    assert list(results_in_order(work, range(6), workers=2)) == [0, 10, 20, 30, 40, 50]
    assert finish_order == [1, 0, 3, 2, 5, 4]


def test_one_worker_runs_in_the_calling_thread():
    threads = list(results_in_order(lambda _: threading.current_thread(), range(3), workers=1))
    assert threads == [threading.current_thread()] * 3


def test_a_failure_cancels_the_jobs_not_started_and_waits_for_the_running_ones(monkeypatch):
    started, finished = [], []
    job_1_running, failure_seen = threading.Event(), threading.Event()
    cancel = concurrent.futures.Future.cancel

    def cancel_and_tell(future):
        failure_seen.set()
        return cancel(future)

    monkeypatch.setattr(concurrent.futures.Future, "cancel", cancel_and_tell)

    def work(job):
        started.append(job)
        if job == 0:
            assert job_1_running.wait(timeout=60)
            raise RuntimeError("job 0 broke")
        job_1_running.set()
        assert failure_seen.wait(timeout=60)  # still running when the failure is seen
        finished.append(job)
        return job

    with pytest.raises(RuntimeError, match="job 0 broke"):
        list(results_in_order(work, range(10), workers=2))
    # Job 1 ran beside job 0 and was waited for; job 2 may have taken job 0's worker before the
    # failure was seen; the rest never started.
    assert 1 in finished and set(started) <= {0, 1, 2}
