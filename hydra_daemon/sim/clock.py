"""Simulation clock: real time, or accelerated from a chosen start instant (implements `hydra_daemon.clock.Clock`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio


@dataclass
class SimClock:
    """Maps wall time onto simulation time: `sim = start + (wall - wall_at_start) * speed` (speed 1 = real time)."""

    start: datetime
    speed: float = 1.0
    _wall_start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError(f"SimClock start must be UTC-aware, got {self.start!r}")
        if self.speed <= 0:
            raise ValueError(f"SimClock speed must be > 0, got {self.speed}")

    def now(self) -> datetime:
        """Current simulation time (UTC-aware)."""
        elapsed = (time.monotonic() - self._wall_start) * self.speed
        return (self.start + timedelta(seconds=elapsed)).astimezone(UTC)

    def now_ns(self) -> int:
        """Current simulation time as UTC nanoseconds since the epoch."""
        return int(self.now().timestamp() * 1_000_000) * 1_000

    def wall_seconds_until(self, instant: datetime) -> float:
        """Wall-clock seconds until the simulation reaches `instant` (0 if already past)."""
        return max(0.0, (instant - self.now()).total_seconds() / self.speed)

    async def sleep_until(self, instant: datetime) -> None:
        """Return once the simulation reaches `instant` (cancellable)."""
        while self.now() < instant:
            await anyio.sleep(max(self.wall_seconds_until(instant), 0.001))
