"""Black-76 implied vol: recovers the vol that priced an option, and says why when there is no solution."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.options.implied_vol import IvStatus, black76_implied_vol, year_fraction
from hydra_daemon.sim.black76 import black76_price

DAY_NS = 86_400 * 10**9


def test_year_fraction_is_act_365() -> None:
    assert year_fraction(365 * DAY_NS, 0) == 1.0
    assert year_fraction(DAY_NS // 2, 0) == 0.5 / 365
    assert year_fraction(0, DAY_NS) == -1 / 365


@given(
    future=st.floats(10.0, 500.0),
    standard_deviations=st.floats(-2.0, 2.0),
    years=st.floats(0.02, 2.0),
    vol=st.floats(0.05, 1.5),
    is_call=st.booleans(),
)
def test_recovers_the_vol_that_priced_the_option(
    future: float, standard_deviations: float, years: float, vol: float, is_call: bool
) -> None:
    strike = future * math.exp(standard_deviations * vol * math.sqrt(years))
    price = black76_price(is_call, future, strike, years, 0.0, vol)
    recovered, status = black76_implied_vol(price, future, strike, years, is_call)
    assert status is IvStatus.OK
    assert abs(recovered - vol) < 1e-8


def test_price_below_intrinsic_has_no_solution() -> None:
    vol, status = black76_implied_vol(9.0, 110.0, 100.0, 0.5, True)
    assert math.isnan(vol) and status is IvStatus.BELOW_INTRINSIC


def test_price_at_intrinsic_has_no_meaningful_vol() -> None:
    vol, status = black76_implied_vol(10.0, 100.0, 110.0, 0.5, False)
    assert math.isnan(vol) and status is IvStatus.AT_INTRINSIC


@pytest.mark.parametrize(
    ("bid", "ask", "future_bid", "future_ask", "strike"),
    [
        (4.0, 4.1, 94.0, 94.1, 90.0),  # mid 4.05 = 94.05 - 90 in decimals; in floats 4.049999999999997
        (0.004, 0.006, 0.854, 0.856, 0.85),  # mid 0.005 = 0.855 - 0.85; in floats 0.0050000000000000044
    ],
)
def test_a_mid_at_intrinsic_in_decimals_is_at_intrinsic_whatever_the_float_rounding(
    bid: float, ask: float, future_bid: float, future_ask: float, strike: float
) -> None:
    """Float rounding put such a mid 3e-15 above intrinsic (a spurious vol of 0.02, status ok) or below it (found by
    a review helper)."""
    vol, status = black76_implied_vol((bid + ask) / 2, (future_bid + future_ask) / 2, strike, 30 / 365, True)
    assert math.isnan(vol) and status is IvStatus.AT_INTRINSIC, (vol, status)


def test_call_worth_more_than_the_future_has_no_solution() -> None:
    vol, status = black76_implied_vol(100.0, 100.0, 90.0, 0.5, True)
    assert math.isnan(vol) and status is IvStatus.ABOVE_MAXIMUM


def test_expired_and_missing_inputs() -> None:
    assert black76_implied_vol(1.0, 100.0, 100.0, 0.0, True)[1] is IvStatus.EXPIRED
    assert black76_implied_vol(1.0, math.nan, 100.0, 0.5, True)[1] is IvStatus.NO_UNDERLYING
    assert black76_implied_vol(math.nan, 100.0, 100.0, 0.5, True)[1] is IvStatus.NO_QUOTE
