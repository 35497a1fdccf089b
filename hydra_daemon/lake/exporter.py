"""Exporting what is due to the Parquet lake: from the daemon (a supervised periodic job) and after backfills.

Each run publishes, for every symbol of every library, the days that became complete (`schedule.last_complete_day`)
and the days that rows written since the dataset's lake watermark touched (COT cycles, revisions, backfills), then
moves the watermark — see `store.lake.export_due`. The ArcticDB and Parquet work runs in a worker thread that stops
between days when the daemon shuts down; whatever it had not recorded in a manifest is simply done again next time.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import anyio
import anyio.from_thread
import structlog

from hydra_daemon.clock import Clock, WallClock
from hydra_daemon.config import Config
from hydra_daemon.lake.schedule import last_complete_day
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.lake import export_store_due

POLL_S = 60.0
"""Wall seconds between the job's runs at most (shorter when `export_delay_s` or a few flush intervals are)."""
FLUSHES_PER_POLL = 4
"""Polling more often than every few flushes would find nothing new: the store changes once per flush."""

log = structlog.get_logger()


class LakeExporter:
    """The daemon's lake job: `run_once()` exports what is due on `clock` and returns how many partitions it wrote."""

    def __init__(self, config: Config, store: Store, clock: Clock) -> None:
        self.store = store
        self.lake_dir = config.storage.lake_dir
        self.delay = timedelta(seconds=config.lake.export_delay_s)
        self.clock = clock
        self.interval_s = min(POLL_S, config.lake.export_delay_s, FLUSHES_PER_POLL * config.storage.flush_interval_s)

    async def run_once(self) -> int:
        """Export what is due; symbols not reached within `interval_s` wait for the next run (see `until`)."""
        through = last_complete_day(self.clock.now(), self.delay)
        until = time.monotonic() + self.interval_s
        cancelled = anyio.get_cancelled_exc_class()  # known on the event loop only, not in the worker thread
        written = await anyio.to_thread.run_sync(self._export, through, until, cancelled)
        if written:
            log.info("lake.exported", partitions=len(written), complete_through=through.isoformat())
        return len(written)

    def _export(self, through: date, until: float, cancelled: type[BaseException]) -> list[Path]:
        """Worker thread: stops between days when the daemon shuts down (what the manifests do not record yet is
        published again by the next run); the cancellation ends here, no traceback outlives the export."""
        try:
            return export_store_due(self.store, self.lake_dir, through, anyio.from_thread.check_cancelled, until)
        except cancelled:
            return []


def export_after_backfill(config: Config, store: Store) -> list[Path]:
    """What a backfill wrote (and anything else due), exported now if the lake is enabled (sync)."""
    if not config.lake.enabled:
        return []
    through = last_complete_day(WallClock().now(), timedelta(seconds=config.lake.export_delay_s))
    return export_store_due(store, config.storage.lake_dir, through)
