"""Black-76 prices of options on futures and their exact inversion (pure)."""

from __future__ import annotations

import math

_SQRT2 = math.sqrt(2.0)


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def black76_price(is_call: bool, forward: float, strike: float, t_years: float, rate: float, vol: float) -> float:
    """Discounted Black-76 price of a European call or put on a future."""
    discount = math.exp(-rate * t_years)
    if vol <= 0 or t_years <= 0:
        intrinsic = forward - strike if is_call else strike - forward
        return discount * max(intrinsic, 0.0)
    stdev = vol * math.sqrt(t_years)
    d1 = (math.log(forward / strike) + 0.5 * stdev * stdev) / stdev
    d2 = d1 - stdev
    if is_call:
        return discount * (forward * _norm_cdf(d1) - strike * _norm_cdf(d2))
    return discount * (strike * _norm_cdf(-d2) - forward * _norm_cdf(-d1))


def implied_vol(
    is_call: bool, price: float, forward: float, strike: float, t_years: float, rate: float
) -> float | None:
    """The vol whose Black-76 price equals `price` (bisection to machine precision); None if no such vol in (0, 10]."""
    low, high = 1e-6, 10.0
    if (
        not black76_price(is_call, forward, strike, t_years, rate, low)
        < price
        < black76_price(is_call, forward, strike, t_years, rate, high)
    ):
        return None
    for _ in range(200):
        mid = 0.5 * (low + high)
        if black76_price(is_call, forward, strike, t_years, rate, mid) < price:
            low = mid
        else:
            high = mid
        if high - low < 1e-15:
            break
    return 0.5 * (low + high)
