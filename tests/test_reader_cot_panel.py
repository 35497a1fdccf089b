"""`Reader.cot_panel` (windowed, column-pruned, vectorised) equals a brute-force point-in-time pick over every stored
revision, at random times and around a revision, a long release gap and a market silent for over a year."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from arcticdb_ext import set_config_int, unset_config_int
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.reader import Reader, ReaderArgumentError, _History
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal import point_in_time
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy
from hydra_daemon.store.symbols import COT, cot_symbol

FIRST = pd.Timestamp("2018-01-02", tz="UTC")  # a Tuesday
WEEKS = 156
RELEASE = pd.Timedelta(days=3, hours=20, minutes=30)  # Tuesday's positions are published on Friday 15:30 ET
SHUTDOWN = (60, 70)  # weeks whose reports all come out together when the shutdown ends
REVISED_WEEK = 100
SILENT = (40, 120)  # LE publishes nothing for these weeks (560 days: past every widening window but the last)
VALUES = ["open_interest_all", "m_money_long_all", "code"]


def _as_ofs() -> list[pd.Timestamp]:
    return [FIRST + pd.Timedelta(weeks=w) for w in range(WEEKS)]


def _releases() -> pd.Series:
    released = pd.Series([a + RELEASE for a in _as_ofs()])
    gap_end = released[SHUTDOWN[1]]
    released[SHUTDOWN[0] : SHUTDOWN[1]] = gap_end
    return released


def _reports(market: int, weeks: list[int], revision: int = 0) -> pd.DataFrame:
    as_ofs = _as_ofs()
    return pd.DataFrame(
        {
            "as_of": [as_ofs[w] for w in weeks],
            "open_interest_all": [float(market * 10_000 + w * 10 + revision) for w in weeks],
            "m_money_long_all": [float(w - revision) for w in weeks],
            "code": [f"{market:03d}{w:03d}" for w in weeks],
        }
    )


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """HE: three years with a shutdown gap, a revision of week 100 two weeks after its release and one of the
    newest week a day after it. LE: silent for 80 weeks. Written as a backfill then weekly-style appends."""
    uri = f"lmdb://{tmp_path_factory.mktemp('panel') / 'arctic'}?map_size=1GB"
    released = _releases()
    ingested = pd.Timestamp("2026-01-01", tz="UTC")
    with Store.open(uri, writer=True) as store:
        for number, market in enumerate(("HE", "LE")):
            table = BitemporalTable(store.library(COT), cot_symbol(market))
            weeks = [w for w in range(WEEKS) if market == "HE" or not SILENT[0] <= w < SILENT[1]]
            table.record(
                _reports(number, weeks),
                value_columns=VALUES,
                available_at=released[weeks].reset_index(drop=True),
                ingested_at=ingested,
            )
        he = BitemporalTable(store.library(COT), cot_symbol("HE"))
        for step, week in enumerate((REVISED_WEEK, WEEKS - 1)):
            late = released[week] + (pd.Timedelta(weeks=2) if week == REVISED_WEEK else pd.Timedelta(days=1))
            he.record(
                _reports(0, [week], revision=1),
                value_columns=VALUES,
                available_at=late,
                ingested_at=ingested + pd.Timedelta(hours=step + 1),
            )
    gc.collect()  # one Arctic per LMDB path per process: drop the writer's before a Reader opens it
    return uri


def _brute_force(history: pd.DataFrame, at: pd.Timestamp) -> pd.Series | None:
    """The newest `as_of` visible at `at`, its highest revision (ties: latest `available_at`), from every revision."""
    known = history[history["available_at"] <= at]
    if known.empty:
        return None
    return known.sort_values(["as_of", "revision", "available_at"], kind="stable").iloc[-1]


def _times() -> list[pd.Timestamp]:
    """Random times over the whole span plus the edges: each release (and 1 ns before), the shutdown, the revisions."""
    released = _releases()
    rng = np.random.default_rng(8)
    span = (FIRST - pd.Timedelta(weeks=2)).value, (released.iloc[-1] + pd.Timedelta(weeks=3)).value
    random = [pd.Timestamp(int(v), tz="UTC") for v in rng.integers(*span, size=40)]
    edges = [
        released[SHUTDOWN[0] - 1],
        released[SHUTDOWN[1]] - pd.Timedelta(days=1),  # mid-shutdown: the last report is from before it
        released[REVISED_WEEK] + pd.Timedelta(weeks=1),  # week 100's original is still the newest revision
        released[REVISED_WEEK] + pd.Timedelta(weeks=2),
        released[SILENT[1]] - pd.Timedelta(days=1),  # LE's newest report is 560 days old
        released.iloc[-1] + pd.Timedelta(hours=12),
        released.iloc[-1] + pd.Timedelta(days=1),
        FIRST,
    ]
    return random + [t + d for t in edges for d in (-pd.Timedelta(1, "ns"), pd.Timedelta(0))]


def test_the_panel_is_the_brute_force_point_in_time_pick(uri: str) -> None:
    markets = ["HE", "ZZ", "LE"]  # ZZ has no COT: a row of missing values
    with Reader(uri) as reader:
        histories = {m: reader.cot_history(m) for m in ("HE", "LE")}
        assert histories["HE"]["revision"].max() == 1
        for at in _times():
            panel = reader.cot_panel(markets, at)
            assert panel.index.tolist() == markets
            assert panel.loc["ZZ"].isna().all()
            for market, history in histories.items():
                expected = _brute_force(history, at)
                row = panel.loc[market]
                if expected is None:
                    assert row.isna().all(), (market, at)
                    continue
                assert row[history.columns].to_dict() == expected.to_dict(), (market, at)


def test_the_edges_hold_what_they_are_about(uri: str) -> None:
    """The brute force is checked at the edges too: the shutdown, both revisions and LE's long silence."""
    released = _releases()
    as_ofs = _as_ofs()
    with Reader(uri) as reader:
        mid_gap = reader.cot_panel(["HE"], released[SHUTDOWN[1]] - pd.Timedelta(days=1)).loc["HE"]
        assert mid_gap["as_of"] == as_ofs[SHUTDOWN[0] - 1]
        after_gap = reader.cot_panel(["HE"], released[SHUTDOWN[1]]).loc["HE"]
        assert after_gap["as_of"] == as_ofs[SHUTDOWN[1]]
        newest = released.iloc[-1]
        assert reader.cot_panel(["HE"], newest).loc["HE", "revision"] == 0
        assert reader.cot_panel(["HE"], newest + pd.Timedelta(days=1)).loc["HE", "revision"] == 1
        silent = reader.cot_panel(["LE"], released[SILENT[1]] - pd.Timedelta(days=1)).loc["LE"]
        assert silent["as_of"] == as_ofs[SILENT[0] - 1]


