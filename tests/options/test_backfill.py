"""Options backfill from the venue's Historical API equals live capture of the same day: the same option records,
chain snapshots and per-expiry features (only `ingested_at` differs), through the live pipeline's own code; a second
run adds nothing; the CLI refuses while another writer holds the store."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from hydra_daemon.backoff import Backoff
from hydra_daemon.config import Config, parse_config
from hydra_daemon.databento.decode import MarketFrame
from hydra_daemon.options.backfill import backfill_options, sessions
from hydra_daemon.options.backfill_cli import backfill_options_command
from hydra_daemon.options.features import FEATURE_NAMES
from hydra_daemon.options.pipeline import OptionsIngestPipeline
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.config import LEAN_HOGS, MarketConfig
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store, StoreLockedError
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.partitions import read_stream
from hydra_daemon.store.symbols import OPTIONS, chain_symbol, data_symbol
from hydra_daemon.store.uri import default_lmdb_uri
from tests.helpers import eventually, running

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday: the venue's first day is the backfill's warm-up
DAY = START + timedelta(days=1)  # the day compared
SPEED = 86_400 / 2  # a simulated day every 2 wall seconds: its records are as many per wall second
INTERVAL_S = 3600
REPLAY_S = 10 * 86_400


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    market = MarketConfig(seed=3, products=(LEAN_HOGS,), start=START, speed=SPEED, base_rate=150.0, rate=0.0)
    return VenueConfig(market=market, replay_window_s=REPLAY_S, history_s=REPLAY_S)


def backfill_config(venue: VenueThread, state_dir: Path, interval_s: float = INTERVAL_S) -> Config:
    """The daemon's config against `venue`, snapshots every `interval_s`, the venue's whole history replayable."""
    info = venue.info
    config = parse_config(
        {
            "state_dir": str(state_dir),
            "storage": {"arctic_uri": default_lmdb_uri(state_dir), "flush_interval_s": 0.05},
            "databento": {
                "live_gateway": info.live_host,
                "live_port": info.live_port,
                "historical_url": info.historical_url,
                "heartbeat_interval_s": 1,
            },
            "options": {"snapshot_interval_s": interval_s},
            "lake": {"enabled": False},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    # Live replays the venue's whole history (from its first record, like the backfill's warm-up); the config caps
    # the window at Databento's 24 h, which the accelerated venue's history exceeds.
    return replace(config, databento=replace(config.databento, replay_window_s=REPLAY_S))


async def _capture_live(venue: VenueThread, config: Config, until: datetime = DAY + timedelta(days=1)) -> None:
    """Run the live options pipeline on `config`'s store until its chain has a snapshot at `until` or later."""
    clock = venue.venue.clock
    assert clock is not None
    with Store.open(config.storage.arctic_uri, writer=True) as store:
        key = ApiKey(venue.info.api_key)
        pipeline = OptionsIngestPipeline(config, store, key, clock=clock, backoff=Backoff(base_s=0.05, cap_s=0.4))
        end = pd.Timestamp(until).value

        def day_done() -> bool:
            mark = pipeline.watermark("HE", "chain")
            return mark is not None and mark.ts_ns >= end

        async with running(pipeline):
            await eventually(day_done, "the live chain past the compared day")


def _day_rows(store: Store, library: str, symbol: str, column: str | None = None) -> pd.DataFrame:
    frame = restore_utc(read_stream(store.library(library), symbol).data)
    times = frame.index if column is None else pd.DatetimeIndex(frame[column])
    return frame[(times >= DAY) & (times < DAY + timedelta(days=1))]


def _features(store: Store, name: str) -> pd.DataFrame:
    rows = FeatureStore(store).read_feature("HE", name)
    rows = rows[(rows["as_of"] >= DAY) & (rows["as_of"] < DAY + timedelta(days=1))]
    return rows.drop(columns="ingested_at").sort_values(["as_of", "expiration"]).reset_index(drop=True)


