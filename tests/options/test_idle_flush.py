"""Options pipeline: rows buffered by the last data batch are committed on idle ticks, not held until the quiet
period (one snapshot interval of wall time) ends the session."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from hydra_daemon.backoff import Backoff
from hydra_daemon.config import parse_config
from hydra_daemon.options.pipeline import OptionsIngestPipeline
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.testing import fast_config
from hydra_daemon.sim.venue import VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.uri import default_lmdb_uri


async def test_a_paused_stream_leaves_nothing_buffered(tmp_path: Path) -> None:
    with VenueThread(fast_config(seed=4)) as venue, Store.open(default_lmdb_uri(tmp_path), writer=True) as store:
        info = venue.info
        config = parse_config(
            {
                "state_dir": str(tmp_path),
                "storage": {"arctic_uri": default_lmdb_uri(tmp_path), "flush_interval_s": 0.5},
                "databento": {"live_gateway": info.live_host, "live_port": info.live_port, "heartbeat_interval_s": 1},
                "options": {"snapshot_interval_s": 3600},  # the quiet period: far longer than this test
                "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
            }
        )
        clock = venue.venue.clock
        assert clock is not None
        pipeline = OptionsIngestPipeline(
            config, store, ApiKey(info.api_key), clock=clock, backoff=Backoff(base_s=0.05, cap_s=0.4)
        )
        writer = pipeline.committer.writer
        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.run)
            await _eventually(lambda: pipeline.watermark("HE", "mbp-1") is not None, "option quotes committed")
            venue.fault("pause", "1")  # heartbeats only from now on; the last batches' rows are not yet due
            try:
                await _eventually(lambda: writer.pending_rows() == 0, "buffered rows committed during the pause")
            finally:
                venue.fault("pause", "0")
            group.cancel_scope.cancel()
        assert pipeline.stats.reconnects == 0


async def _eventually(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await anyio.sleep(0.05)
