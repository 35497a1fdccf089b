"""Black-76 implied volatility of options on futures (pure).

Conventions (the simulated venue prices with the same ones, so IV recovers its input vol):
- price = mid of a two-sided, uncrossed quote; underlying = the linked future's mid;
- time to expiry in ACT/365: `(expiration - at)` in seconds / (365 × 86 400);
- undiscounted Black-76 (rate 0): the premium-discounting effect on CME options is ≤ r·t of the price and no rate
  source is captured, so the rate is fixed at 0 rather than guessed.

A price with no Black-76 solution gets `NaN` and a status saying why.
"""

from __future__ import annotations

import math
from enum import StrEnum

import vollib.helpers.exceptions as vollib_helpers_exc
import vollib.lets_be_rational as lbr
from vollib.black.implied_volatility import implied_volatility

SECONDS_PER_YEAR = 365 * 86_400
RATE = 0.0

AT_INTRINSIC_WITHIN = 0.5e-9
"""Quotes come on Databento's 1e-9 fixed-point grid, so a mid within half a unit of the intrinsic value is at it: in
floats the mid of two quotes and F - K differ by rounding (3e-15), which would otherwise decide between a spurious
tiny vol and "below intrinsic"."""
_NO_SOLUTION_BELOW = (lbr.PriceIsBelowIntrinsic, vollib_helpers_exc.PriceIsBelowIntrinsic)
_NO_SOLUTION_ABOVE = (lbr.PriceIsAboveMaximum, vollib_helpers_exc.PriceIsAboveMaximum)


class IvStatus(StrEnum):
    """Why a chain row has (or lacks) an implied volatility."""

    OK = "ok"
    NO_QUOTE = "no_quote"  # bid or ask missing
    INVALID_QUOTE = "invalid_quote"  # crossed or negative quote (flagged by validation)
    NO_UNDERLYING = "no_underlying"  # linked future unknown or without a two-sided quote
    EXPIRED = "expired"  # no time left
    BELOW_INTRINSIC = "below_intrinsic"  # mid below intrinsic value: no solution
    AT_INTRINSIC = "at_intrinsic"  # mid equals intrinsic value: zero time value, vol 0 is meaningless
    ABOVE_MAXIMUM = "above_maximum"  # mid above the no-arbitrage bound: no solution


def year_fraction(expiration_ns: int, at_ns: int) -> float:
    """ACT/365 time from `at` to `expiration`, both UTC nanoseconds."""
    return (expiration_ns - at_ns) / 1e9 / SECONDS_PER_YEAR


def black76_implied_vol(
    price: float, future: float, strike: float, years: float, is_call: bool
) -> tuple[float, IvStatus]:
    """Implied vol of an undiscounted Black-76 price; `(NaN, status)` when there is no solution."""
    if years <= 0:
        return math.nan, IvStatus.EXPIRED
    if not (math.isfinite(future) and future > 0):
        return math.nan, IvStatus.NO_UNDERLYING
    if not (math.isfinite(price) and strike > 0):
        return math.nan, IvStatus.NO_QUOTE
    intrinsic = max(future - strike, 0.0) if is_call else max(strike - future, 0.0)
    if abs(price - intrinsic) < AT_INTRINSIC_WITHIN:
        return math.nan, IvStatus.AT_INTRINSIC
    try:
        vol = float(implied_volatility(price, future, strike, RATE, years, "c" if is_call else "p"))
    except _NO_SOLUTION_BELOW:
        return math.nan, IvStatus.BELOW_INTRINSIC
    except _NO_SOLUTION_ABOVE:
        return math.nan, IvStatus.ABOVE_MAXIMUM
    if not math.isfinite(vol):
        return math.nan, IvStatus.ABOVE_MAXIMUM
    if vol <= 0:
        return math.nan, IvStatus.AT_INTRINSIC
    return vol, IvStatus.OK
