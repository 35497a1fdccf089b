"""Exponential backoff with full jitter for reconnect loops (pure apart from the random source)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays `uniform(0, min(cap, base * 2**attempt))`, never below `floor`; `reset()` after a healthy session."""

    base_s: float = 0.5
    cap_s: float = 60.0
    floor_s: float = 0.05
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; grows the attempt counter."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return max(self.floor_s, self.rng.uniform(0.0, ceiling))

    def reset(self) -> None:
        self.attempt = 0
