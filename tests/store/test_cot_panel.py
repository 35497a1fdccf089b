"""The COT panel (`store.cot_panel`): `Reader.cot_panel` answers from it exactly what the per-market symbols answer,
only while it is current, and a stale panel (a crash between a market's append and the panel's rewrite, a
compaction, a market deleted and written again, a market added later) costs per-market reads, never a wrong answer.
Real ArcticDB on LMDB."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from arcticdb_ext import set_config_int, unset_config_int
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydra_daemon.reader import Reader
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.lake import export_store_due
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy
from hydra_daemon.store.symbols import COT, COT_PANEL, cot_symbol

FIRST = pd.Timestamp("2018-01-02", tz="UTC")  # a Tuesday
RELEASE = pd.Timedelta(days=3, hours=20, minutes=30)
MARKETS = ["HE", "LE", "ZC", "CL", "GC"]
VALUES = ["open_interest_all", "m_money_long_all", "code"]


@contextmanager
def _fresh_versions() -> Iterator[None]:
    """Readers see every new version at once (no 2 s latest-version cache)."""
    set_config_int("VersionMap.ReloadInterval", 0)
    try:
        yield
    finally:
        unset_config_int("VersionMap.ReloadInterval")


@pytest.fixture
def fresh_versions() -> Iterator[None]:
    with _fresh_versions():
        yield


class Writer:
    """Writes COT-like weeks per market with a transaction clock that only goes forward."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ingested = pd.Timestamp("2026-01-01", tz="UTC")

    def record(self, market: str, weeks: list[int], salt: int = 0, late: pd.Timedelta | None = None) -> None:
        self.ingested += pd.Timedelta(hours=1)
        as_ofs = [FIRST + pd.Timedelta(weeks=w) for w in weeks]
        frame = pd.DataFrame(
            {
                "as_of": as_ofs,
                "open_interest_all": [float(MARKETS.index(market) * 1000 + w * 10 + salt) for w in weeks],
                "m_money_long_all": [float(w - salt) for w in weeks],
                "code": [f"{market}{w:03d}" for w in weeks],
            }
        )
        released = pd.Series([a + RELEASE + (late or pd.Timedelta(0)) for a in as_ofs])
        table = BitemporalTable(
            self.store.library(COT), cot_symbol(market), lock=self.store.symbol_lock(COT, cot_symbol(market))
        )
        table.record(frame, value_columns=VALUES, available_at=released, ingested_at=self.ingested)


def _times(weeks: int) -> list[pd.Timestamp]:
    """Before anything, at and 1 ns before each release (and a revision's), and long after."""
    times = [FIRST - pd.Timedelta(days=1), FIRST + pd.Timedelta(weeks=weeks + 10)]
    for week in range(weeks):
        for shift in (RELEASE, RELEASE + pd.Timedelta(days=2)):
            at = FIRST + pd.Timedelta(weeks=week) + shift
            times += [at - pd.Timedelta(1, "ns"), at]
    return times


def _panel_answers(uri: str, markets: list[str], times: list[pd.Timestamp]) -> tuple[list[pd.DataFrame], set[str]]:
    """A fresh Reader's `cot_panel` at each time (full columns and three), and the markets it read per symbol."""
    with Reader(uri) as reader:
        answers = [reader.cot_panel(markets, at) for at in times]
        answers += [reader.cot_panel(markets, at, columns=["as_of", "revision", "code"]) for at in times[::3]]
        return answers, {symbol.removesuffix(".cot") for symbol in reader._cot_cache}


def _per_market_answers(store: Store, uri: str, markets: list[str], times: list[pd.Timestamp]) -> list[pd.DataFrame]:
    """The same reads without any panel (deleted): every market from its own symbol."""
    if store.library(COT).has_symbol(COT_PANEL):
        store.library(COT).delete(COT_PANEL)
    answers, read = _panel_answers(uri, markets, times)
    assert read == set(markets) - {"NO"}
    return answers


def _assert_same(panel: list[pd.DataFrame], per_market: list[pd.DataFrame]) -> None:
    assert len(panel) == len(per_market)
    for got, expected in zip(panel, per_market, strict=True):
        pd.testing.assert_frame_equal(got, expected)


