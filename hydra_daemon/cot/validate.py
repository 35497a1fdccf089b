"""Check parsed COT rows against the CFTC accounting identities; split good rows from quarantined ones.

Pure. For each segment S in All, Old, Other:
  Tot_Rept_Long_S  = ProdL + SwapL + SwapSpread + MML + MMSpread + OtherL + OtherSpread
  Tot_Rept_Short_S = ProdS + SwapS + SwapSpread + MMS + MMSpread + OtherS + OtherSpread
  OI_S = Tot_Rept_Long_S + NonRept_Long_S = Tot_Rept_Short_S + NonRept_Short_S
and OI_Old + OI_Other = OI_All. Every position is present, a whole number, non-negative and within int64. The
sums are exact (Python integers): float arithmetic would call unequal values equal above 2**53 and int64 sums
could wrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hydra_daemon.cot.parse import POSITION_COLUMNS, SEGMENTS, position_column
from hydra_daemon.ingest import Problem

_LONG_PARTS = (
    "prod_merc_long",
    "swap_long",
    "swap_spread",
    "m_money_long",
    "m_money_spread",
    "other_rept_long",
    "other_rept_spread",
)
_SHORT_PARTS = (
    "prod_merc_short",
    "swap_short",
    "swap_spread",
    "m_money_short",
    "m_money_spread",
    "other_rept_short",
    "other_rept_spread",
)


@dataclass(frozen=True)
class ValidatedRows:
    """`good`: rows that pass every check, positions as int64. `quarantined`: the rest with a `reason` column."""

    good: pd.DataFrame
    quarantined: pd.DataFrame

    def problems(self) -> list[Problem]:
        """One `Problem` per quarantined row, naming the contract code and the as_of date."""
        return [
            Problem(what=reason, where=f"code {code} as_of {as_of:%Y-%m-%d}")
            for code, as_of, reason in zip(
                self.quarantined["code"], self.quarantined["as_of"], self.quarantined["reason"], strict=True
            )
        ]


def validate_rows(rows: pd.DataFrame) -> ValidatedRows:
    """Split parsed rows (see `parse.OUTPUT_COLUMNS`) into good rows and quarantined rows with reasons."""
    reasons = violations(rows)
    bad = reasons != ""
    good = rows[~bad].copy()
    for column in POSITION_COLUMNS:
        good[column] = np.array([int(v) for v in good[column]], dtype=np.int64)
    quarantined = rows[bad].copy()
    quarantined["reason"] = reasons[bad]
    return ValidatedRows(good=good.reset_index(drop=True), quarantined=quarantined.reset_index(drop=True))


def violations(rows: pd.DataFrame) -> pd.Series:
    """Per row, every failed check joined by '; ' (empty string when the row is good)."""
    checks: list[tuple[str, np.ndarray]] = []
    exact: dict[str, np.ndarray] = {}
    for column in POSITION_COLUMNS:
        values, missing, inexact = _exact(rows[column])
        exact[column] = values
        checks.append((f"missing {column}", missing))
        checks.append((f"{column} is not a whole number within int64", inexact))
        checks.append((f"negative {column}", values < 0))
    for segment in SEGMENTS:
        checks.extend(_segment_checks(exact, len(rows), segment))
    oi_all, oi_old, oi_other = (exact[position_column("open_interest", s)] for s in SEGMENTS)
    checks.append(("open_interest_old + open_interest_other != open_interest_all", oi_old + oi_other != oi_all))
    return _join_reasons(len(rows), checks, rows.index)


def _segment_checks(exact: dict[str, np.ndarray], n: int, segment: str) -> list[tuple[str, np.ndarray]]:
    def _col(stem: str) -> np.ndarray:
        return exact[position_column(stem, segment)]

    long_sum = sum((_col(stem) for stem in _LONG_PARTS), np.zeros(n, dtype=object))
    short_sum = sum((_col(stem) for stem in _SHORT_PARTS), np.zeros(n, dtype=object))
    tot_long, tot_short = _col("tot_rept_long"), _col("tot_rept_short")
    oi = _col("open_interest")
    return [
        (f"tot_rept_long_{segment} != sum of reportable long positions", tot_long != long_sum),
        (f"tot_rept_short_{segment} != sum of reportable short positions", tot_short != short_sum),
        (
            f"open_interest_{segment} != tot_rept_long + nonrept_long",
            oi != tot_long + _col("nonrept_long"),
        ),
        (
            f"open_interest_{segment} != tot_rept_short + nonrept_short",
            oi != tot_short + _col("nonrept_short"),
        ),
    ]


def _exact(column: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Python integers of `column` as an object array (0 where missing or inexact), the missing mask, and the mask of
    values that are not whole numbers within int64 (a fraction, NaN-free infinity, a float past 2**63, text)."""
    values = np.zeros(len(column), dtype=object)
    missing = np.zeros(len(column), dtype=bool)
    inexact = np.zeros(len(column), dtype=bool)
    for i, value in enumerate(column.array):
        if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
            missing[i] = True
        elif _whole(value):
            values[i] = int(value)
            inexact[i] = not -(2**63) <= values[i] < 2**63
        else:
            inexact[i] = True
        if inexact[i]:
            values[i] = 0
    return values, missing, inexact


def _join_reasons(n: int, checks: list[tuple[str, np.ndarray]], index: pd.Index) -> pd.Series:
    reasons: list[list[str]] = [[] for _ in range(n)]
    for label, failed in checks:
        for i in np.flatnonzero(failed):
            reasons[int(i)].append(label)
    return pd.Series(["; ".join(r) for r in reasons], index=index, dtype=object)


def _whole(value: object) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | np.integer):
        return True
    return isinstance(value, float | np.floating) and bool(np.isfinite(value)) and float(value).is_integer()
