"""Small helpers shared by tests that start servers and wait on other processes."""

import socket
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, what: str, attempts: int = 2000, interval: float = 0.1):
    """Poll until ``predicate`` returns something truthy; bounded by attempts, not by a clock."""
    for _ in range(attempts):
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}")
