"""`as_of` windows of bitemporal tables read only the segments ingested since the window can begin (the lead of
`as_of` over `ingested_at` kept in the metadata), and return exactly what filtering the whole table returns —
whatever the leads, also for a table written before the lead was kept."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hydra_daemon.reader import Reader
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal import point_in_time
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.symbols import COT, cot_symbol

T0 = pd.Timestamp("2024-01-02", tz="UTC")
DAY = pd.Timedelta(days=1)
_names = (f"M{n:04d}" for n in itertools.count())


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Reader[pd.DataFrame]]]:
    uri = f"lmdb://{tmp_path_factory.mktemp('window') / 'arctic'}?map_size=1GB"
    with Store.open(uri, writer=True) as store, Reader(uri) as reader:
        yield store, reader


def _record(table: BitemporalTable, ingested_day: int, leads: list[int]) -> None:
    """Rows ingested on `ingested_day` whose `as_of` is `lead` days after it (negative: facts about the past)."""
    ingested = T0 + ingested_day * DAY
    as_of = sorted({ingested + lead * DAY for lead in leads})
    frame = pd.DataFrame({"as_of": as_of, "net": np.arange(len(as_of), dtype="float64") + ingested_day})
    table.record(frame, value_columns=["net"], available_at=ingested, ingested_at=ingested)


@settings(max_examples=15, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(-30, 10), min_size=1, max_size=4), min_size=1, max_size=8),
    start_day=st.integers(-35, 25),
    at_day=st.integers(0, 12),
)
def test_a_window_read_equals_filtering_the_whole_table(
    shared: tuple[Store, Reader[pd.DataFrame]], batches: list[list[int]], start_day: int, at_day: int
) -> None:
    store, reader = shared
    market = next(_names)
    table = BitemporalTable(store.library(COT), cot_symbol(market))
    for day, leads in enumerate(batches):
        _record(table, day, leads)
    whole = table.history()
    start, at = T0 + start_day * DAY, T0 + at_day * DAY
    expected = whole[whole["as_of"] >= start].reset_index(drop=True)
    pd.testing.assert_frame_equal(table.history(start), expected)
    expected_pit = point_in_time(expected, at, ["as_of"])
    pd.testing.assert_frame_equal(table.point_in_time(at, start), expected_pit)
    from_reader = reader.cot(market, at, start=start)
    assert from_reader[["as_of", "net", "revision"]].values.tolist() == (
        expected_pit[["as_of", "net", "revision"]].values.tolist()
    )


def test_a_table_without_the_lead_is_read_whole_and_learns_it_on_its_next_write(
    shared: tuple[Store, Reader[pd.DataFrame]],
) -> None:
    store, _ = shared
    table = BitemporalTable(store.library(COT), cot_symbol(next(_names)))
    _record(table, 0, [5])  # as_of 5 days after its ingestion
    _record(table, 10, [-1])
    library = store.library(COT)
    metadata = library.read_metadata(table.symbol).metadata
    assert metadata["hydra_bitemporal"]["max_lead_ns"] == (5 * DAY).value
    del metadata["hydra_bitemporal"]["max_lead_ns"]  # what the previous layout wrote
    library.write_metadata(table.symbol, metadata)
    assert table.history(T0 + 5 * DAY)["as_of"].tolist() == [T0 + 5 * DAY, T0 + 9 * DAY]
    _record(table, 11, [-3])
    assert library.read_metadata(table.symbol).metadata["hydra_bitemporal"]["max_lead_ns"] == (5 * DAY).value
    assert table.history(T0 + 5 * DAY)["as_of"].tolist() == [T0 + 5 * DAY, T0 + 8 * DAY, T0 + 9 * DAY]


@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.sampled_from([-500, -40, -2, -1, 0, 1, 2, 3]), min_size=1, max_size=4), min_size=1, max_size=6
    ),
    at_day=st.integers(0, 8),
)
@example(batches=[[3], [0], [0]], at_day=3)  # the newest as_of was ingested before the first window begins
def test_the_feature_panel_equals_the_brute_force_pick(
    shared: tuple[Store, Reader[pd.DataFrame]], batches: list[list[int]], at_day: int
) -> None:
    """`feature_panel` reads widening `as_of` windows, each only from where its rows can begin: whatever the leads
    (as_of up to 500 days before its ingestion, or after it), it returns the newest `as_of` known at `at`."""
    store, reader = shared
    market = next(_names)
    features = FeatureStore(store)
    for day, leads in enumerate(batches):
        ingested = T0 + day * DAY
        as_of = sorted({ingested + lead * DAY for lead in leads})
        values = np.arange(len(as_of), dtype="float64") + 100 * day
        frame = pd.DataFrame({"as_of": as_of, "available_at": ingested, "value": values})
        features.write_feature(market, "iv", frame, ingested_at=ingested)
    at = T0 + at_day * DAY
    known = point_in_time(features.read_feature(market, "iv"), at, ["as_of"])
    expected = float("nan") if known.empty else float(known.sort_values("as_of")["value"].iloc[-1])
    got = reader.feature_panel([market], ["iv"], at).loc[market, "iv"]
    assert got == expected or (np.isnan(got) and np.isnan(expected))
