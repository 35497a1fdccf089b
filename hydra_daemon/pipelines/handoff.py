"""A bounded, thread-safe handoff of records from the Databento client's thread to one consumer thread.

The client calls `put` from its event-loop thread for every record (registered with `Live.add_callback`). When
`capacity` records are waiting, `put` blocks: the client stops reading its socket and TCP pushes back on the
gateway, so memory stays bounded and nothing is dropped. The consumer drains everything pending with `take`.
Each `Live` client gets its own event loop (see `live_stream`), so a blocked `put` never stalls another session.

`put` is on the client's hot path, so it takes no lock unless the handoff is full: `deque.append`/`popleft` are
atomic, an Event wakes the consumer, a Condition is used only while the producer waits for room.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


class RecordHandoff:
    """Bounded single-producer, single-consumer buffer; `close()` releases a blocked producer and discards later
    records."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"handoff capacity must be > 0, got {capacity}")
        self._capacity = capacity
        self._queue: deque[Any] = deque()
        self._ready = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._closed = False
        self._producer_blocked = False
        self._seen_at = time.monotonic()

    def put(self, record: Any) -> None:
        """Add one record, waiting while the handoff is full; a no-op once closed."""
        if self._closed:
            return
        if len(self._queue) >= self._capacity:
            self._wait_for_room()
            if self._closed:
                return
        queue = self._queue
        was_empty = not queue
        queue.append(record)
        if was_empty:
            self._ready.set()

    def _wait_for_room(self) -> None:
        with self._room:
            self._producer_blocked = True
            while len(self._queue) >= self._capacity and not self._closed:
                self._room.wait(0.1)
            self._producer_blocked = False

    def take(self, timeout: float, linger_s: float = 0.0, enough: int = 0) -> list[Any]:
        """All pending records (oldest first), waiting up to `timeout` seconds for the first one; then, if fewer than
        `enough` are pending, lingering `linger_s` once so the batch grows (fewer, larger batches are cheaper)."""
        if not self._queue and not self._closed:
            self._ready.wait(timeout)
        if 0 < len(self._queue) < enough and linger_s > 0:
            time.sleep(linger_s)
        self._ready.clear()
        popleft = self._queue.popleft
        records = [popleft() for _ in range(len(self._queue))]
        if records:
            self._seen_at = time.monotonic()
            if self._producer_blocked:
                with self._room:
                    self._room.notify()
        return records

    def close(self) -> None:
        """Stop accepting records and wake everyone waiting."""
        self._closed = True
        self._ready.set()
        with self._room:
            self._room.notify_all()

    def touch(self) -> None:
        """Restart the idle clock (e.g. when the session starts streaming)."""
        self._seen_at = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._closed

    def idle_s(self) -> float:
        """Seconds since the consumer last took records; 0 while records wait or the producer waits for room (then
        we are the slow one, not the gateway)."""
        if self._producer_blocked or self._queue:
            return 0.0
        return time.monotonic() - self._seen_at

    def __len__(self) -> int:
        return len(self._queue)
