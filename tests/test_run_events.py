"""How often a film's own process reads its run's stored events and asks about pool slots while it
films: every read takes the event storage's lock that the film's event writes wait on."""

import threading

from sparkle_motion_dagster.orchestration import run_events, runner


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingReader:
    class instance:  # what execute_reading asks of the reader's instance
        is_ephemeral = False

    attempt = "a1b2c3d4e5f6"

    def __init__(self):
        self.reads = 0

    def read(self) -> None:
        self.reads += 1


def test_events_are_read_twice_a_second_while_the_film_runs_and_once_at_the_end(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(run_events.time, "monotonic", clock)
    monkeypatch.setattr(run_events, "POLL_SECONDS", 0.001)
    finished = threading.Event()
    ticks = []

    def tick() -> None:  # each wake of the reading thread is a tenth of a second of the fake clock
        ticks.append(len(ticks) + 1)
        clock.now = len(ticks) / 10
        if len(ticks) == 40:
            finished.set()

    reader = CountingReader()
    assert run_events.execute_reading(lambda: finished.wait() and "made", reader, tick) == "made"
    seconds = clock.now
    assert len(ticks) >= 40 and seconds >= 4.0
    # one read per half second of the film, and the last one after it ended (not one per wake: 40)
    assert int(seconds / run_events.READ_SECONDS) - 1 <= reader.reads <= int(seconds / run_events.READ_SECONDS) + 1


def test_pool_slots_are_asked_about_once_a_second_and_at_once_after_a_signal(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(runner.time, "monotonic", clock)
    asked = []
    wait = ("waiting since 12:00 for a slot of the gpu pool", lambda: None)
    told = []
    watch = runner._WaitWatch(lambda: asked.append(clock.now) or wait, told.append)

    for tenth in range(1, 31):  # three seconds of looks, ten a second
        clock.now = tenth / 10
        assert watch.look() in (None, wait)
    assert len(asked) == 3 and told == [wait[0]]  # told once per wait, not once per look
    watch.look_soon()
    assert watch.look() == wait and len(asked) == 4
