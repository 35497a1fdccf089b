"""Per-expiry option features on a chain small enough to check by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from databento_dbn import StatType

from hydra_daemon.config import OptionsConfig
from hydra_daemon.options.chain import ChainState, Definition, Quote, Statistic, snapshot_chain
from hydra_daemon.options.features import FEATURE_NAMES, chain_features, liquid_mask
from hydra_daemon.options.implied_vol import year_fraction
from hydra_daemon.sim.black76 import black76_price

T0 = pd.Timestamp("2026-11-26T15:00:00Z").value
EXP_G = pd.Timestamp("2027-02-12T17:00:00Z").value
EXP_J = pd.Timestamp("2027-04-14T17:00:00Z").value
OPTIONS = OptionsConfig(snapshot_interval_s=60, liquid_max_spread_ticks=4, liquid_min_open_interest=10)


class Chain:
    def __init__(self) -> None:
        self.state = ChainState()
        self.next_id = 1
        self.state.apply(Definition(100, T0, "HEG7", "F", EXP_G, math.nan, "", 0, 0.025))
        self.state.apply(Definition(101, T0, "HEJ7", "F", EXP_J, math.nan, "", 0, 0.025))
        self.state.apply(Quote(100, T0, 90.375, 90.425, 10, 10))  # mid 90.4
        self.state.apply(Quote(101, T0, 95.475, 95.525, 10, 10))  # mid 95.5

    def option(self, future: int, kind: str, strike: float, *, vol: float, half_spread: float, oi: int | None) -> int:
        expiration, forward = (EXP_G, 90.4) if future == 100 else (EXP_J, 95.5)
        iid = self.next_id
        self.next_id += 1
        symbol = f"HE{'G' if future == 100 else 'J'}7 {kind}{round(strike * 10):04d}"
        self.state.apply(Definition(iid, T0, symbol, kind, expiration, strike, "", future, 0.025))
        mid = black76_price(kind == "C", forward, strike, year_fraction(expiration, T0 + 1), 0.0, vol)
        self.state.apply(Quote(iid, T0 + 1, mid - half_spread, mid + half_spread, 5, 5))
        if oi is not None:
            self.state.apply(Statistic(iid, T0 + 1, int(StatType.OPEN_INTEREST), oi))
        return iid


@pytest.fixture
def chain() -> pd.DataFrame:
    c = Chain()
    c.option(100, "C", 89.0, vol=0.3, half_spread=0.025, oi=100)  # liquid
    c.option(100, "P", 89.0, vol=0.3, half_spread=0.1, oi=30)  # spread 8 ticks: not liquid
    c.option(100, "C", 90.0, vol=0.25, half_spread=0.05, oi=200)  # spread exactly 4 ticks: liquid
    c.option(100, "P", 90.0, vol=0.27, half_spread=0.025, oi=70)  # liquid
    one_sided = c.option(100, "C", 91.0, vol=0.3, half_spread=0.025, oi=50)
    c.state.apply(Quote(one_sided, T0 + 2, math.nan, 2.0, 0, 5))  # no bid: not liquid
    c.option(100, "P", 91.0, vol=0.3, half_spread=0.025, oi=0)  # no open interest: not liquid
    crossed = c.option(100, "C", 92.0, vol=0.3, half_spread=0.025, oi=40)
    c.state.apply(Quote(crossed, T0 + 2, 1.5, 1.4, 5, 5))  # crossed: flagged, not liquid
    c.option(101, "C", 95.0, vol=0.2, half_spread=0.0125, oi=10)  # liquid; nearest to 95.5 (tie -> lower)
    c.option(101, "C", 96.0, vol=0.4, half_spread=0.0125, oi=None)  # unknown open interest: not liquid
    return snapshot_chain(c.state, T0 + 60 * 10**9).frame


def _values(features: dict[str, pd.DataFrame], name: str) -> list[float]:
    return features[name]["value"].tolist()


def test_liquid_rows_follow_the_definition(chain: pd.DataFrame) -> None:
    liquid = chain.loc[liquid_mask(chain, OPTIONS).to_numpy(), "raw_symbol"].tolist()
    assert liquid == ["HEG7 C0890", "HEG7 C0900", "HEG7 P0900", "HEJ7 C0950"]


def test_features_per_expiry(chain: pd.DataFrame) -> None:
    features = chain_features(chain, OPTIONS)
    assert set(features) == set(FEATURE_NAMES)
    at = pd.Timestamp(T0 + 60 * 10**9, tz="UTC")
    for frame in features.values():
        assert list(frame.columns) == ["expiration", "as_of", "available_at", "value"]
        assert list(frame.expiration) == [pd.Timestamp(EXP_G, tz="UTC"), pd.Timestamp(EXP_J, tz="UTC")]
        assert (frame.as_of == at).all() and (frame.available_at == at).all()
    assert _values(features, "total_oi") == [490.0, 10.0]
    ratio_g, ratio_j = _values(features, "put_call_oi_ratio")
    assert ratio_g == pytest.approx(100 / 390) and math.isnan(ratio_j)
    atm_g, atm_j = _values(features, "atm_iv")
    assert atm_g == pytest.approx(0.26, abs=1e-9) and atm_j == pytest.approx(0.2, abs=1e-9)
    assert _values(features, "liquid_strike_count") == [2.0, 1.0]


def test_atm_iv_is_nan_when_the_atm_strike_has_no_vol() -> None:
    c = Chain()
    c.option(100, "C", 89.0, vol=0.3, half_spread=0.025, oi=1)
    c.option(100, "C", 90.0, vol=0.3, half_spread=0.025, oi=1)
    c.state.apply(Quote(2, T0 + 2, math.nan, math.nan, 0, 0))
    features = chain_features(snapshot_chain(c.state, T0 + 10).frame, OPTIONS)
    assert math.isnan(_values(features, "atm_iv")[0])


def test_an_atm_tie_in_decimals_takes_the_lower_strike() -> None:
    """The future's mid (10.04 + 10.06) / 2 is 10.05, halfway between strikes 10.0 and 10.1; in floats 10.0 was the
    farther one, so the upper strike's vol was taken (found by a review helper)."""
    t0 = pd.Timestamp("2026-11-26T15:00:00Z").value
    expiry = pd.Timestamp("2027-02-12T17:00:00Z").value
    state = ChainState()
    events: list[object] = [
        Definition(100, t0, "FUT", "F", expiry, math.nan, "", 0, 0.01),
        Quote(100, t0 + 1, 10.04, 10.06, 5, 5),
    ]
    for instrument_id, (strike, bid, ask) in enumerate([(10.0, 0.40, 0.42), (10.1, 0.20, 0.22)], start=1):
        events.append(Definition(instrument_id, t0, f"C{instrument_id}", "C", expiry, strike, "FUT", 100, 0.01))
        events.append(Quote(instrument_id, t0 + 2, bid, ask, 5, 5))
    for event in events:
        state.apply(event)  # type: ignore[arg-type]
    frame = snapshot_chain(state, t0 + 10).frame
    lower = frame.loc[frame["strike"] == 10.0, "implied_vol"].iloc[0]
    assert chain_features(frame, OptionsConfig())["atm_iv"]["value"].iloc[0] == lower


def test_empty_chain_gives_empty_features() -> None:
    frame = snapshot_chain(ChainState(), T0).frame
    for feature in chain_features(frame, OPTIONS).values():
        assert feature.empty and list(feature.columns) == ["expiration", "as_of", "available_at", "value"]