def test_columns_are_pushed_down_and_checked(uri: str) -> None:
    at = _releases().iloc[-1] + pd.Timedelta(days=2)
    with Reader(uri) as reader:
        full = reader.cot_panel(["HE", "LE"], at)
        narrow = reader.cot_panel(["LE", "HE"], at, columns=["m_money_long_all"])
        assert narrow.columns.tolist() == ["m_money_long_all"]
        pd.testing.assert_series_equal(narrow["m_money_long_all"], full["m_money_long_all"].loc[["LE", "HE"]])
        with pytest.raises(ReaderArgumentError, match=r"unknown columns \['nope'\]"):
            reader.cot_panel(["HE"], at, columns=["nope"])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 12), st.integers(0, 2)), min_size=1, max_size=25),
    at_day=st.integers(-1, 14),
)
def test_a_cached_history_picks_the_point_in_time_row(rows: list[tuple[int, int, int]], at_day: int) -> None:
    """`_History.latest_at` (one comparison over rows sorted once) keeps the row `bitemporal.point_in_time` keeps
    for the newest visible `as_of`, whatever order the rows were stored in."""
    day = pd.Timedelta(days=1)
    history = pd.DataFrame(
        {
            "as_of": [FIRST + a * 7 * day for a, _, _ in rows],
            "available_at": [FIRST + (7 * a + v) * day for a, v, _ in rows],
            "revision": np.array([r for _, _, r in rows], dtype="int64"),
            "row": np.arange(len(rows)),
        }
    )
    at = FIRST + 7 * at_day * day
    cached = _History.of(pa.Table.from_pandas(history, preserve_index=False), (0, 0), None)
    position = cached.latest_at(at)
    expected = point_in_time(history, at, ["as_of"])
    if expected.empty:
        assert position is None
        return
    newest = expected.iloc[-1]
    picked = cached.table.slice(position, 1).to_pylist()[0]
    assert (picked["as_of"], picked["revision"]) == (newest["as_of"], newest["revision"])
    assert picked["available_at"] == newest["available_at"]


