"""The one exponential backoff with jitter: Live reconnects, pipeline restarts and COT download retries all use it
(pure apart from the random source)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FULL_JITTER = (0.0, 1.0)
"""Delays anywhere up to the ceiling: many clients reconnecting after one outage spread out."""


@dataclass
class Backoff:
    """Delay before retry `attempt`: ``min(cap_s, base_s * multiplier**attempt)`` scaled by ``uniform(*jitter)``,
    never below `floor_s`. `next_delay()` counts attempts; `reset()` after a healthy run."""

    base_s: float = 0.5
    cap_s: float = 60.0
    multiplier: float = 2.0
    jitter: tuple[float, float] = FULL_JITTER
    floor_s: float = 0.05
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def delay_s(self, attempt: int) -> float:
        """The delay before retry number `attempt` (0-based), without counting it."""
        ceiling = min(self.cap_s, self.base_s * self.multiplier ** min(attempt, 64))
        return max(self.floor_s, ceiling * self.rng.uniform(*self.jitter))

    def next_delay(self) -> float:
        """The delay before the next attempt; grows the attempt counter."""
        delay = self.delay_s(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
