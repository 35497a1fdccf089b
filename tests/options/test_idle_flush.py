"""Options pipeline: rows buffered by the last data batch are committed on idle ticks, not held until the quiet
period (one snapshot interval of wall time) ends the session; a quiet period ends the session once."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from hydra_daemon.backoff import Backoff
from hydra_daemon.config import parse_config
from hydra_daemon.databento.decode import BatchSource, DecodedBatch
from hydra_daemon.options.pipeline import OptionsIngestPipeline
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from tests.helpers import eventually, fast_config, running


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return fast_config(seed=4)


async def test_a_paused_stream_leaves_nothing_buffered(venue: VenueThread, store: Store, tmp_path: Path) -> None:
    info = venue.info
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "storage": {"arctic_uri": store.uri, "flush_interval_s": 0.5},
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
    writer = pipeline.writer
    async with running(pipeline):
        await eventually(lambda: pipeline.watermark("HE", "mbp-1") is not None, "option quotes committed")
        venue.fault("pause", "1")  # heartbeats only from now on; the last batches' rows are not yet due
        try:
            await eventually(lambda: writer.pending_rows() == 0, "buffered rows committed during the pause")
        finally:
            venue.fault("pause", "0")
    assert pipeline.stats.reconnects == 0
    assert list(pipeline.stats.markets) == ["HE"], "HE's options delivered; the underlying HE.FUT is not a market"
    assert pipeline.stats.markets["HE"].last_record_time is not None


async def test_a_quiet_period_ends_the_session_once(store: Store, tmp_path: Path) -> None:
    quiet_s = 0.05
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "storage": {"arctic_uri": store.uri},
            "options": {"snapshot_interval_s": quiet_s},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    pipeline = OptionsIngestPipeline(config, store, ApiKey("db-QuietKey0123456789"))
    with capture_logs() as events:
        await anyio.sleep(quiet_s)  # at least the quiet period since the pipeline began
        for _ in range(3):
            await pipeline.on_idle()
        first = [e["event"] for e in events].count("store.snapshot")
        await pipeline.persist(DecodedBatch((), BatchSource.LIVE))  # data flows again
        await anyio.sleep(quiet_s)
        for _ in range(3):
            await pipeline.on_idle()
    assert (first, [e["event"] for e in events].count("store.snapshot")) == (1, 2)
