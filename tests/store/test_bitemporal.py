"""Pure bitemporal selection: point-in-time reads and revision detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.store.bitemporal import latest_revisions, point_in_time, revisions_to_write

T0 = pd.Timestamp("2024-01-02", tz="UTC")


def _ts(days: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=days)


def _history(rows: list[tuple[float, float, int, float]]) -> pd.DataFrame:
    """rows of (as_of day, available_at day, revision, value)."""
    return pd.DataFrame(
        {
            "as_of": pd.Series([_ts(r[0]) for r in rows], dtype="datetime64[ns, UTC]"),
            "available_at": pd.Series([_ts(r[1]) for r in rows], dtype="datetime64[ns, UTC]"),
            "revision": np.array([r[2] for r in rows], dtype="int64"),
            "value": np.array([r[3] for r in rows], dtype="float64"),
        }
    )


HISTORY = _history([(0, 3, 0, 10.0), (0, 10, 1, 11.0), (7, 10, 0, 20.0)])


def test_before_first_availability_nothing_is_known() -> None:
    assert point_in_time(HISTORY, _ts(2.99), ["as_of"]).empty


def test_at_availability_the_first_revision_is_known() -> None:
    known = point_in_time(HISTORY, _ts(3), ["as_of"])
    assert known[["revision", "value"]].values.tolist() == [[0, 10.0]]


def test_between_revisions_the_old_value_is_known() -> None:
    known = point_in_time(HISTORY, _ts(9.5), ["as_of"])
    assert known["value"].tolist() == [10.0]


def test_at_and_after_the_revision_the_new_value_is_known() -> None:
    for at in (_ts(10), _ts(400)):
        known = point_in_time(HISTORY, at, ["as_of"])
        assert known[["as_of", "revision", "value"]].values.tolist() == [[_ts(0), 1, 11.0], [_ts(7), 0, 20.0]]


def test_naive_at_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-naive"):
        point_in_time(HISTORY, pd.Timestamp("2024-01-05"), ["as_of"])


def test_ties_on_revision_take_latest_available_at() -> None:
    history = _history([(0, 5, 0, 1.0), (0, 4, 0, 2.0)])
    assert latest_revisions(history, ["as_of"])["value"].tolist() == [1.0]


def test_revisions_to_write_new_changed_and_unchanged() -> None:
    stored = latest_revisions(_history([(0, 3, 0, 10.0), (1, 3, 0, np.nan), (2, 3, 4, 5.0)]), ["as_of"])
    incoming = pd.DataFrame({"as_of": [_ts(0), _ts(1), _ts(2), _ts(3)], "value": [10.0, np.nan, 6.0, 1.0]})
    out = revisions_to_write(stored, incoming, ["as_of"], ["value"])
    assert out[["as_of", "value", "revision"]].values.tolist() == [[_ts(2), 6.0, 5], [_ts(3), 1.0, 0]]


def test_revisions_to_write_first_write_is_revision_zero() -> None:
    incoming = pd.DataFrame({"as_of": [_ts(0), _ts(1)], "value": [1.0, 2.0]})
    out = revisions_to_write(incoming.iloc[0:0].assign(revision=0), incoming, ["as_of"], ["value"])
    assert out["revision"].tolist() == [0, 0]


def test_revisions_to_write_rejects_repeated_keys() -> None:
    incoming = pd.DataFrame({"as_of": [_ts(0), _ts(0)], "value": [1.0, 2.0]})
    with pytest.raises(ValueError, match="repeat keys"):
        revisions_to_write(incoming.iloc[0:0].assign(revision=0), incoming, ["as_of"], ["value"])


def test_revisions_to_write_string_values_and_extra_keys() -> None:
    stored = pd.DataFrame({"as_of": [_ts(0)] * 2, "market": ["HE", "LE"], "label": ["a", None], "revision": [0, 0]})
    incoming = pd.DataFrame({"as_of": [_ts(0)] * 2, "market": ["HE", "LE"], "label": ["a", "b"]})
    out = revisions_to_write(stored, incoming, ["as_of", "market"], ["label"])
    assert out[["market", "label", "revision"]].values.tolist() == [["LE", "b", 1]]


_rows = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 30), st.integers(0, 3), st.floats(allow_nan=True, width=32)),
    min_size=0,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(rows=_rows, at_day=st.integers(-1, 32))
def test_property_point_in_time_never_returns_the_future(rows: list, at_day: int) -> None:
    history = _history([(a, b, r, v) for a, b, r, v in rows])
    at = _ts(at_day)
    known = point_in_time(history, at, ["as_of"])
    assert (known["available_at"] <= at).all()
    assert known["as_of"].is_unique
    visible = history[history["available_at"] <= at]
    assert set(known["as_of"]) == set(visible["as_of"])
    for _, row in known.iterrows():
        same_key = visible[visible["as_of"] == row["as_of"]]
        assert row["revision"] == same_key["revision"].max()
