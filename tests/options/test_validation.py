"""Chain row validation: rejects bad strikes and expired options, flags negative and crossed quotes."""

from __future__ import annotations

import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.options.validation import QuoteFlag, check_row

DAY_NS = 86_400 * 10**9
AT = pd.Timestamp("2026-11-26T15:00:00Z").value

prices = st.one_of(st.just(math.nan), st.floats(-5.0, 50.0, allow_nan=False))


@given(
    strike=st.one_of(st.just(math.nan), st.floats(-100.0, 200.0, allow_nan=False)),
    expiry_offset_ns=st.integers(-400 * DAY_NS, 400 * DAY_NS),
    bid=prices,
    ask=prices,
)
def test_rules_hold_for_any_row(strike: float, expiry_offset_ns: int, bid: float, ask: float) -> None:
    expiration = AT + expiry_offset_ns
    check = check_row(raw_symbol="HEZ6 C0900", strike=strike, expiration_ns=expiration, bid=bid, ask=ask, at_ns=AT)
    bad_strike = not (strike > 0)
    expired = pd.Timestamp(expiration, tz="UTC").date() <= pd.Timestamp(AT, tz="UTC").date()
    assert check.rejected == (bad_strike or expired)
    if check.rejected:
        assert check.flags == frozenset()
        assert len(check.problems) == int(bad_strike) + int(expired)
    else:
        expected = set()
        if bid < 0:
            expected.add(QuoteFlag.NEGATIVE_BID)
        if ask < bid:
            expected.add(QuoteFlag.CROSSED)
        assert check.flags == expected
        assert len(check.problems) == len(expected)
    for problem in check.problems:
        assert problem.where == "HEZ6 C0900 at 2026-11-26T15:00:00+00:00"


def test_expiring_later_on_the_snapshot_day_is_rejected() -> None:
    later_today = pd.Timestamp("2026-11-26T20:00:00Z").value
    check = check_row(raw_symbol="HEZ6 P0850", strike=85.0, expiration_ns=later_today, bid=1.0, ask=1.1, at_ns=AT)
    assert check.rejected
    assert "expiration 2026-11-26T20:00:00+00:00 is not after the snapshot date" in check.problems[0].what


def test_crossed_quote_is_kept_and_flagged_with_its_prices() -> None:
    check = check_row(raw_symbol="HEZ6 C0900", strike=90.0, expiration_ns=AT + 30 * DAY_NS, bid=1.25, ask=1.2, at_ns=AT)
    assert not check.rejected
    assert check.flags == {QuoteFlag.CROSSED}
    assert check.problems[0].what == "quote flagged crossed: ask 1.2 < bid 1.25 (kept, no IV)"


def test_one_sided_quote_is_clean() -> None:
    check = check_row(
        raw_symbol="HEZ6 C0900", strike=90.0, expiration_ns=AT + 30 * DAY_NS, bid=math.nan, ask=1.2, at_ns=AT
    )
    assert not check.rejected and not check.flags and not check.problems
