"""Options pipeline against the simulated venue: real Live client on loopback, real ArcticDB on LMDB.

The venue prices every option quote with undiscounted Black-76 (rate 0, ACT/365 from the quote's ts_recv, forward =
its future's mid at that moment) from a vol smile and keeps those inputs (`option_truth`), so the stored chains can
be checked against what the venue meant, not against a re-computation of ours.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import anyio
import databento_dbn as dbn
import numpy as np
import pandas as pd
import pytest
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.config import Config, parse_config
from hydra_daemon.options.features import FEATURE_NAMES
from hydra_daemon.options.pipeline import OptionsIngestPipeline
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.config import CRUDE_OIL, LEAN_HOGS, MarketConfig
from hydra_daemon.sim.market import Emission
from hydra_daemon.sim.venue import Venue, VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.partitions import read_stream
from hydra_daemon.store.symbols import OPTIONS, chain_symbol, data_symbol
from hydra_daemon.store.uri import default_lmdb_uri
from tests.helpers import FAST_START, eventually, running

NS_PER_S = 1_000_000_000
INTERVAL_S = 600  # one snapshot per wall second at speed 600


def two_markets() -> VenueConfig:
    products = (LEAN_HOGS, CRUDE_OIL)  # crude: LO options on CL futures
    market = MarketConfig(seed=5, products=products, start=FAST_START, speed=600.0, base_rate=300.0, rate=0.0)
    return VenueConfig(market=market)


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return two_markets()


def make_config(venue: VenueThread, state_dir: Path, **databento: object) -> Config:
    info = venue.info
    return parse_config(
        {
            "state_dir": str(state_dir),
            "storage": {"arctic_uri": default_lmdb_uri(state_dir), "flush_interval_s": 0.05},
            "databento": {
                "live_gateway": info.live_host,
                "live_port": info.live_port,
                "historical_url": info.historical_url,
                "heartbeat_interval_s": 1,
                **databento,
            },
            "options": {"snapshot_interval_s": INTERVAL_S, "liquid_max_spread_ticks": 6},
            "markets": [
                {"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"},
                {"name": "CL", "futures_root": "CL", "options_root": "LO", "cftc_code": "067651"},
            ],
        }
    )


def make_pipeline(venue: VenueThread, config: Config, store: Store) -> OptionsIngestPipeline:
    clock = venue.venue.clock
    assert clock is not None
    return OptionsIngestPipeline(
        config, store, ApiKey(venue.info.api_key), clock=clock, backoff=Backoff(base_s=0.05, cap_s=0.4)
    )


async def snapshots_after(venue: VenueThread, pipeline: OptionsIngestPipeline, count: int) -> None:
    """Wait until a chain snapshot `count` intervals newer than the venue's clock now is committed."""
    target = venue.now_ns() + count * INTERVAL_S * NS_PER_S

    def reached() -> bool:
        mark = pipeline.watermark("HE", "chain")
        return mark is not None and mark.ts_ns >= target

    await eventually(reached, f"{count} more chain snapshots")


def utc(values: pd.Series | pd.Index) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(values)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def read(store: Store, symbol: str) -> pd.DataFrame:
    frame = read_stream(store.library(OPTIONS), symbol).data
    frame.index = utc(frame.index)
    return frame


