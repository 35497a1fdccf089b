"""RecordHandoff: bounded, ordered, lossless between a producer thread and a consumer; close releases producers."""

from __future__ import annotations

import threading
import time

import pytest

from hydra_daemon.pipelines.backoff import Backoff
from hydra_daemon.pipelines.handoff import RecordHandoff


def _wait_until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.001)


def test_producer_blocks_at_capacity_and_nothing_is_lost_or_reordered() -> None:
    handoff = RecordHandoff(capacity=8)
    total = 5_000

    def produce() -> None:
        for i in range(total):
            handoff.put(i)

    producer = threading.Thread(target=produce)
    producer.start()
    _wait_until(lambda: len(handoff) == 8 and handoff.idle_s() == 0.0, "the producer to fill the handoff")
    got: list[int] = []
    while len(got) < total:
        batch = handoff.take(timeout=1.0)
        assert len(batch) <= 8
        got.extend(batch)
    producer.join()
    assert got == list(range(total))


def test_take_times_out_empty_and_idle_grows() -> None:
    handoff = RecordHandoff(capacity=4)
    assert handoff.take(timeout=0.01) == []
    assert handoff.idle_s() > 0.0
    handoff.put("x")
    assert handoff.idle_s() == 0.0  # a record is waiting: we are behind, not the gateway
    assert handoff.take(timeout=0.01) == ["x"]


def test_close_releases_a_blocked_producer_and_discards_later_records() -> None:
    handoff = RecordHandoff(capacity=1)
    handoff.put(1)
    producer = threading.Thread(target=handoff.put, args=(2,))
    producer.start()
    _wait_until(lambda: handoff.idle_s() == 0.0 and producer.is_alive(), "the producer to block")
    handoff.close()
    producer.join(timeout=10)
    assert not producer.is_alive()
    handoff.put(3)
    assert handoff.take(timeout=0) == [1]
    assert handoff.closed


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be > 0"):
        RecordHandoff(0)


def test_backoff_grows_with_jitter_up_to_cap_and_resets() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, floor_s=0.01)
    ceilings = [1, 2, 4, 8, 8, 8]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert 0.01 <= delay <= ceiling
    assert backoff.attempt == len(ceilings)
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0
