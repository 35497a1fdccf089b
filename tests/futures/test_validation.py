"""Bar validation: hypothesis properties against an independent per-bar oracle, plus named examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.futures.validation import validate_bars

prices = st.one_of(
    st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, -1.0, math.nan, math.inf]),
)
bars = st.tuples(prices, prices, prices, prices, st.integers(min_value=-5, max_value=10**9))


def _frame(rows: list[tuple[float, float, float, float, int]]) -> pd.DataFrame:
    index = pd.date_range("2026-11-02", periods=len(rows), freq="D", tz="UTC", name="ts_event")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close", "volume"], index=index)
    frame["volume"] = frame["volume"].astype(np.int64)
    frame["instrument_id"] = np.arange(len(rows), dtype=np.uint32) + 100
    frame["symbol"] = [f"HEJ{i}" for i in range(len(rows))]
    return frame


def _oracle_ok(o: float, h: float, lo: float, c: float, v: int) -> bool:
    positive = all(math.isfinite(x) and x > 0 for x in (o, h, lo, c))
    return positive and v >= 0 and h >= lo and lo <= o <= h and lo <= c <= h


@given(st.lists(bars, max_size=30))
def test_exactly_the_oracle_valid_bars_are_kept(rows: list[tuple[float, float, float, float, int]]) -> None:
    frame = _frame(rows)
    clean, problems = validate_bars(frame, "ohlcv-1d")
    expected = [i for i, row in enumerate(rows) if _oracle_ok(*row)]
    assert clean["instrument_id"].tolist() == [100 + i for i in expected]
    assert len(problems) == len(rows) - len(expected)
    rejected_symbols = {p.where.split(" at ")[0] for p in problems}
    assert rejected_symbols == {f"HEJ{i}" for i in range(len(rows)) if i not in expected}


@st.composite
def valid_bars(draw: st.DrawFn) -> tuple[float, float, float, float, int]:
    low = draw(st.floats(min_value=0.001, max_value=1e6))
    high = low + draw(st.floats(min_value=0.0, max_value=1e3))
    inside = st.floats(min_value=low, max_value=high)
    return (draw(inside), high, low, draw(inside), draw(st.integers(min_value=0, max_value=10**9)))


@given(st.lists(valid_bars(), min_size=1, max_size=20))
def test_valid_bars_pass_untouched(rows: list[tuple[float, float, float, float, int]]) -> None:
    frame = _frame(rows)
    clean, problems = validate_bars(frame, "ohlcv-1d")
    assert problems == []
    pd.testing.assert_frame_equal(clean, frame)


def test_problem_names_rule_instrument_and_time() -> None:
    frame = _frame([(90.0, 91.0, 89.0, 90.5, 10), (90.0, 88.0, 89.0, 88.5, 10), (92.0, 91.0, 89.0, 90.0, -1)])
    clean, problems = validate_bars(frame, "ohlcv-1d")
    assert clean["symbol"].tolist() == ["HEJ0"]
    assert problems[0].where == "HEJ1 at 2026-11-03T00:00:00+00:00"
    assert "high < low" in problems[0].what and "ohlcv-1d" in problems[0].what
    assert "volume is negative" in problems[1].what and "open outside [low, high]" in problems[1].what
    assert problems[1].where.startswith("HEJ2 at 2026-11-04")


def test_unknown_symbol_falls_back_to_instrument_id() -> None:
    frame = _frame([(0.0, 1.0, 1.0, 1.0, 1)])
    frame["symbol"] = [""]
    _, problems = validate_bars(frame, "ohlcv-1m")
    assert problems[0].where.startswith("instrument_id=100 at ")
    assert "open is not a positive price" in problems[0].what
