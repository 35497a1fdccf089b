"""A fixed-bucket latency histogram (pure data, constant memory): code at any layer observes durations into it and
the metrics endpoint exports it as a Prometheus histogram, so no layer below the runtime depends on a registry."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds in seconds (the +Inf bucket is implicit): from a small LMDB append to a slow S3 flush."""


@dataclass
class LatencyHistogram:
    """Counts per bucket (non-cumulative), with the sum and count; `observe` is thread-safe (worker threads)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    total_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
            self.total_s += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, cumulative count) pairs ending with +Inf, as Prometheus exposes them."""
        with self._lock:
            counts = list(self.counts)
        pairs, running = [], 0
        for bound, count in zip((*(repr(b) for b in BUCKETS_S), "+Inf"), counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs
