"""The clock the COT pipeline schedules against: wall time in production, simulation time in tests and demos."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import anyio

from hydra_daemon.sim.clock import SimClock

_MAX_NAP_S = 60.0


class Clock(Protocol):
    """`now()` is UTC-aware; `sleep_until` returns once `now() >= instant` (cancellable)."""

    def now(self) -> datetime: ...

    async def sleep_until(self, instant: datetime) -> None: ...


class WallClock:
    """Real time; sleeps in naps of at most a minute so suspend/resume or clock steps cannot oversleep a release."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, instant: datetime) -> None:
        while (remaining := (instant - self.now()).total_seconds()) > 0:
            await anyio.sleep(min(remaining, _MAX_NAP_S))


class SimulatedClock:
    """Simulation time from a `SimClock` (possibly accelerated), shared with the simulated venue."""

    def __init__(self, sim: SimClock) -> None:
        self._sim = sim

    def now(self) -> datetime:
        return self._sim.now()

    async def sleep_until(self, instant: datetime) -> None:
        while self._sim.now() < instant:
            await anyio.sleep(max(self._sim.wall_seconds_until(instant), 0.001))
