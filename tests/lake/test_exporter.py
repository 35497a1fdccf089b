"""The daemon's lake job: exports what is due on its clock, and a shutdown in the middle of an export ends it
cleanly between days (the next run completes it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import numpy as np
import pandas as pd

from hydra_daemon.config import parse_config
from hydra_daemon.lake.exporter import LakeExporter
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.lake import read_manifest
from hydra_daemon.store.symbols import FUTURES


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def now_ns(self) -> int:
        return int(pd.Timestamp(self.at).value)

    async def sleep_until(self, instant: datetime) -> None:
        await anyio.sleep(0)


def _store(tmp_path: Path) -> Store:
    store = Store.open(f"lmdb://{tmp_path / 'arctic'}?map_size=1GB", writer=True)
    index = pd.date_range("2026-03-02", "2026-03-13 23:00", freq="h", tz="UTC", name="ts_event")
    store.library(FUTURES).write("HE.ohlcv-1h", pd.DataFrame({"close": np.arange(len(index), dtype="float64")}, index))
    return store


async def test_the_job_exports_the_days_complete_on_its_clock_and_stops_cleanly_when_cancelled(tmp_path: Path) -> None:
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "lake": {"export_delay_s": 600},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    with _store(tmp_path) as store:
        clock = _Clock(datetime(2026, 3, 5, 23, tzinfo=UTC))  # Wed 3/4 closes Thu 16:00 CST (22:00 UTC) + 10 min
        exporter = LakeExporter(config, store, clock)
        assert exporter.interval_s == min(60.0, 4 * config.storage.flush_interval_s)  # a few flushes apart
        assert await exporter.run_once() == 3  # Mon 2 .. Wed 4
        dataset = config.storage.lake_dir / FUTURES / "HE.ohlcv-1h"
        manifest = read_manifest(dataset)
        assert manifest is not None and max(manifest.partitions).isoformat() == "2026-03-04"

        clock.at = datetime(2026, 3, 20, tzinfo=UTC)
        with anyio.CancelScope() as scope:
            scope.cancel()  # a shutdown as the run starts: nothing is published, the manifest stays
            await exporter.run_once()
        assert max(read_manifest(dataset).partitions).isoformat() == "2026-03-04"  # type: ignore[union-attr]
        assert await exporter.run_once() == 9  # the next run completes the rest: Thu 5 .. Fri 13
