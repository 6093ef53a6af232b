"""Side-by-side rendering: results in order, failures cancel what has not started."""

import threading
import time

import pytest

from sparkle_motion_dagster.runs.parallel import results_in_order


def test_results_come_in_job_order_and_jobs_overlap():
    running, peak, lock = 0, 0, threading.Lock()

    def work(job):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05 if job % 2 == 0 else 0.01)  # later jobs finish first
        with lock:
            running -= 1
        return job * 10

    assert list(results_in_order(work, range(6), workers=2)) == [0, 10, 20, 30, 40, 50]
    assert peak == 2


def test_one_worker_runs_in_the_calling_thread():
    threads = list(results_in_order(lambda _: threading.current_thread(), range(3), workers=1))
    assert threads == [threading.current_thread()] * 3


def test_a_failure_cancels_the_jobs_not_started_and_waits_for_the_running_ones():
    started, finished = [], []
    gate = threading.Event()

    def work(job):
        started.append(job)
        if job == 0:
            gate.wait(1)
            raise RuntimeError("job 0 broke")
        gate.set()
        time.sleep(0.3)  # long enough that the failure is seen before this worker is free again
        finished.append(job)
        return job

    with pytest.raises(RuntimeError, match="job 0 broke"):
        list(results_in_order(work, range(10), workers=2))
    # Job 1 ran beside job 0 and was allowed to finish; at most one more slipped in
    # between job 1 ending and the failure being seen; the rest never started.
    assert 1 in finished and set(started) <= {0, 1, 2}
