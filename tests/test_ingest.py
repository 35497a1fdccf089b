"""The IngestPipeline contract: idle ticks are a separate signal, not zero-row batches; a market's progress counts
only records newer than it delivered before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pandas as pd

from hydra_daemon.ingest import Idle, IngestPipeline, MarketProgress, PipelineState, Problem


class Scripted(IngestPipeline[list[int]]):
    """Yields two batches with idle ticks around them and notes what `run()` called."""

    def __init__(self) -> None:
        super().__init__(markets=("HE",), schema="test")
        self.persisted: list[list[int]] = []
        self.idles = 0

    async def fetch(self) -> AsyncIterator[list[int] | Idle]:
        for item in (Idle.TICK, [1, 2], Idle.TICK, Idle.TICK, [3]):
            yield item

    def validate(self, batch: list[int]) -> tuple[list[int], list[Problem]]:
        return batch, []

    async def persist(self, clean: list[int]) -> int:
        self.persisted.append(clean)
        return len(clean)

    async def on_idle(self) -> None:
        self.idles += 1


def test_idle_ticks_call_on_idle_and_are_not_batches() -> None:
    pipeline = Scripted()
    anyio.run(pipeline.run)
    assert pipeline.persisted == [[1, 2], [3]]
    assert (pipeline.idles, pipeline.stats.idle_ticks) == (3, 3)
    assert (pipeline.stats.batches, pipeline.stats.records) == (2, 3)
    assert pipeline.stats.state is PipelineState.FINISHED
    assert pipeline.stats.as_dict()["state"] == "finished"


def test_market_progress_advances_only_past_the_newest_record_seen() -> None:
    progress = MarketProgress()
    progress.advance(pd.DatetimeIndex([], tz="UTC"), "ohlcv-1m")
    assert progress.last_record_time is None and progress.schemas == {}
    progress.advance(pd.DatetimeIndex(["2026-03-10 17:00:00.000000001", "2026-03-10 17:00:00"], tz="UTC"), "ohlcv-1m")
    assert progress.last_record_time == pd.Timestamp("2026-03-10 17:00:00.000000001", tz="UTC"), "ns kept"
    progress.advance(pd.DatetimeIndex(["2026-03-10 17:00:00", "2026-03-10 16:59"], tz="UTC"), "ohlcv-1m")
    assert progress.last_record_time == pd.Timestamp("2026-03-10 17:00:00.000000001", tz="UTC"), (
        "a replay is no delivery"
    )
    progress.advance(pd.DatetimeIndex(["2026-03-10 16:59", "2026-03-10 17:01"], tz="UTC"), "ohlcv-1m")
    assert progress.last_record_time == pd.Timestamp("2026-03-10 17:01", tz="UTC")
    progress.advance(pd.DatetimeIndex(["2026-03-09"], tz="UTC"), "ohlcv-1d")
    assert progress.last_record_time == pd.Timestamp("2026-03-10 17:01", tz="UTC"), "an older daily bar"
    assert progress.schemas == {
        "ohlcv-1m": pd.Timestamp("2026-03-10 17:01", tz="UTC"),
        "ohlcv-1d": pd.Timestamp("2026-03-09", tz="UTC"),
    }, "each schema keeps its own newest"
