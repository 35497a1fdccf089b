"""Validation of one option chain row (pure).

Rules, checked at a snapshot time `at`:
- strike > 0 — else the row is REJECTED (left out of the chain);
- expiration after the snapshot date (UTC calendar date of the expiration > UTC date of `at`) — else REJECTED;
- bid ≥ 0 — else FLAGGED `negative_bid`;
- ask ≥ bid (when both sides are present) — else FLAGGED `crossed`.
Flagged rows stay in the chain with their quote as received (so what the venue sent is visible), get no implied vol
and never count as liquid. Raw mbp-1 records are stored verbatim whatever these rules say: capture is exactly-once.
Every problem names the instrument's raw symbol and the snapshot time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import pandas as pd

from hydra_daemon.ingest import Problem


class QuoteFlag(StrEnum):
    """A defect that keeps a row in the chain but excludes it from IV and liquidity."""

    NEGATIVE_BID = "negative_bid"
    CROSSED = "crossed"


@dataclass(frozen=True)
class RowCheck:
    """Outcome for one row: rejected (left out) or kept with zero or more flags."""

    rejected: bool
    flags: frozenset[QuoteFlag] = frozenset()
    problems: list[Problem] = field(default_factory=list)


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").isoformat()


def _expiration_date_after(expiration_ns: int, at_ns: int) -> bool:
    day_ns = 86_400 * 10**9
    return expiration_ns // day_ns > at_ns // day_ns


def check_row(*, raw_symbol: str, strike: float, expiration_ns: int, bid: float, ask: float, at_ns: int) -> RowCheck:
    """Apply the chain rules to one option at snapshot time `at_ns`; NaN bid/ask mean the side is absent."""
    where = f"{raw_symbol} at {_iso(at_ns)}"
    rejects: list[Problem] = []
    if not (math.isfinite(strike) and strike > 0):
        rejects.append(Problem(what=f"option rejected: strike must be > 0, got {strike}", where=where))
    if not _expiration_date_after(expiration_ns, at_ns):
        rejects.append(
            Problem(
                what=f"option rejected: expiration {_iso(expiration_ns)} is not after the snapshot date", where=where
            )
        )
    if rejects:
        return RowCheck(rejected=True, problems=rejects)
    flags: set[QuoteFlag] = set()
    problems: list[Problem] = []
    if math.isfinite(bid) and bid < 0:
        flags.add(QuoteFlag.NEGATIVE_BID)
        problems.append(Problem(what=f"quote flagged negative_bid: bid {bid} < 0 (kept, no IV)", where=where))
    if math.isfinite(bid) and math.isfinite(ask) and ask < bid:
        flags.add(QuoteFlag.CROSSED)
        problems.append(Problem(what=f"quote flagged crossed: ask {ask} < bid {bid} (kept, no IV)", where=where))
    return RowCheck(rejected=False, flags=frozenset(flags), problems=problems)