@pytest.fixture
def fresh_versions() -> Iterator[None]:
    """Readers in this process see every new version at once (no 2 s latest-version cache): the test can ask
    right after a write whether the panel is stale."""
    set_config_int("VersionMap.ReloadInterval", 0)
    yield
    unset_config_int("VersionMap.ReloadInterval")


def test_the_cached_histories_follow_every_new_version(tmp_path: Path, fresh_versions: None) -> None:
    """A Reader that cached both markets sees a revision, a new week, a compaction and a symbol deleted and written
    again (its version number goes on, its data differs) at once; an unchanged market is not read again."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    released = _releases()
    at = released[9] + pd.Timedelta(days=30)
    ingested = pd.Timestamp("2026-01-01", tz="UTC")
    with Store.open(uri, writer=True) as store, Reader(uri) as reader:
        tables = {m: BitemporalTable(store.library(COT), cot_symbol(m)) for m in ("HE", "LE")}

        def record(market: str, weeks: list[int], revision: int, available: pd.Timestamp | pd.Series) -> None:
            nonlocal ingested
            ingested += pd.Timedelta(hours=1)
            frame = _reports(("HE", "LE").index(market), weeks, revision)
            tables[market].record(frame, value_columns=VALUES, available_at=available, ingested_at=ingested)

        for market in ("HE", "LE"):
            record(market, list(range(8)), 0, released[:8].reset_index(drop=True))
        narrow = reader.cot_panel(["HE", "LE"], at, columns=["m_money_long_all"])
        assert narrow["m_money_long_all"].tolist() == [7.0, 7.0]
        assert reader.cot_panel(["HE", "LE"], at)["open_interest_all"].tolist() == [70.0, 10_070.0]  # widened
        le_cached = reader._cot_cache[cot_symbol("LE")]

        record("HE", [7], 1, released[7] + pd.Timedelta(days=2))
        assert reader.cot_panel(["HE", "LE"], at)["revision"].tolist() == [1, 0]
        record("HE", [8], 0, released[8])
        assert reader.cot_panel(["HE"], at)["as_of"].tolist() == [_as_ofs()[8]]
        assert reader._cot_cache[cot_symbol("LE")] is le_cached  # LE did not change: not read again

        Maintenance(store, MaintenancePolicy(compact_every=1, prune_grace_s=0)).run_once()
        assert reader.cot_panel(["HE", "LE"], at)["as_of"].tolist() == [_as_ofs()[8], _as_ofs()[7]]

        store.library(COT).delete(cot_symbol("LE"))
        record("LE", [3], 0, released[3])
        assert reader.cot_panel(["LE"], at)["as_of"].tolist() == [_as_ofs()[3]]
        # what a Reader opened now returns, for every market and many times
        for when in [released[w] + d for w in range(10) for d in (-pd.Timedelta(1, "ns"), pd.Timedelta(0))]:
            with Reader(uri) as fresh:
                expected = fresh.cot_panel(["HE", "LE"], when)
            pd.testing.assert_frame_equal(reader.cot_panel(["HE", "LE"], when), expected)
