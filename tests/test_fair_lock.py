"""The model lock: re-entrant, first come first served, so a training loop cannot starve a request."""

from __future__ import annotations

import threading
import time

import pytest

from yapo_studio.fair_lock import FairLock

pytestmark = pytest.mark.timeout(120)  # a lock that never lets go fails here instead of hanging the suite


def test_reentrant_and_released_only_by_its_owner():
    lock = FairLock()
    with lock:
        with lock:
            assert lock.locked()
        assert lock.locked()
        errors = []
        t = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, lock.release)))
        t.start()
        t.join()
        assert errors
    assert not lock.locked()


def test_a_waiting_request_is_served_before_the_loop_that_holds_the_lock_takes_it_again():
    """A training loop takes the lock per step; a request arriving meanwhile waits one step at most."""
    lock, stop = FairLock(), threading.Event()
    steps = [0]

    def training():
        while not stop.is_set():
            with lock:
                steps[0] += 1
                time.sleep(0.002)

    trainer = threading.Thread(target=training)
    trainer.start()
    try:
        waits = []
        for _ in range(20):
            while not lock.locked():
                time.sleep(0.0005)
            before = steps[0]
            with lock:
                waits.append(steps[0] - before)
            time.sleep(0.005)
        assert max(waits) <= 1, waits
    finally:
        stop.set()
        trainer.join()


def test_requests_are_served_in_arrival_order_and_a_timeout_leaves_the_queue():
    lock, order = FairLock(), []
    lock.acquire()
    threads = []
    for name in "abc":
        t = threading.Thread(target=lambda n=name: (lock.acquire(), order.append(n), lock.release()))
        t.start()
        threads.append(t)
        while lock.waiting() < len(threads):
            time.sleep(0.001)
    assert lock.acquire(timeout=0.01)  # re-entrant: the owner never waits
    lock.release()
    got = []
    late = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    late.start()
    late.join()
    assert got == [False] and lock.waiting() == 3
    lock.release()
    for t in threads:
        t.join()
    assert order == ["a", "b", "c"] and not lock.locked()
    assert lock.acquire(blocking=False)
    lock.release()
