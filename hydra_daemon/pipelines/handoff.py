"""A bounded, thread-safe handoff of records from the Databento client's thread to one consumer thread.

The client calls `put` from its event-loop thread for every record (registered with `Live.add_callback`). When
`capacity` records are waiting, `put` blocks: the client stops reading its socket and TCP pushes back on the
gateway, so memory stays bounded and nothing is dropped. The consumer swaps out everything pending with `take`.
Each `Live` client gets its own event loop (see `live_stream`), so a blocked `put` never stalls another session.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class RecordHandoff:
    """Bounded single-consumer buffer; `close()` releases a blocked producer and discards later records."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"handoff capacity must be > 0, got {capacity}")
        self._capacity = capacity
        self._records: list[Any] = []
        self._cond = threading.Condition()
        self._closed = False
        self._producer_blocked = False
        self._last_put = time.monotonic()

    def put(self, record: Any) -> None:
        """Add one record, waiting while the handoff is full; a no-op once closed."""
        with self._cond:
            while len(self._records) >= self._capacity and not self._closed:
                self._producer_blocked = True
                self._cond.wait()
            self._producer_blocked = False
            if self._closed:
                return
            self._records.append(record)
            self._last_put = time.monotonic()
            if len(self._records) == 1:
                self._cond.notify_all()

    def take(self, timeout: float, linger_s: float = 0.0, enough: int = 0) -> list[Any]:
        """All pending records (oldest first), waiting up to `timeout` seconds for the first one; then, if fewer than
        `enough` are pending, lingering `linger_s` once so the batch grows (fewer, larger batches are cheaper)."""
        with self._cond:
            if not self._records and not self._closed:
                self._cond.wait(timeout)
            pending = len(self._records)
        if 0 < pending < enough and linger_s > 0:
            time.sleep(linger_s)
        with self._cond:
            records, self._records = self._records, []
            if records:
                self._cond.notify_all()
            return records

    def close(self) -> None:
        """Stop accepting records and wake everyone waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def touch(self) -> None:
        """Restart the idle clock (e.g. when the session starts streaming)."""
        with self._cond:
            self._last_put = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._closed

    def idle_s(self) -> float:
        """Seconds since the last record arrived; 0 while the producer waits on a full handoff (we are the slow one)."""
        with self._cond:
            if self._producer_blocked or self._records:
                return 0.0
            return time.monotonic() - self._last_put

    def __len__(self) -> int:
        with self._cond:
            return len(self._records)
