"""Black-76 implied vol: recovers the vol that priced an option, and says why when there is no solution."""

from __future__ import annotations

import math

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


def test_call_worth_more_than_the_future_has_no_solution() -> None:
    vol, status = black76_implied_vol(100.0, 100.0, 90.0, 0.5, True)
    assert math.isnan(vol) and status is IvStatus.ABOVE_MAXIMUM


def test_expired_and_missing_inputs() -> None:
    assert black76_implied_vol(1.0, 100.0, 100.0, 0.0, True)[1] is IvStatus.EXPIRED
    assert black76_implied_vol(1.0, math.nan, 100.0, 0.5, True)[1] is IvStatus.NO_UNDERLYING
    assert black76_implied_vol(math.nan, 100.0, 100.0, 0.5, True)[1] is IvStatus.NO_QUOTE