def test_a_current_panel_answers_alone_and_a_stale_market_is_read_from_its_symbol(
    tmp_path: Path, fresh_versions: None
) -> None:
    """A revision written after the panel (a crash before its rewrite) is read from the market's symbol, the others
    from the panel; maintenance makes the panel current again. Same answers as without a panel, every time."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    markets = ["HE", "NO", "LE", "ZC"]  # NO has no COT: a row of missing values
    times = _times(8)
    with Store.open(uri, writer=True) as store:
        writer = Writer(store)
        for market in ("HE", "LE", "ZC"):
            writer.record(market, list(range(6)))
        assert refresh_cot_panel(store)
        assert not refresh_cot_panel(store)  # current: nothing to do
        current, read = _panel_answers(uri, markets, times)
        assert read == set()  # every market from the panel

        writer.record("LE", [5], salt=1, late=pd.Timedelta(days=2))  # a revision; the cycle "crashed" here
        writer.record("ZC", [6])
        stale, read = _panel_answers(uri, markets, times)
        assert read == {"LE", "ZC"}

        Maintenance(store, MaintenancePolicy(compact_every=1, prune_grace_s=0)).run_once()
        repaired, read = _panel_answers(uri, markets, times)
        assert read == set()
        assert not refresh_cot_panel(store)
        assert stale[1].loc["LE", "revision"] == 1 and stale[1].loc["ZC", "as_of"] == FIRST + pd.Timedelta(weeks=6)

        _assert_same(stale, _per_market_answers(store, uri, markets, times))
        _assert_same(repaired, stale)
        assert current[0].equals(stale[0])  # before any release: nothing known either way
    gc.collect()


OPERATIONS = st.one_of(
    st.tuples(st.just("weeks"), st.sampled_from(MARKETS), st.integers(0, 7), st.integers(1, 3)),
    st.tuples(st.just("revise"), st.sampled_from(MARKETS), st.integers(0, 7), st.integers(1, 3)),
    st.tuples(st.just("rewrite"), st.sampled_from(MARKETS), st.integers(0, 7), st.integers(1, 3)),
    st.tuples(st.just("refresh"), st.just(""), st.just(0), st.just(0)),
    st.tuples(st.just("maintenance"), st.just(""), st.just(0), st.just(0)),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=10), refreshed=st.booleans())
def test_the_panel_path_equals_the_per_market_path(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, str, int, int]], refreshed: bool
) -> None:
    """Any history of new weeks, revisions, markets added later, markets deleted and written again, panel
    rewrites and maintenance runs — with the panel current or not at the end — reads the same as without it."""
    uri = f"lmdb://{tmp_path_factory.mktemp('panel') / 'arctic'}?map_size=128MB"
    with _fresh_versions(), Store.open(uri, writer=True) as store:
        writer = Writer(store)
        for kind, market, week, count in operations:
            if kind == "weeks":
                writer.record(market, list(range(week, week + count)))
            elif kind == "revise":
                writer.record(market, list(range(week, week + count)), salt=count, late=pd.Timedelta(days=2))
            elif kind == "rewrite":
                if store.library(COT).has_symbol(cot_symbol(market)):
                    store.library(COT).delete(cot_symbol(market))
                writer.record(market, list(range(week, week + count)), salt=7)
            elif kind == "refresh":
                refresh_cot_panel(store)
            else:
                Maintenance(store, MaintenancePolicy(compact_every=2, prune_grace_s=0)).run_once()
        if refreshed:
            refresh_cot_panel(store)
        held = [m for m in MARKETS if store.library(COT).has_symbol(cot_symbol(m))]
        if not held:
            return
        times = _times(11)[::4]
        answers, read = _panel_answers(uri, [*held, "NO"], times)
        if refreshed and len(held) >= 2:
            assert read == set()
        _assert_same(answers, _per_market_answers(store, uri, [*held, "NO"], times))
    gc.collect()


def test_a_snapshot_reader_uses_the_panel_the_snapshot_pins(tmp_path: Path, fresh_versions: None) -> None:
    """The daily snapshot pins the panel maintenance rebuilt just before it; a Reader at that snapshot reads it,
    and what was written after the snapshot changes nothing there."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    with Store.open(uri, writer=True) as store:
        now = {"ns": time.time_ns()}
        maintenance = Maintenance(store, MaintenancePolicy(compact_every=1, prune_grace_s=0), clock=lambda: now["ns"])
        maintenance.run_once()  # the daemon runs through the day (a first run takes no snapshot of the day before it)
        writer = Writer(store)
        for market in ("HE", "LE"):
            writer.record(market, list(range(5)))
        now["ns"] += 86_400 * 10**9
        report = maintenance.run_once()
        writer.record("HE", [5, 6])
        refresh_cot_panel(store)
        day = pd.Timestamp(report.snapshots_taken[0].removeprefix("daily-")).date()
        at = FIRST + pd.Timedelta(weeks=20)
        with Reader(uri, as_of_snapshot=day) as reader:
            then = reader.cot_panel(["HE", "LE"], at)
            assert reader._cot_panel is not None and not reader._cot_cache
        assert then.loc["HE", "as_of"] == FIRST + pd.Timedelta(weeks=4)
        with Reader(uri) as reader:
            assert reader.cot_panel(["HE", "LE"], at).loc["HE", "as_of"] == FIRST + pd.Timedelta(weeks=6)
            assert reader.markets() == ["HE", "LE"]  # the panel is not a market
    gc.collect()


