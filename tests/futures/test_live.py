"""Futures pipeline against the simulated venue: real Live/Historical clients on loopback, real ArcticDB on LMDB.

The venue records every record it emits (`record_path`); after each scenario the store must hold exactly the
futures records of that ground truth — none missing, none twice — up to the newest stored row of each symbol.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import databento_dbn as dbn
import pandas as pd
import pytest
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.config import Config, parse_config
from hydra_daemon.databento import live_stream
from hydra_daemon.futures.pipeline import FuturesIngestPipeline
from hydra_daemon.ingest import PipelineState
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.config import LEAN_HOGS, LIVE_CATTLE
from hydra_daemon.sim.market import Emission
from hydra_daemon.sim.venue import Venue, VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import FUTURES, data_symbol
from hydra_daemon.store.uri import default_lmdb_uri
from tests.helpers import eventually, fast_config, futures_truth, record_keys, running

SCHEMAS = ("ohlcv-1d", "ohlcv-1m", "definition")
MINUTE_NS = 60 * 1_000_000_000
CFTC_CODES = {"HE": "054642", "LE": "057642"}


@pytest.fixture(scope="module")
def venue_config(tmp_path_factory: pytest.TempPathFactory) -> VenueConfig:
    """A venue recording its ground truth."""
    return fast_config(record_path=tmp_path_factory.mktemp("venue") / "truth.dbn")


def make_config(venue: VenueThread, state_dir: Path, markets: tuple[str, ...] = ("HE",), **databento: Any) -> Config:
    info = venue.info
    settings = {
        "live_gateway": info.live_host,
        "live_port": info.live_port,
        "historical_url": info.historical_url,
        "futures_schemas": ["ohlcv-1d", "ohlcv-1m"],
        "heartbeat_interval_s": 1,
        **databento,
    }
    return parse_config(
        {
            "state_dir": str(state_dir),
            "storage": {"arctic_uri": default_lmdb_uri(state_dir), "flush_interval_s": 0.05},
            "databento": settings,
            "markets": [{"name": m, "futures_root": m, "options_root": m, "cftc_code": CFTC_CODES[m]} for m in markets],
        }
    )


def make_pipeline(venue: VenueThread, config: Config, store: Store) -> FuturesIngestPipeline:
    clock = venue.venue.clock
    assert clock is not None
    return FuturesIngestPipeline(
        config, store, ApiKey(venue.info.api_key), clock=clock, backoff=Backoff(base_s=0.05, cap_s=0.4)
    )


def minute_mark(pipeline: FuturesIngestPipeline, market: str = "HE") -> int:
    mark = pipeline.watermark(market, "ohlcv-1m")
    return -1 if mark is None else mark.ts_ns


async def caught_up(venue: VenueThread, pipeline: FuturesIngestPipeline, minutes: int = 3, market: str = "HE") -> None:
    """Wait until minute bars at least `minutes` sim-minutes newer than the venue's clock now are committed."""
    clock = venue.venue.clock
    assert clock is not None
    target = clock.now_ns() + minutes * MINUTE_NS
    await eventually(
        lambda: minute_mark(pipeline, market) >= target, "minute bars newer than the fault to be committed"
    )


