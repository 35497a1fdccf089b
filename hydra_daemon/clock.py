"""The one clock every pipeline keeps time by: wall time in production, the simulated venue's time in tests and demos.

Market data needs "now" in UTC nanoseconds (replay windows), COT needs UTC datetimes and to sleep until a release;
one protocol serves both, so a simulated clock is injected once (`runtime.app.run_app(clock=...)`) and every
pipeline follows it. `hydra_daemon.sim.clock.SimClock` implements it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import anyio

_MAX_NAP_S = 60.0


class Clock(Protocol):
    """`now()` is UTC-aware, `now_ns()` the same instant in UTC ns; `sleep_until` returns once `now() >= instant`
    (cancellable)."""

    def now(self) -> datetime: ...

    def now_ns(self) -> int: ...

    async def sleep_until(self, instant: datetime) -> None: ...


class WallClock:
    """Real time; sleeps in naps of at most a minute so suspend/resume or clock steps cannot oversleep a release."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep_until(self, instant: datetime) -> None:
        while (remaining := (instant - self.now()).total_seconds()) > 0:
            await anyio.sleep(min(remaining, _MAX_NAP_S))
