"""Futures backfill through the real Historical client against the simulated venue, into real ArcticDB (LMDB)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from structlog.testing import capture_logs

from hydra_daemon.config import Config, parse_config
from hydra_daemon.futures.backfill import backfill_futures
from hydra_daemon.futures.pipeline import SETTLEMENT
from hydra_daemon.sim.venue import VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.symbols import FUTURES, data_symbol
from hydra_daemon.store.uri import default_lmdb_uri
from tests.helpers import fast_config, futures_truth, record_keys, wait_until

DAY_NS = 86_400 * 1_000_000_000


def _config(venue: VenueThread, state_dir: Path) -> Config:
    info = venue.info
    return parse_config(
        {
            "state_dir": str(state_dir),
            "storage": {"arctic_uri": default_lmdb_uri(state_dir)},
            "databento": {
                "historical_url": info.historical_url,
                "futures_schemas": ["ohlcv-1d", "ohlcv-1m"],
                "api_key_env": "HYDRA_TEST_DATABENTO_KEY",
            },
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )


def test_backfill_lands_ground_truth_once_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with VenueThread(fast_config(seed=3, record_path=tmp_path / "truth.dbn")) as venue:
        monkeypatch.setenv("HYDRA_TEST_DATABENTO_KEY", venue.info.api_key)
        clock = venue.venue.clock
        assert clock is not None
        start = pd.Timestamp("2026-11-02", tz="UTC")
        end = pd.Timestamp("2026-11-03 00:30", tz="UTC")
        wait_until(lambda: clock.now_ns() > end.value + 60 * 1_000_000_000, "the venue to pass the backfill end")
        config = _config(venue, tmp_path)
        calls: list[tuple[int, int]] = []
        with Store.open(config.storage.arctic_uri, writer=True) as store:
            stored = backfill_futures(config, store, "HE", start, end, lambda done, total: calls.append((done, total)))
            again = backfill_futures(config, store, "HE", start, end)
            library = store.library(FUTURES)
            frames = {s: library.read(data_symbol("HE", s)).data for s in ("ohlcv-1d", "ohlcv-1m", "definition")}
            settlement = FeatureStore(store).read_feature("HE", SETTLEMENT)
        truth = futures_truth(venue, frames)
        for schema, frame in frames.items():
            want = truth[schema][(truth[schema].index >= start) & (truth[schema].index < end)]
            assert record_keys(frame, schema) == record_keys(want, schema), schema
            assert len(frame) > 0
        assert stored == sum(len(f) for f in frames.values())
        assert again == 0
        assert calls[-1][0] == calls[-1][1] == len(calls)
        daily = frames["ohlcv-1d"]
        assert sorted(settlement["symbol"]) == sorted(daily["symbol"])
        by_symbol = settlement.set_index("symbol")
        for when, bar in daily.iterrows():
            row = by_symbol.loc[bar["symbol"]]
            assert row["value"] == bar["close"]
            assert pd.Timestamp(row["as_of"]).value == pd.Timestamp(when).value
            assert pd.Timestamp(row["available_at"]).value == pd.Timestamp(when).value + DAY_NS


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with VenueThread(fast_config(seed=3)) as venue:
        config = _config(venue, tmp_path)
        with (
            Store.open(config.storage.arctic_uri, writer=True) as store,
            pytest.raises(ValueError, match="timezone-aware"),
        ):
            backfill_futures(config, store, "HE", pd.Timestamp("2026-11-02"), pd.Timestamp("2026-11-03", tz="UTC"))


def test_a_record_with_an_undefined_time_is_rejected_with_one_line_and_the_rest_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue answers the second request with its first record's ts_event undefined: that record gets one
    `record_rejected` line naming the request and is not stored (its NaT index made the backfill fail); every
    other record of the range is, once."""
    with VenueThread(fast_config(seed=5, record_path=tmp_path / "truth.dbn")) as venue:
        monkeypatch.setenv("HYDRA_TEST_DATABENTO_KEY", venue.info.api_key)
        clock = venue.venue.clock
        assert clock is not None
        start, end = pd.Timestamp("2026-11-02", tz="UTC"), pd.Timestamp("2026-11-03 00:30", tz="UTC")
        wait_until(lambda: clock.now_ns() > end.value + 60 * 1_000_000_000, "the venue to pass the backfill end")
        config = _config(venue, tmp_path)

        def damage_the_next_response(done: int, total: int) -> None:
            venue.venue.faults.undefined_time_responses = 1 if done == 1 else 0

        with Store.open(config.storage.arctic_uri, writer=True) as store, capture_logs() as logs:
            backfill_futures(config, store, "HE", start, end, damage_the_next_response)
            library = store.library(FUTURES)
            frames = {s: library.read(data_symbol("HE", s)).data for s in ("ohlcv-1d", "ohlcv-1m", "definition")}
    rejected = [line for line in logs if line["event"] == "record_rejected"]
    assert len(rejected) == 1 and "outside 1990..2100" in rejected[0]["what"] and "HE.FUT" in rejected[0]["where"]
    truth = futures_truth(venue, frames)
    missing: Counter[tuple[object, ...]] = Counter()
    for schema, frame in frames.items():
        want = truth[schema][(truth[schema].index >= start) & (truth[schema].index < end)]
        assert frame.index.min() >= start, schema
        assert not record_keys(frame, schema) - record_keys(want, schema), f"{schema}: a row not in the truth"
        missing += record_keys(want, schema) - record_keys(frame, schema)
    assert sum(missing.values()) == 1