def assert_store_matches_truth(
    venue: VenueThread, store: Store, since_ns: int = 0, market: str = "HE"
) -> dict[str, int]:
    """Every stored symbol of `market` equals the ground truth from `since_ns` (when capture began) up to its newest
    row; returns the row counts compared."""
    truth = {
        schema: frame[(frame.index.asi8 >= since_ns) & frame["symbol"].str.startswith(market)]
        for schema, frame in futures_truth(venue, SCHEMAS).items()
    }
    library = store.library(FUTURES)
    counts: dict[str, int] = {}
    for schema in SCHEMAS:
        if not library.has_symbol(data_symbol(market, schema)):
            assert truth[schema].empty, f"{schema}: nothing stored, but the venue emitted {len(truth[schema])} rows"
            counts[schema] = 0
            continue
        stored = library.read(data_symbol(market, schema)).data
        stored.index = pd.DatetimeIndex(stored.index).tz_localize("UTC") if stored.index.tz is None else stored.index
        stored = stored[stored.index.asi8 >= since_ns]
        if stored.empty:
            counts[schema] = 0
            continue
        assert stored.index.is_monotonic_increasing, schema
        newest = stored.index.max()
        expected = truth[schema]
        got_before, want_before = (
            record_keys(stored[stored.index < newest], schema),
            record_keys(expected[expected.index < newest], schema),
        )
        missing, extra = want_before - got_before, got_before - want_before
        assert not missing and not extra, f"{schema}: missing {list(missing)[:3]}, extra/duplicated {list(extra)[:3]}"
        at_newest = record_keys(stored[stored.index == newest], schema)
        assert not (at_newest - record_keys(expected[expected.index == newest], schema)), (
            f"{schema}: duplicate at the end"
        )
        assert max(at_newest.values()) == 1 or schema == "definition"
        counts[schema] = len(stored)
    return counts


async def test_bars_land_with_the_venue_values(venue: VenueThread, store: Store, tmp_path: Path) -> None:
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await caught_up(venue, pipeline)
        await eventually(lambda: pipeline.watermark("HE", "ohlcv-1d") is not None, "a daily bar")
    counts = assert_store_matches_truth(venue, store)
    assert counts["ohlcv-1m"] > 0 and counts["ohlcv-1d"] > 0 and counts["definition"] > 0
    bars = store.library(FUTURES).read(data_symbol("HE", "ohlcv-1d")).data
    assert set(bars["symbol"]) <= {i.raw_symbol for i in venue.venue.model.instruments if i.kind == "F"}
    assert (bars["high"] >= bars["low"]).all()
    assert pipeline.stats.reconnects == 0
    he = pipeline.stats.markets["HE"]
    assert he.last_record_time is not None and he.last_record_time == pipeline.stats.last_record_time, (
        "HE's progress, for health"
    )


@pytest.mark.parametrize("fault", ["reset", "error", "close", "corrupt"])
async def test_one_shot_fault_then_recovery_keeps_store_exact(
    venue: VenueThread, store: Store, tmp_path: Path, fault: str
) -> None:
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await caught_up(venue, pipeline, minutes=1)
        venue.fault(fault)
        await eventually(lambda: pipeline.stats.reconnects >= 1, f"a reconnect after {fault}")
        await caught_up(venue, pipeline)
    assert pipeline.stats.last_error is not None
    assert venue.info.api_key not in pipeline.stats.last_error
    assert_store_matches_truth(venue, store)


async def test_stall_is_detected_by_our_watchdog(venue: VenueThread, store: Store, tmp_path: Path) -> None:
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await caught_up(venue, pipeline, minutes=1)
        venue.fault("stall", "1")
        try:
            await eventually(lambda: pipeline.stats.reconnects >= 1, "the watchdog to drop the silent session")
        finally:
            venue.fault("stall", "0")
        await caught_up(venue, pipeline)
    assert "no record or heartbeat" in (pipeline.stats.last_error or "")
    assert_store_matches_truth(venue, store)


async def test_gateway_down_for_a_while(venue: VenueThread, store: Store, tmp_path: Path) -> None:
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await caught_up(venue, pipeline, minutes=1)
        venue.fault("down", "120")  # down until two reconnects have failed, however slowly they come under load
        try:
            await eventually(lambda: pipeline.stats.reconnects >= 2, "failed reconnects while the gateway is down")
        finally:
            venue.fault("down", "0")
        await caught_up(venue, pipeline)
    assert pipeline.stats.state == "streaming"
    assert "Connection to" in (pipeline.stats.last_error or "")  # refused while down (the RST came first)
    assert_store_matches_truth(venue, store)


