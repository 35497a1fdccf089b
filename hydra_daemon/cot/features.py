"""Point-in-time COT features from the bitemporal COT history of one market (pure).

For every as_of the latest stored revision yields one feature row carrying that revision's `as_of` and
`available_at`. Raw values come from the row itself (All segment): managed-money, producer/merchant and swap-dealer
net positions (long - short) and total open interest. `_pct_oi` divides a net by open interest. `_z156` is the
z-score of the raw value against the trailing 156 weekly values (sample standard deviation, full window required)
as they were known at the row's `available_at`: a revision of an old week only affects feature rows that became
available at or after that revision.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

Z_WINDOW = 156

_RAW: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "cot_managed_money_net": lambda h: _num(h, "m_money_long_all") - _num(h, "m_money_short_all"),
    "cot_producer_net": lambda h: _num(h, "prod_merc_long_all") - _num(h, "prod_merc_short_all"),
    "cot_swap_net": lambda h: _num(h, "swap_long_all") - _num(h, "swap_short_all"),
    "cot_total_oi": lambda h: _num(h, "open_interest_all"),
}
NET_FEATURES: tuple[str, ...] = ("cot_managed_money_net", "cot_producer_net", "cot_swap_net")
FEATURE_NAMES: tuple[str, ...] = (
    *_RAW,
    *(f"{name}_pct_oi" for name in NET_FEATURES),
    *(f"{name}_z{Z_WINDOW}" for name in _RAW),
)
HISTORY_COLUMNS: tuple[str, ...] = (
    "as_of",
    "available_at",
    "revision",
    "open_interest_all",
    "m_money_long_all",
    "m_money_short_all",
    "prod_merc_long_all",
    "prod_merc_short_all",
    "swap_long_all",
    "swap_short_all",
)


def cot_features(history: pd.DataFrame, *, window: int = Z_WINDOW) -> dict[str, pd.DataFrame]:
    """Feature name -> frame(as_of, available_at, value), one row per as_of (NaN where the value is undefined).

    `history` holds every stored revision (columns `HISTORY_COLUMNS`). With `window` != 156 the z-score features
    are named `_z{window}` accordingly.
    """
    h = history.sort_values(["as_of", "revision", "available_at"], kind="stable").reset_index(drop=True)
    raw = {name: fn(h) for name, fn in _RAW.items()}
    as_of_ns = pd.DatetimeIndex(h["as_of"]).asi8
    available_ns = pd.DatetimeIndex(h["available_at"]).asi8
    latest = _last_per_key(np.arange(len(h)), as_of_ns)
    stamps = h.loc[latest, ["as_of", "available_at"]].reset_index(drop=True)
    oi = raw["cot_total_oi"][latest]
    values: dict[str, np.ndarray] = {name: series[latest] for name, series in raw.items()}
    for name in NET_FEATURES:
        with np.errstate(divide="ignore", invalid="ignore"):
            values[f"{name}_pct_oi"] = np.where(oi > 0, raw[name][latest] / oi, np.nan)
    zscores = _point_in_time_zscores(raw, latest, as_of_ns, available_ns, window)
    values.update({f"{name}_z{window}": z for name, z in zscores.items()})
    return {name: _frame(stamps, value) for name, value in values.items()}


def _num(history: pd.DataFrame, column: str) -> np.ndarray:
    return history[column].to_numpy(dtype="float64")


def _last_per_key(indices: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Of `indices` (sorted by key, then revision), the last index of each key."""
    k = keys[indices]
    return indices[np.r_[k[1:] != k[:-1], True]] if len(indices) else indices


def _point_in_time_zscores(
    raw: dict[str, np.ndarray], targets: np.ndarray, as_of_ns: np.ndarray, available_ns: np.ndarray, window: int
) -> dict[str, np.ndarray]:
    out = {name: np.full(len(targets), np.nan) for name in raw}
    all_rows = np.arange(len(as_of_ns))
    for position, row in enumerate(targets):
        visible = all_rows[(available_ns <= available_ns[row]) & (as_of_ns <= as_of_ns[row])]
        trailing = _last_per_key(visible, as_of_ns)[-window:]
        if len(trailing) < window:
            continue
        for name, series in raw.items():
            sample = series[trailing]
            std = sample.std(ddof=1)
            if std > 0:
                out[name][position] = (sample[-1] - sample.mean()) / std
    return out


def _frame(stamps: pd.DataFrame, value: np.ndarray) -> pd.DataFrame:
    """Undefined values stay as NaN rows: a revision that makes a value undefined (open interest 0) must supersede
    the value its earlier revision stored, as options features already do."""
    return stamps.assign(value=value.astype("float64"))
