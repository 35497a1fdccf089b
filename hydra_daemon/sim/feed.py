"""The market engine task: advances the model with the sim clock, appends to the tape, records, wakes sessions."""

from __future__ import annotations

import asyncio
import contextlib

from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.market import MarketModel
from hydra_daemon.sim.recorder import Recorder
from hydra_daemon.sim.tape import Tape

TICK_S = 0.02


class MarketFeed:
    """Owns the model, the tape and the optional ground-truth recorder; `run()` is the only writer of the tape."""

    def __init__(self, model: MarketModel, clock: SimClock, tape: Tape, recorder: Recorder | None) -> None:
        self.model = model
        self.clock = clock
        self.tape = tape
        self.recorder = recorder
        self._tick = asyncio.Event()

    def step(self) -> None:
        """Generate everything up to the clock's now, append it, record it, and wake waiting sessions."""
        now = self.clock.now_ns()
        if now <= self.model.now_ns:
            return
        emissions = self.model.advance(now)
        self.tape.append(emissions)
        if self.recorder is not None and emissions:
            self.recorder.write(emissions)
        self.tape.prune(now)
        self.wake()

    def wake(self) -> None:
        """Wake every session waiting in `wait_for_data` (new records are on the tape)."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def run(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(TICK_S)

    async def wait_for_data(self, timeout: float) -> None:
        """Return after the next engine step or `timeout` seconds, whichever first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tick.wait(), timeout)