def test_the_lake_leaves_the_panel_out(tmp_path: Path) -> None:
    """The panel duplicates the market symbols the lake exports already."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    with Store.open(uri, writer=True) as store:
        writer = Writer(store)
        for market in ("HE", "LE"):
            writer.record(market, [0, 1])
        assert refresh_cot_panel(store)
        written = export_store_due(store, tmp_path / "lake", date(2026, 12, 1))
    assert {path.parent.name for path in written} == {"HE.cot", "LE.cot"}
    gc.collect()


def test_a_writer_killed_between_an_append_and_the_panel_rewrite_leaves_it_stale_not_wrong(tmp_path: Path) -> None:
    """SIGKILL after LE's append of week 3 (the panel holds weeks 0-2, HE appended week 3 too): Readers take ZC from
    the panel and HE and LE from their symbols, equal to the per-market answers; the next maintenance run makes the
    panel current again."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("cot_panel_writer.py")), uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        for line in child.stdout:
            if line.split() == ["recorded", "3", "LE"]:
                break
            child.stdin.write("go\n")
            child.stdin.flush()
    finally:
        child.kill()
        child.wait(timeout=30)
    times = _times(5)
    markets = ["HE", "LE", "ZC"]
    with _fresh_versions():
        answers, read = _panel_answers(uri, markets, times)
        assert read == {"HE", "LE"}  # both appended week 3 since the panel's rewrite
        assert answers[1]["as_of"].tolist() == [FIRST + pd.Timedelta(weeks=w) for w in (3, 3, 2)]
        with Store.open(uri, writer=True) as store:
            Maintenance(store, MaintenancePolicy(compact_every=1, prune_grace_s=0)).run_once()
            repaired, read = _panel_answers(uri, markets, times)
            assert read == set()
            _assert_same(answers, repaired)
            _assert_same(answers, _per_market_answers(store, uri, markets, times))
    gc.collect()