async def test_a_backfilled_day_equals_the_same_day_captured_live(
    venue: VenueThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABENTO_API_KEY", venue.info.api_key)
    live = backfill_config(venue, tmp_path / "live")
    await _capture_live(venue, live)
    backfilled = backfill_config(venue, tmp_path / "backfill")
    calls: list[tuple[int, int, int]] = []
    with Store.open(backfilled.storage.arctic_uri, writer=True) as store:
        stored = backfill_options(backfilled, store, "HE", DAY, DAY + timedelta(days=1), lambda *a: calls.append(a))
    assert stored > 0 and calls[-1][0] == calls[-1][1] and calls[-1][2] >= stored
    output = io.StringIO()  # again, through the command: idempotent, with its progress bar
    assert (
        backfill_options_command(backfilled, "HE", DAY, DAY + timedelta(days=1), Console(file=output, width=200)) == 0
    )
    assert "HE: 0 new option records stored for [2026-11-03, 2026-11-04)" in output.getvalue()
    assert f"{calls[-1][2]:,} records" in output.getvalue()

    with (
        Store.open(live.storage.arctic_uri, writer=False) as a,
        Store.open(backfilled.storage.arctic_uri, writer=False) as b,
    ):
        for schema in ("definition", "statistics", "mbp-1"):
            symbol = data_symbol("HE", schema)
            pd.testing.assert_frame_equal(_day_rows(a, OPTIONS, symbol), _day_rows(b, OPTIONS, symbol), obj=schema)
        chain_a, chain_b = _day_rows(a, OPTIONS, chain_symbol("HE")), _day_rows(b, OPTIONS, chain_symbol("HE"))
        assert chain_a.index.nunique() == 24 and chain_a["implied_vol"].notna().any()
        pd.testing.assert_frame_equal(chain_a, chain_b, obj="chain")
        for name in FEATURE_NAMES:
            pd.testing.assert_frame_equal(_features(a, name), _features(b, name), obj=name)

    # The daemon then keeps the backfilled store current: it resumes from the backfill's watermarks.
    await _capture_live(venue, backfilled, until=DAY + timedelta(days=1, hours=6))
    with Store.open(backfilled.storage.arctic_uri, writer=False) as b:
        quotes = read_stream(b.library(OPTIONS), data_symbol("HE", "mbp-1")).data.reset_index()
        assert not quotes.duplicated().any() and quotes["ts_recv"].is_monotonic_increasing
        snapshots = restore_utc(b.library(OPTIONS).read(chain_symbol("HE"), columns=["instrument_id"]).data).index
        hours = pd.date_range(DAY, DAY + timedelta(days=1, hours=6), freq="h", tz="UTC")
        assert set(hours) <= set(snapshots.unique())  # no hour missing across the hand-over


def test_the_cli_refuses_while_a_daemon_writes_the_store(venue: VenueThread, tmp_path: Path) -> None:
    config = backfill_config(venue, tmp_path)
    with Store.open(config.storage.arctic_uri, writer=True), pytest.raises(StoreLockedError):
        backfill_options_command(config, "HE", DAY, DAY + timedelta(days=1), Console(file=io.StringIO()))


NS = 1_000_000_000


def _frame(times_s: list[int]) -> MarketFrame:
    index = pd.DatetimeIndex(pd.to_datetime(times_s, unit="s", utc=True), name="ts_recv")
    return MarketFrame("HE", "mbp-1", pd.DataFrame({"x": range(len(times_s))}, index=index))


def _seconds(pieces: list[tuple[list[MarketFrame], bool]]) -> list[tuple[list[list[int]], bool]]:
    return [([list(f.frame.index.asi8 // NS) for f in part], quiet) for part, quiet in pieces]


def test_sessions_end_where_the_records_go_quiet_as_live_capture_ends_them() -> None:
    quiet = 60 * NS
    pieces = sessions([_frame([0, 10, 100, 110]), _frame([20, 200])], None, quiet)
    assert _seconds(pieces) == [([[0, 10], [20]], True), ([[100, 110], []], True), ([[], [200]], False)]
    assert _seconds(sessions([_frame([500])], 400 * NS, quiet)) == [([], True), ([[500]], False)]
    assert _seconds(sessions([_frame([450])], 400 * NS, quiet)) == [([[450]], False)]
