"""An options backfill run in two ranges whose cut falls in a quiet stretch (the weekend) must store the same chain
snapshots as one backfill of the whole range: the session before the cut ends (a snapshot at its last record)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from hydra_daemon.config import Config
from hydra_daemon.options.backfill import backfill_options
from hydra_daemon.sim.config import LEAN_HOGS, MarketConfig
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.symbols import OPTIONS, chain_symbol
from tests.helpers import wait_until
from tests.options.test_backfill import REPLAY_S, backfill_config

START = datetime(2026, 11, 5, tzinfo=UTC)  # a Thursday
FRIDAY = START + timedelta(days=1)
SUNDAY = START + timedelta(days=3)  # the sim's weekends (UTC) are silent (but for statistics at Saturday 00:00)
MONDAY_NOON = START + timedelta(days=4, hours=12)
SPEED = 86_400 / 2
INTERVAL_S = 3500  # boundaries not on midnight, where the venue publishes its statistics


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    market = MarketConfig(seed=3, products=(LEAN_HOGS,), start=START, speed=SPEED, base_rate=150.0, rate=0.0)
    return VenueConfig(market=market, replay_window_s=REPLAY_S, history_s=REPLAY_S)


def _chain(config: Config) -> pd.DataFrame:
    with Store.open(config.storage.arctic_uri, writer=False) as store:
        return restore_utc(store.library(OPTIONS).read(chain_symbol("HE")).data)


def _snapshot_times(config: Config) -> list[pd.Timestamp]:
    return sorted(_chain(config).index.unique())


def test_a_backfill_split_at_the_weekend_stores_the_snapshots_of_one_backfill(
    venue: VenueThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABENTO_API_KEY", venue.info.api_key)
    clock = venue.venue.clock
    assert clock is not None
    wait_until(lambda: clock.now() > MONDAY_NOON + timedelta(hours=2), "the venue past Monday noon", timeout=60)

    whole = backfill_config(venue, tmp_path / "whole", INTERVAL_S)
    with Store.open(whole.storage.arctic_uri, writer=True) as store:
        backfill_options(whole, store, "HE", FRIDAY, MONDAY_NOON)

    split = backfill_config(venue, tmp_path / "split", INTERVAL_S)
    with Store.open(split.storage.arctic_uri, writer=True) as store:
        backfill_options(split, store, "HE", FRIDAY, SUNDAY)  # the range ends in the weekend's silence
    with Store.open(split.storage.arctic_uri, writer=True) as store:
        backfill_options(split, store, "HE", SUNDAY, MONDAY_NOON)

    expected, got = _snapshot_times(whole), _snapshot_times(split)
    common = sorted(set(expected) & set(got))
    a, b = _chain(whole), _chain(split)
    a, b = a[a.index.isin(common) & (a.index >= SUNDAY)], b[b.index.isin(common) & (b.index >= SUNDAY)]
    pd.testing.assert_frame_equal(a, b, obj="chain rows of the snapshots both hold after the cut")
    assert sorted(set(expected) - set(got)) == [] and sorted(set(got) - set(expected)) == []