def test_a_reader_kept_across_writes_and_rewrites_answers_what_a_fresh_one_does(
    tmp_path: Path, fresh_versions: None
) -> None:
    """A backtest's Reader: after one market's new week (panel rewritten or not) it keeps the other markets from
    the panel it holds and reads that market alone; after every market moved it reads the new panel."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    markets = ["HE", "LE", "ZC"]
    times = _times(9)[::3]
    with Store.open(uri, writer=True) as store, Reader(uri) as kept:
        writer = Writer(store)
        for market in markets:
            writer.record(market, list(range(6)))
        refresh_cot_panel(store)
        narrow = kept.cot_panel(markets, times[-1], columns=["as_of"])
        first = kept._cot_panel
        assert first is not None and narrow["as_of"].notna().all()

        def same_as_fresh() -> None:
            fresh, _ = _panel_answers(uri, markets, times)
            _assert_same([kept.cot_panel(markets, at) for at in times], fresh[: len(times)])

        writer.record("LE", [6])
        same_as_fresh()
        assert set(kept._cot_cache) == {cot_symbol("LE")}  # HE and ZC from the panel first read (with all columns)
        refresh_cot_panel(store)
        same_as_fresh()
        assert set(kept._cot_cache) == {cot_symbol("LE")}  # one market moved: the panel is not read again
        for market in markets:
            writer.record(market, [7], salt=2)
        refresh_cot_panel(store)
        same_as_fresh()
        assert kept._cot_panel is not first and kept._cot_panel is not None
        assert kept._cot_panel.holds(cot_symbol("HE"), kept._cot_versions()[cot_symbol("HE")])
    gc.collect()


def test_a_market_whose_columns_differ_is_left_out_of_the_panel(tmp_path: Path, fresh_versions: None) -> None:
    """The panel's rows of a market must be exactly its symbol's: one with another schema is left out, and an answer
    that would mix it with panel rows is picked from the symbols (Arrow's promotion of the missing columns defines
    it); a text NaN from the panel is None, as a read of the symbol gives it."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    markets = ["HE", "LE", "ZC"]
    times = _times(6)
    with Store.open(uri, writer=True) as store:
        writer = Writer(store)
        for market in ("HE", "LE"):
            writer.record(market, [0, 1, 2])
        weeks = [FIRST + pd.Timedelta(weeks=w) for w in (3, 4)]
        blank = pd.DataFrame({"as_of": weeks, "open_interest_all": 1.0, "m_money_long_all": 2.0, "code": [np.nan, "x"]})
        he = BitemporalTable(store.library(COT), cot_symbol("HE"))
        released = pd.Series([w + RELEASE for w in weeks])
        he.record(blank, value_columns=VALUES, available_at=released, ingested_at=writer.ingested)
        odd = pd.DataFrame({"as_of": [FIRST], "open_interest_all": [1], "extra": ["x"]})  # an int, one more column
        table = BitemporalTable(store.library(COT), cot_symbol("ZC"))
        table.record(odd, value_columns=["open_interest_all", "extra"], available_at=FIRST + RELEASE, ingested_at=FIRST)
        assert refresh_cot_panel(store)
        assert not refresh_cot_panel(store)  # current, though ZC is not in it
        mixed, read = _panel_answers(uri, markets, times)
        assert read == set(markets)
        assert mixed[1].loc["ZC", "extra"] == "x"
        from_panel, read = _panel_answers(uri, ["HE", "LE"], times)
        assert read == set()
        assert [from_panel[i].loc["HE", "code"] for i in (1, 15)] == ["x", None]  # after week 4's, week 3's release
        _assert_same(mixed, _per_market_answers(store, uri, markets, times))
        _assert_same(from_panel, _per_market_answers(store, uri, ["HE", "LE"], times))
    gc.collect()


def test_a_compaction_re_points_the_panel_without_copying_its_rows(tmp_path: Path, fresh_versions: None) -> None:
    """Maintenance merges each market's appends (a new version, the same rows): the panel gets the new versions in
    a metadata-only version sharing its data, and Readers still take every market from it; a market that moved
    otherwise makes it rebuild."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    markets = ["HE", "LE"]
    times = _times(8)[::2]
    with Store.open(uri, writer=True) as store:
        library = store.library(COT)
        writer = Writer(store)
        for week in range(7):
            for market in markets:
                writer.record(market, [week])  # one segment each: merged by the next maintenance run
        refresh_cot_panel(store)
        built = library.read_metadata(COT_PANEL).version
        before = {s: library.read_metadata(s).version for s in map(cot_symbol, markets)}
        report = Maintenance(store, MaintenancePolicy(compact_every=2, prune_grace_s=3600)).run_once()
        assert report.compacted == 2 and {s: library.read_metadata(s).version for s in before} != before
        assert library.read_metadata(COT_PANEL).version == built + 1
        assert set(library._nvs.read_index(COT_PANEL)["version_id"]) == {built}  # the rows written at `built`
        answers, read = _panel_answers(uri, markets, times)
        assert read == set()
        assert not refresh_cot_panel(store)
        Maintenance(store, MaintenancePolicy(compact_every=2, prune_grace_s=0)).run_once()
        pruned, read = _panel_answers(uri, markets, times)  # the version that wrote the rows is pruned, not its rows
        assert read == set() and built not in {key.version for key in library.list_versions(COT_PANEL)}
        _assert_same(pruned, answers)

        writer.record("HE", [7])
        Maintenance(store, MaintenancePolicy(compact_every=2, prune_grace_s=3600)).run_once()
        assert set(library._nvs.read_index(COT_PANEL)["version_id"]) != {built}  # HE appended: rebuilt
        _assert_same(answers[:1], _per_market_answers(store, uri, markets, times)[:1])  # before week 7 was known
    gc.collect()