async def test_restart_resumes_from_the_watermark(venue: VenueThread, store: Store, tmp_path: Path) -> None:
    config = make_config(venue, tmp_path)
    first = make_pipeline(venue, config, store)
    async with running(first):
        await caught_up(venue, first, minutes=2)
    mark = first.watermark("HE", "ohlcv-1m")
    assert mark is not None
    await anyio.sleep(0.3)  # let the venue move on while nothing is running
    second = make_pipeline(venue, config, store)
    with structlog.testing.capture_logs() as logs:
        async with running(second):
            await caught_up(venue, second)
    started = [e for e in logs if e["event"] == "live_session_started"]
    assert started[0]["replay_from_ns"]["ohlcv-1m"] == mark.ts_ns - 60_000_000_000
    assert_store_matches_truth(venue, store)


async def test_invalid_bar_is_rejected_logged_and_never_stored(
    venue: VenueThread, store: Store, tmp_path: Path
) -> None:
    future = next(i for i in venue.venue.model.instruments if i.kind == "F")
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    with structlog.testing.capture_logs() as logs:
        async with running(pipeline):
            await caught_up(venue, pipeline, minutes=1)
            ts_event = venue.call(lambda v: _inject_bad_bar(v, future.instrument_id))
            await caught_up(venue, pipeline)
    rejected = [e for e in logs if e["event"] == "record_rejected"]
    assert len(rejected) == 1
    assert "high < low" in rejected[0]["what"]
    assert rejected[0]["where"] == f"HE {future.raw_symbol} at {pd.Timestamp(ts_event, tz='UTC').isoformat()}"
    assert pipeline.stats.rejects == 1
    bars = store.library(FUTURES).read(data_symbol("HE", "ohlcv-1m")).data
    assert not ((bars["high"] < bars["low"]).any())
    assert_store_matches_truth(venue, store)


def _inject_bad_bar(venue: Venue, instrument_id: int) -> int:
    """Append an OHLCV-1m bar with high < low to the venue's tape (not to its ground truth) at the newest minute."""
    tape = venue.tape
    ts_event = tape.last_key("ohlcv-1m")
    assert ts_event is not None and venue.clock is not None
    price = 90 * 1_000_000_000
    bar = dbn.OHLCVMsg(
        int(dbn.RType.OHLCV_1M), 1, instrument_id, ts_event, price, price - 10**9, price + 10**9, price, 3
    )
    tape.append([Emission("ohlcv-1m", ts_event, instrument_id, bytes(bar), emitted_ns=venue.clock.now_ns())])
    return ts_event


async def test_gap_older_than_the_replay_window_is_filled_from_historical(store: Store, tmp_path: Path) -> None:
    truth = tmp_path / "truth.dbn"
    with VenueThread(fast_config(seed=5, record_path=truth, replay_window_s=900.0)) as venue:
        clock = venue.venue.clock
        assert clock is not None
        config = make_config(venue, tmp_path, replay_window_s=600)
        first = make_pipeline(venue, config, store)
        async with running(first):
            await caught_up(venue, first, minutes=2)
        mark = first.watermark("HE", "ohlcv-1m")
        assert mark is not None
        # A fresh store captures from the start of the venue's replay window (older history is a backfill).
        captured_from = int(store.library(FUTURES).read(data_symbol("HE", "ohlcv-1m")).data.index.asi8.min())
        await eventually(lambda: clock.now_ns() > mark.ts_ns + 1200 * 1_000_000_000, "the venue to move 20 min on")
        second = make_pipeline(venue, config, store)
        with structlog.testing.capture_logs() as logs:
            async with running(second):
                await caught_up(venue, second)
        assert second.stats.gaps_filled >= 1
        fills = {e["schema"] for e in logs if e["event"] == "gap_fill_started"}
        assert {"ohlcv-1m", "definition"} <= fills
        assert_store_matches_truth(venue, store, since_ns=captured_from)


