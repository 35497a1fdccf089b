"""Per-expiry option features from one chain snapshot (pure).

Each feature is a frame with columns `expiration`, `as_of`, `available_at`, `value` (one row per expiration in the
snapshot); `as_of` = `available_at` = the snapshot time, since the data is public as it streams.

- `total_oi`: sum of open interest of the expiry's calls and puts (NaN if no open interest is known).
- `put_call_oi_ratio`: put open interest / call open interest (NaN if call open interest is 0 or unknown).
- `atm_iv`: implied vol at the strike nearest the underlying futures price at the snapshot (ties: the lower strike);
  the mean of the call's and the put's IVs at that strike that exist (NaN if neither has one).
- `liquid_strike_count`: number of distinct strikes with at least one liquid option.

An option is LIQUID when its quote is two-sided (bid and ask present, both sizes > 0) and not flagged by
validation, its spread (ask − bid) is at most `OptionsConfig.liquid_max_spread_ticks` × its
`min_price_increment`, and its open interest is at least `OptionsConfig.liquid_min_open_interest`
(unknown open interest is not liquid).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hydra_daemon.config import OptionsConfig
from hydra_daemon.options.chain import CALL, PUT

FEATURE_NAMES = ("put_call_oi_ratio", "total_oi", "atm_iv", "liquid_strike_count")
_SPREAD_TOLERANCE = 1e-9  # prices are decimal renderings of 1e-9 fixed-point integers


def liquid_mask(chain: pd.DataFrame, options: OptionsConfig) -> pd.Series:
    """True for rows that are liquid by the definition in this module's docstring."""
    spread = chain["ask"] - chain["bid"]
    max_spread = options.liquid_max_spread_ticks * chain["min_price_increment"]
    two_sided = chain["bid"].notna() & chain["ask"].notna() & (chain["bid_size"] > 0) & (chain["ask_size"] > 0)
    return (
        two_sided
        & (chain["quote_flags"] == "")
        & (spread <= max_spread + _SPREAD_TOLERANCE)
        & (chain["open_interest"] >= options.liquid_min_open_interest)
    )


def _atm_iv(expiry: pd.DataFrame) -> float:
    prices = expiry["underlying_price"].dropna()
    if prices.empty:
        return math.nan
    future = float(prices.iloc[0])
    distance = (expiry["strike"] - future).abs().round(9)  # on the prices' 1e-9 grid: a tie is one in decimals
    nearest = expiry.loc[distance == distance.min(), "strike"].min()
    vols = expiry.loc[expiry["strike"] == nearest, "implied_vol"].dropna()
    return float(vols.mean()) if not vols.empty else math.nan


def _oi_ratio(expiry: pd.DataFrame) -> float:
    puts = expiry.loc[expiry["put_call"] == PUT, "open_interest"].sum(min_count=1)
    calls = expiry.loc[expiry["put_call"] == CALL, "open_interest"].sum(min_count=1)
    if pd.isna(puts) or pd.isna(calls) or calls == 0:
        return math.nan
    return float(puts / calls)


def chain_features(chain: pd.DataFrame, options: OptionsConfig) -> dict[str, pd.DataFrame]:
    """The four per-expiry features of a snapshot frame from `snapshot_chain` (index `snapshot_time`)."""
    values: dict[str, list[float]] = {name: [] for name in FEATURE_NAMES}
    expirations: list[pd.Timestamp] = []
    rows = chain.reset_index(drop=True)
    rows["liquid"] = liquid_mask(rows, options)
    for expiration, expiry in rows.groupby("expiration", sort=True):
        expirations.append(pd.Timestamp(expiration))
        values["total_oi"].append(float(expiry["open_interest"].sum(min_count=1)))
        values["put_call_oi_ratio"].append(_oi_ratio(expiry))
        values["atm_iv"].append(_atm_iv(expiry))
        values["liquid_strike_count"].append(float(expiry.loc[expiry["liquid"], "strike"].nunique()))
    at = [chain.index[0]] * len(expirations) if expirations else []
    return {
        name: pd.DataFrame(
            {
                "expiration": pd.DatetimeIndex(expirations, tz="UTC"),
                "as_of": pd.DatetimeIndex(at, tz="UTC"),
                "available_at": pd.DatetimeIndex(at, tz="UTC"),
                "value": np.asarray(column, dtype=np.float64),
            }
        )
        for name, column in values.items()
    }