def latest_before(frame: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """Last row per instrument strictly before `at` (stream order)."""
    return frame[frame.index < at].groupby("instrument_id").tail(1).set_index("instrument_id")


async def test_chains_land_with_venue_values_and_iv_recovers_the_input_vol(
    venue: VenueThread, store: Store, tmp_path: Path
) -> None:
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await snapshots_after(venue, pipeline, 3)
    for market, option_root, future_root in (("HE", "HE", "HE"), ("CL", "LO", "CL")):
        chain = read(store, chain_symbol(market))
        assert chain["raw_symbol"].str.startswith(option_root).all()
        assert chain["underlying"].str.startswith(future_root).all()
        assert_chain_matches_venue(venue, store, market, chain)


def assert_chain_matches_venue(venue: VenueThread, store: Store, market: str, chain: pd.DataFrame) -> None:
    """Definitions, quotes and open interest as the venue published them; IVs equal to the venue's input vols."""
    times = chain.index.unique()
    assert len(times) >= 3
    assert not chain.reset_index().duplicated(["snapshot_time", "instrument_id"]).any()
    boundaries = times[times.asi8 % (INTERVAL_S * NS_PER_S) == 0]
    assert len(boundaries) >= len(times) - 1  # all but the session-end snapshot sit on the interval grid

    model = venue.venue.model
    options = {i.instrument_id: i for i in model.instruments if i.kind != "F"}
    assert set(chain["instrument_id"]) <= set(options)
    for row in chain.itertuples():
        option = options[row.instrument_id]
        assert (row.raw_symbol, row.strike, row.put_call) == (option.raw_symbol, option.strike, option.kind)
        assert option.underlying is not None and row.underlying == option.underlying.raw_symbol
        assert utc(pd.Series([row.expiration]))[0].value == option.expiration_ns

    ok = chain[chain["iv_status"] == "ok"]
    assert len(ok) >= 0.9 * len(chain[chain["quote_time"].notna()]) and len(ok) > 100
    quote_times = utc(ok["quote_time"]).asi8
    for row, quote_ns in zip(ok.itertuples(), quote_times, strict=True):
        truth = venue.option_truth(int(row.instrument_id), int(quote_ns))
        assert truth is not None, f"no venue truth for {row.raw_symbol} at {quote_ns}"
        assert abs(row.implied_vol - truth.vol) < 1e-6, row.raw_symbol
        assert row.iv_underlying_price == pytest.approx(truth.forward, abs=1e-9)
        assert (row.bid + row.ask) / 2 == pytest.approx(truth.mid, abs=1e-9)

    quotes = read(store, data_symbol(market, "mbp-1"))
    stats = read(store, data_symbol(market, "statistics"))
    oi = stats[stats["stat_type"] == int(dbn.StatType.OPEN_INTEREST)]
    for at in boundaries:
        snapshot = chain[chain.index == at].set_index("instrument_id")
        last_quotes = latest_before(quotes, at)
        quoted = snapshot.index.intersection(last_quotes.index)
        assert len(quoted) == snapshot["quote_time"].notna().sum() > 0
        np.testing.assert_array_equal(snapshot.loc[quoted, "bid"], last_quotes.loc[quoted, "bid_px_00"])
        np.testing.assert_array_equal(snapshot.loc[quoted, "ask"], last_quotes.loc[quoted, "ask_px_00"])
        np.testing.assert_array_equal(snapshot.loc[quoted, "bid_size"], last_quotes.loc[quoted, "bid_sz_00"])
        last_oi = latest_before(oi, at)
        with_oi = snapshot.index.intersection(last_oi.index)
        np.testing.assert_array_equal(snapshot.loc[with_oi, "open_interest"], last_oi.loc[with_oi, "quantity"])
        assert snapshot.drop(with_oi)["open_interest"].isna().all()


async def test_features_are_written_per_snapshot_and_expiry(venue: VenueThread, store: Store, tmp_path: Path) -> None:
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await snapshots_after(venue, pipeline, 2)
    chain = read(store, chain_symbol("HE"))
    features = FeatureStore(store)
    for name in FEATURE_NAMES:
        history = features.read_feature("HE", name)
        keys = set(zip(utc(history["as_of"]).asi8, utc(history["expiration"]).asi8, strict=True))
        expected = set(zip(chain.index.asi8, utc(chain["expiration"]).asi8, strict=True))
        assert keys == expected, name
        assert (history["revision"] == 0).all()
        assert (utc(history["available_at"]) == utc(history["as_of"])).all()
    atm = features.read_feature("HE", "atm_iv")
    last = chain.index.max()
    expirations = utc(chain["expiration"]).asi8
    latest = atm[utc(atm["as_of"]) == last]
    assert len(latest) == 3  # three optioned futures in the venue
    for value, expiration in zip(latest["value"], utc(latest["expiration"]).asi8, strict=True):
        expiry = chain[(chain.index == last) & (expirations == expiration)]
        distance = (expiry["strike"] - expiry["underlying_price"].dropna().iloc[0]).abs()
        nearest = expiry.loc[distance == distance.min(), "strike"].min()
        vols = expiry.loc[expiry["strike"] == nearest, "implied_vol"].dropna()
        assert value == pytest.approx(vols.mean(), abs=1e-12)
        assert 0.1 < value < 0.6


async def test_restart_stores_every_snapshot_once(venue: VenueThread, store: Store, tmp_path: Path) -> None:
    config = make_config(venue, tmp_path)
    first = make_pipeline(venue, config, store)
    async with running(first):
        await snapshots_after(venue, first, 1)
    mark = first.watermark("HE", "chain")
    assert mark is not None
    second = make_pipeline(venue, config, store)
    with structlog.testing.capture_logs() as logs:
        async with running(second):
            await snapshots_after(venue, second, 1)
    chain = read(store, chain_symbol("HE"))
    assert not chain.reset_index().duplicated(["snapshot_time", "instrument_id"]).any()
    assert (chain.index > pd.Timestamp(mark.ts_ns, tz="UTC")).any()
    atm = FeatureStore(store).read_feature("HE", "atm_iv")
    assert (atm["revision"] == 0).all()
    started = [e for e in logs if e["event"] == "live_session_started"]
    quotes_mark = second.watermark("HE", "mbp-1")
    assert quotes_mark is not None and started[0]["replay_from_ns"]["mbp-1"] > 0
    quotes = read(store, data_symbol("HE", "mbp-1"))
    key = ["instrument_id", "ts_event", "sequence"]
    assert not quotes.reset_index().duplicated(["ts_recv", *key]).any()


async def test_an_outage_beyond_the_replay_window_fills_the_underlying_too(store: Store, tmp_path: Path) -> None:
    """Each market's options resume from its own watermark; the underlying futures, stored by no market, are filled
    from the oldest of them, with the options they price (left out, the chains after an outage had no forward)."""
    window = replace(two_markets(), replay_window_s=900.0)
    with VenueThread(window) as venue:
        config = make_config(venue, tmp_path, replay_window_s=600)
        first = make_pipeline(venue, config, store)
        async with running(first):
            await snapshots_after(venue, first, 1)
        marks = {m: first.watermark(m, "mbp-1") for m in ("HE", "CL")}
        await eventually(lambda: venue.now_ns() > max(m.ts_ns for m in marks.values() if m) + 1200 * NS_PER_S, "20 min")
        second = make_pipeline(venue, config, store)
        with structlog.testing.capture_logs() as logs:
            async with running(second):
                await snapshots_after(venue, second, 1)
    starts = {m: mark.ts_ns for m, mark in marks.items() if mark is not None}
    [fill, *_] = [e["start_ns"] for e in logs if e["event"] == "gap_fill_started" and e["schema"] == "mbp-1"]
    oldest = min(starts.values())
    assert fill == {"HE.OPT": starts["HE"], "LO.OPT": starts["CL"], "HE.FUT": oldest, "CL.FUT": oldest}, fill
    after = read(store, chain_symbol("HE"))
    after = after[after.index > pd.Timestamp(starts["HE"], tz="UTC")]
    assert not after.empty and after["underlying_price"].notna().all(), "every chain after the outage has a forward"


def _inject_crossed_quote(venue: Venue, instrument_id: int) -> int:
    """Append a crossed quote for `instrument_id` to the tape, 1 ns before the next snapshot boundary after
    everything generated so far (atomic on the venue loop); return that boundary."""
    assert venue.clock is not None
    interval = INTERVAL_S * NS_PER_S
    boundary = (venue.model.now_ns // interval + 1) * interval
    at_ns = boundary - 1
    level = dbn.BidAskPair(2_000_000_000, 1_900_000_000, 4, 4)
    msg = dbn.MBP1Msg(
        1, instrument_id, at_ns - 1000, 2_000_000_000, 4, dbn.Action.MODIFY, dbn.Side.BID, 0, at_ns, levels=level
    )
    venue.tape.append([Emission("mbp-1", at_ns, instrument_id, bytes(msg), emitted_ns=venue.clock.now_ns())])
    return boundary


async def test_crossed_quote_is_stored_flagged_and_logged_once(store: Store, tmp_path: Path) -> None:
    with VenueThread(two_markets()) as venue:
        option = next(i for i in venue.venue.model.instruments if i.kind == "C")
        pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
        with structlog.testing.capture_logs() as logs:
            async with running(pipeline):
                await snapshots_after(venue, pipeline, 1)
                boundary = venue.call(lambda v: _inject_crossed_quote(v, option.instrument_id))
                await snapshots_after(venue, pipeline, 2)
    chain = read(store, chain_symbol("HE"))
    row = chain[(chain.index == pd.Timestamp(boundary, tz="UTC")) & (chain["instrument_id"] == option.instrument_id)]
    assert (row["bid"].item(), row["ask"].item()) == (2.0, 1.9)
    assert row["quote_flags"].item() == "crossed" and row["iv_status"].item() == "invalid_quote"
    assert math.isnan(row["implied_vol"].item())
    problems = [e for e in logs if e["event"] == "option_chain_problem" and "crossed" in e["what"]]
    assert len(problems) == 1
    assert problems[0]["where"] == f"{option.raw_symbol} at {pd.Timestamp(boundary, tz='UTC').isoformat()}"
    assert problems[0]["what"] == "quote flagged crossed: ask 1.9 < bid 2.0 (kept, no IV)"
    assert pipeline.stats.rejects >= 1
    stored = read(store, data_symbol("HE", "mbp-1"))
    assert ((stored["bid_px_00"] == 2.0) & (stored["ask_px_00"] == 1.9)).sum() == 1  # captured verbatim


def _tape_option_quotes(venue: Venue, start_ns: int, end_ns: int) -> list[tuple[int, int, int]]:
    """(ts_recv, instrument_id, sequence) of every HE option quote the venue published in [start, end)."""
    options = {i.instrument_id for i in venue.model.instruments if i.parent == "HE.OPT"}
    dtype = np.dtype(dbn.MBP1Msg._dtypes)
    rows = []
    for emission in venue.tape.slice("mbp-1", start_ns, end_ns):
        if emission.instrument_id in options:
            sequence = int(np.frombuffer(emission.data, dtype=dtype)["sequence"][0])
            rows.append((emission.key_ns, emission.instrument_id, sequence))
    return rows


async def test_reset_mid_stream_keeps_quotes_and_chains_exactly_once(
    venue: VenueThread, store: Store, tmp_path: Path
) -> None:
    pipeline = make_pipeline(venue, make_config(venue, tmp_path), store)
    async with running(pipeline):
        await snapshots_after(venue, pipeline, 1)
        venue.fault("reset")
        await eventually(lambda: pipeline.stats.reconnects >= 1, "a reconnect after the reset")
        await snapshots_after(venue, pipeline, 1)
    chain = read(store, chain_symbol("HE"))
    assert not chain.reset_index().duplicated(["snapshot_time", "instrument_id"]).any()
    quotes = read(store, data_symbol("HE", "mbp-1"))
    first, newest = quotes.index.min().value, quotes.index.max().value
    stored = sorted(zip(quotes.index.asi8, quotes["instrument_id"], quotes["sequence"], strict=True))
    expected = sorted(venue.call(lambda v: _tape_option_quotes(v, first, newest + 1)))
    assert [(int(a), int(b), int(c)) for a, b, c in stored] == expected


async def test_quiet_stream_ends_the_session_with_one_snapshot_at_the_last_record(store: Store, tmp_path: Path) -> None:
    realtime = MarketConfig(seed=9, products=(LEAN_HOGS,), start=FAST_START, speed=1.0, base_rate=100.0, rate=0.0)
    with VenueThread(VenueConfig(market=realtime)) as venue:
        config = make_config(venue, tmp_path)
        config = replace(config, options=replace(config.options, snapshot_interval_s=1.0))
        pipeline = make_pipeline(venue, config, store)
        async with running(pipeline):
            await eventually(lambda: pipeline.watermark("HE", "chain") is not None, "a first snapshot")
            venue.fault("pause", "1")  # heartbeats only: the session stays up, no record arrives
            try:
                await eventually(lambda: off_grid(pipeline), "a session-end snapshot")
                quiet_mark = pipeline.watermark("HE", "chain")
                await anyio.sleep(1.5)  # longer quiet: no second session-end snapshot
                assert pipeline.watermark("HE", "chain") == quiet_mark
            finally:
                venue.fault("pause", "0")
            await eventually(lambda: not off_grid(pipeline), "boundary snapshots after the pause")
    assert quiet_mark is not None
    times = read(store, chain_symbol("HE")).index.unique()
    assert list(times) == sorted(times)
    off = [t.value for t in times if t.value % NS_PER_S]
    assert off[0] == quiet_mark.ts_ns
    assert off[1:] in ([], [times[-1].value])  # the other session end: stopping the pipeline


def off_grid(pipeline: OptionsIngestPipeline) -> bool:
    mark = pipeline.watermark("HE", "chain")
    return mark is not None and mark.ts_ns % NS_PER_S != 0