async def test_a_market_behind_is_filled_from_its_own_watermark_not_the_others(store: Store, tmp_path: Path) -> None:
    """HE is left out of the configuration while LE goes on; put back, HE is far behind the replay window. The fill
    starts at HE's watermark for HE alone: LE, current, is not re-filled from HE's watermark (one start per schema
    made every market's fill span the oldest market's gap). Both markets end up exact."""
    truth = tmp_path / "truth.dbn"
    venue_config = fast_config(seed=7, record_path=truth, replay_window_s=900.0)
    venue_config = replace(venue_config, market=replace(venue_config.market, products=(LEAN_HOGS, LIVE_CATTLE)))
    with VenueThread(venue_config) as venue:
        clock = venue.venue.clock
        assert clock is not None
        both = make_config(venue, tmp_path, ("HE", "LE"), replay_window_s=600)
        first = make_pipeline(venue, both, store)
        async with running(first):
            await eventually(lambda: min(minute_mark(first, m) for m in ("HE", "LE")) > 0, "both markets' minute bars")
        captured_from = {
            m: int(store.library(FUTURES).read(data_symbol(m, "ohlcv-1m")).data.index.asi8.min()) for m in ("HE", "LE")
        }
        he_mark = minute_mark(first, "HE")
        only_le = make_pipeline(venue, make_config(venue, tmp_path, ("LE",), replay_window_s=600), store)
        async with running(only_le):
            await eventually(lambda: clock.now_ns() > he_mark + 1200 * 1_000_000_000, "the venue to move 20 min on")
            await caught_up(venue, only_le, market="LE")
        le_mark = minute_mark(only_le, "LE")
        again = make_pipeline(venue, both, store)
        with structlog.testing.capture_logs() as logs:
            async with running(again):
                await caught_up(venue, again)
                await eventually(lambda: minute_mark(again, "HE") > le_mark, "HE caught up")
        fills = [e["start_ns"] for e in logs if e["event"] == "gap_fill_started" and e["schema"] == "ohlcv-1m"]
        # The first from HE's watermark; after connecting, what slipped out of the replay window meanwhile.
        assert fills and fills[0] == {"HE.FUT": he_mark} and all(set(f) == {"HE.FUT"} for f in fills), fills
        for market in ("HE", "LE"):
            assert_store_matches_truth(venue, store, since_ns=captured_from[market], market=market)


async def test_a_refused_key_parks_the_stream_says_so_once_and_never_leaks_the_key(
    venue: VenueThread, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_stream, "AUTH_RETRY_S", 0.5)  # 10 minutes in production
    key = venue.info.api_key
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    caplog.set_level(logging.DEBUG)
    venue.fault("auth_failure", "1")
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(pipeline):
                await eventually(lambda: pipeline.stats.state == PipelineState.AUTH_REFUSED, "the key refused")
                await eventually(lambda: pipeline.stats.reconnects >= 3, "rare retries with the same key")
                venue.fault("auth_failure", "0")
                await caught_up(venue, pipeline, minutes=1)
    finally:
        venue.fault("auth_failure", "0")
    refused = [e for e in logs if e["event"] == "live_auth_refused"]
    assert len(refused) == 1, "said once, however often it is retried"
    assert "Authentication failed" in refused[0]["error"] and refused[0]["retry_in_s"] == 0.5
    assert not any(e["event"] == "live_session_ended" for e in logs), "a refusal is not an ordinary reconnect"
    assert key not in repr(logs)
    assert key not in caplog.text
    assert key not in repr(pipeline.stats.as_dict())


async def test_a_record_the_dbn_library_panics_on_ends_the_session_at_once(
    venue: VenueThread, store: Store, tmp_path: Path
) -> None:
    """A known record type declaring too short a length: the session is replaced because of it (not by the silence
    watchdog: heartbeats every 30 s make that 46 s), and the store stays exact."""
    pipeline = make_pipeline(venue, make_config(venue, tmp_path, heartbeat_interval_s=30), store)
    async with running(pipeline):
        await caught_up(venue, pipeline, minutes=1)
        venue.fault("short_record")
        await eventually(lambda: pipeline.stats.reconnects >= 1, "a reconnect after the short record")
        await caught_up(venue, pipeline)
    assert "UndecodableStream: the Live client could not decode the gateway's stream" in (
        pipeline.stats.last_error or ""
    )
    assert "Malformed `dbn::record::Mbp1Msg` record" in (pipeline.stats.last_error or "")
    assert pipeline.stats.corrupt_records == 1
    [entry] = [json.loads(line) for line in (tmp_path / "quarantine" / "dbn.jsonl").read_text().splitlines()]
    assert entry["source"] == "live" and "Malformed" in entry["reason"]
    assert_store_matches_truth(venue, store)


