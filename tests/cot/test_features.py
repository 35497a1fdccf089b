"""COT feature math on small hand-checkable frames, including point-in-time z-scores across a revision."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hydra_daemon.cot.features import FEATURE_NAMES, cot_features


def _week(i: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-02", tz="UTC") + pd.Timedelta(weeks=i)


def _row(i: int, mm_net: int, *, revision: int = 0, available_week: int | None = None, oi: int = 1000) -> dict:
    available = _week(available_week if available_week is not None else i) + pd.Timedelta(days=3, hours=20)
    return {
        "as_of": _week(i),
        "available_at": available,
        "revision": revision,
        "open_interest_all": oi,
        "m_money_long_all": 500 + mm_net,
        "m_money_short_all": 500,
        "prod_merc_long_all": 300,
        "prod_merc_short_all": 100 + 10 * i,
        "swap_long_all": 50,
        "swap_short_all": 80,
    }


def _values(features: dict[str, pd.DataFrame], name: str) -> list[float]:
    return list(features[name]["value"])


def test_feature_names() -> None:
    assert set(FEATURE_NAMES) == {
        "cot_managed_money_net",
        "cot_producer_net",
        "cot_swap_net",
        "cot_total_oi",
        "cot_managed_money_net_pct_oi",
        "cot_producer_net_pct_oi",
        "cot_swap_net_pct_oi",
        "cot_managed_money_net_z156",
        "cot_producer_net_z156",
        "cot_swap_net_z156",
        "cot_total_oi_z156",
    }
    assert set(cot_features(pd.DataFrame([_row(0, 1)]))) == set(FEATURE_NAMES)


def test_raw_and_pct_oi_values_carry_source_stamps() -> None:
    history = pd.DataFrame([_row(0, 100, oi=1000), _row(1, -50, oi=500)])

    features = cot_features(history)

    assert _values(features, "cot_managed_money_net") == [100, -50]
    assert _values(features, "cot_producer_net") == [200, 190]
    assert _values(features, "cot_swap_net") == [-30, -30]
    assert _values(features, "cot_total_oi") == [1000, 500]
    assert _values(features, "cot_managed_money_net_pct_oi") == [0.1, -0.1]
    assert _values(features, "cot_swap_net_pct_oi") == [-0.03, -0.06]
    assert list(features["cot_total_oi"]["as_of"]) == list(history["as_of"])
    assert list(features["cot_total_oi"]["available_at"]) == list(history["available_at"])


def test_zscore_needs_a_full_window_and_uses_sample_std() -> None:
    history = pd.DataFrame([_row(0, 1), _row(1, 2), _row(2, 3), _row(3, 5)])

    z = cot_features(history, window=3)["cot_managed_money_net_z3"]

    # Weeks 0 and 1 have no full window: NaN rows. Window [1,2,3]: mean 2, sample std 1 -> z = 1; window [2,3,5]:
    # mean 10/3, std sqrt(7/3).
    assert list(z["as_of"]) == [_week(0), _week(1), _week(2), _week(3)]
    assert z["value"].iloc[:2].isna().all()
    assert z["value"].iloc[2] == pytest.approx(1.0)
    assert z["value"].iloc[3] == pytest.approx((5 - 10 / 3) / math.sqrt(7 / 3))


def test_constant_window_has_no_zscore() -> None:
    history = pd.DataFrame([_row(i, 7) for i in range(4)])

    assert cot_features(history, window=3)["cot_managed_money_net_z3"]["value"].isna().all()


def test_a_revision_to_zero_open_interest_is_a_nan_row_with_the_revision_stamps() -> None:
    history = pd.DataFrame([_row(0, 100, oi=1000), _row(0, 100, oi=0, revision=1, available_week=1)])

    pct = cot_features(history)["cot_managed_money_net_pct_oi"]

    assert len(pct) == 1 and math.isnan(pct["value"].iloc[0])
    assert pct["available_at"].iloc[0] == history["available_at"].iloc[1]


def test_revision_of_an_old_week_does_not_leak_into_earlier_feature_values() -> None:
    # Week 1 is revised from 2 to 20, revealed with week 3's release.
    history = pd.DataFrame(
        [
            _row(0, 1),
            _row(1, 2),
            _row(2, 3),
            _row(3, 5),
            _row(1, 20, revision=1, available_week=3),
        ]
    )

    features = cot_features(history, window=3)
    z = features["cot_managed_money_net_z3"].set_index("as_of")["value"]
    raw = features["cot_managed_money_net"].set_index("as_of")

    # Week 2 (available before the revision) still sees the original week 1: window [1,2,3] -> z = 1.
    assert z[_week(2)] == pytest.approx(1.0)
    # Week 3 (available with the revision) sees the revised week 1: window [20,3,5].
    mean = (20 + 3 + 5) / 3
    std = math.sqrt(((20 - mean) ** 2 + (3 - mean) ** 2 + (5 - mean) ** 2) / 2)
    assert z[_week(3)] == pytest.approx((5 - mean) / std)
    # The revised week itself is one row, carrying the revision's available_at and value.
    assert raw.loc[_week(1), "value"] == 20
    assert raw.loc[_week(1), "available_at"] == history["available_at"].iloc[4]