async def test_a_record_the_live_client_cannot_decode_is_skipped_and_its_span_filled_from_historical(
    venue: VenueThread, store: Store, tmp_path: Path
) -> None:
    """A record of a type the client's DBN version does not know (a gateway on a newer version may send one) ended
    every session at the same point: each reconnect replayed into it again, so nothing after it was stored, for any
    market. Live now replays from past it, and Historical (decoded by us, which skips it) fills what Live skipped."""
    future = next(i for i in venue.venue.model.instruments if i.kind == "F")
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    with structlog.testing.capture_logs() as logs:
        async with running(pipeline):
            await caught_up(venue, pipeline, minutes=1)
            venue.call(lambda v: _inject_unknown_record(v, future.instrument_id))
            await caught_up(venue, pipeline)
    [skipped, *_] = [e for e in logs if e["event"] == "live_record_skipped"]
    assert skipped["log_level"] == "error" and "could not decode" in skipped["error"], skipped
    quarantined = [json.loads(line) for line in (tmp_path / "quarantine" / "dbn.jsonl").read_text().splitlines()]
    assert any(e["source"] == "historical" and e["raw_hex"].startswith("0e99") for e in quarantined), quarantined
    assert_store_matches_truth(venue, store)


async def test_a_record_stamped_years_ahead_is_quarantined_not_taken_for_the_newest(
    venue: VenueThread, store: Store, tmp_path: Path
) -> None:
    """A minute bar stamped ten years after the venue's clock (DBN has no checksum: a damaged time still inside
    1990..2100): stored, it became the symbol's watermark, and every later bar was dropped as a redelivery."""
    future = next(i for i in venue.venue.model.instruments if i.kind == "F")
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await caught_up(venue, pipeline, minutes=1)
        venue.call(lambda v: _inject_bar_stamped_ahead(v, future.instrument_id, years=10))
        await caught_up(venue, pipeline)
    assert store.library(FUTURES).read(data_symbol("HE", "ohlcv-1m")).data.index.max().year < 2030
    assert_store_matches_truth(venue, store)
    quarantined = [json.loads(line) for line in (tmp_path / "quarantine" / "dbn.jsonl").read_text().splitlines()]
    assert any(e["source"] == "live" and "stamped 20" in e["reason"] for e in quarantined), quarantined


def _inject_bar_stamped_ahead(venue: Venue, instrument_id: int, years: int) -> None:
    """Append a well-formed minute bar to the ohlcv-1m tape, emitted at the venue's now but stamped `years` later."""
    assert venue.clock is not None
    now = venue.clock.now_ns()
    stamped = now + years * 365 * 86_400 * 10**9
    price = 80 * 10**9
    record = dbn.OHLCVMsg(int(dbn.RType.OHLCV_1M), 1, instrument_id, stamped, price, price, price, price, 1)
    venue.tape.append([Emission("ohlcv-1m", now, instrument_id, bytes(record), emitted_ns=now)])


def _inject_unknown_record(venue: Venue, instrument_id: int) -> None:
    """Append a 56-byte record of an rtype unknown to the client (0x99) to the ohlcv-1m tape, at the venue's now."""
    assert venue.clock is not None
    now = venue.clock.now_ns()
    record = struct.pack("<BBHIQ", 14, 0x99, 1, instrument_id, now) + bytes(40)
    venue.tape.append([Emission("ohlcv-1m", now, instrument_id, record, emitted_ns=now)])
