"""Reader: point-in-time reads over a real LMDB store written through the storage API, and reads while another
process writes."""

from __future__ import annotations

import gc
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from arcticdb.version_store.library import Library
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydra_daemon.reader import Reader, ReaderArgumentError
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy
from hydra_daemon.store.symbols import COT, FEATURES, FUTURES, OPTIONS, chain_symbol, cot_symbol, data_symbol
from hydra_daemon.store.writer import StreamWriter

UTC = UTC
T0 = pd.Timestamp("2024-03-04 14:00", tz="UTC")
COT_AS_OF = pd.Timestamp("2021-01-05", tz="UTC")
COT_RELEASE = pd.Timestamp("2021-01-08 20:30", tz="UTC")
COT_REVISED = pd.Timestamp("2021-01-15 20:30", tz="UTC")
ONE_NS = pd.Timedelta(1, "ns")


def _uri(tmp_path: Path) -> str:
    return f"lmdb://{tmp_path / 'arctic'}?map_size=1GB"


def _bars(start: pd.Timestamp, count: int, first_close: float = 0.0) -> pd.DataFrame:
    index = pd.date_range(start, periods=count, freq="min", tz="UTC", name="ts_event")
    return pd.DataFrame(
        {
            "instrument_id": np.full(count, 42, dtype="uint32"),
            "close": first_close + np.arange(count, dtype="float64"),
            "ts_recv": index + pd.Timedelta(milliseconds=3),
        },
        index=index,
    )


def _chain(at: pd.Timestamp, iv: float) -> pd.DataFrame:
    frame = pd.DataFrame({"instrument_id": [1, 2, 3], "strike": [80.0, 85.0, 90.0], "iv": [iv, iv + 0.01, iv + 0.02]})
    frame["expiration"] = pd.Timestamp("2024-06-14 18:00", tz="UTC")
    frame.index = pd.DatetimeIndex([at] * 3, name="snapshot_time")
    return frame


def _populate(store_uri: str) -> None:
    """Write futures bars, chain snapshots, a revised COT report and a revised feature through the storage API."""
    with Store.open(store_uri, writer=True) as store:
        writer = StreamWriter(store)
        writer.add(FUTURES, data_symbol("HE", "ohlcv-1m"), _bars(T0, 10), key_columns=["instrument_id"])
        for at, iv in ((T0, 0.30), (T0 + pd.Timedelta(minutes=1), 0.31), (T0 + pd.Timedelta(days=20), 0.40)):
            writer.add(OPTIONS, chain_symbol("HE"), _chain(at, iv), key_columns=["instrument_id"])
            writer.flush_all()

        cot = BitemporalTable(store.library(COT), cot_symbol("HE"))
        reports = pd.DataFrame({"as_of": [COT_AS_OF], "open_interest_all": [250_000.0]})
        for value, available_at, ingested_at in (
            (250_000.0, COT_RELEASE, "2021-01-09"),
            (251_000.0, COT_REVISED, "2021-01-16"),
        ):
            cot.record(
                reports.assign(open_interest_all=value),
                value_columns=["open_interest_all"],
                available_at=available_at,
                ingested_at=pd.Timestamp(ingested_at, tz="UTC"),
            )

        features = FeatureStore(store)
        for value, available_at, ingested_at in (
            (1_000.0, COT_RELEASE, "2021-01-09"),
            (1_500.0, COT_REVISED, "2021-01-16"),
        ):
            feature = pd.DataFrame({"as_of": [COT_AS_OF], "available_at": [available_at], "value": [value]})
            features.write_feature(
                "HE", "cot_managed_money_net", feature, ingested_at=pd.Timestamp(ingested_at, tz="UTC")
            )


def _release_arctic_handles() -> None:
    """Drop this process's closed ArcticDB objects so the next Store opens the LMDB path afresh (one per process)."""
    gc.collect()


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store populated by a writer that has since closed (like a researcher's process next to the daemon)."""
    store_uri = _uri(tmp_path_factory.mktemp("reader"))
    _populate(store_uri)
    _release_arctic_handles()
    return store_uri


def test_futures_bars_are_the_inclusive_range_with_utc_columns(uri: str) -> None:
    with Reader(uri) as reader:
        bars = reader.futures_bars("HE", T0 + pd.Timedelta(minutes=2), T0 + pd.Timedelta(minutes=5), "ohlcv-1m")
    assert bars["close"].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert str(bars.index.dtype) == "datetime64[ns, UTC]"
    assert str(bars["ts_recv"].dtype) == "datetime64[ns, UTC]"
    assert (bars["ts_recv"] - bars.index == pd.Timedelta(milliseconds=3)).all()


@pytest.mark.parametrize(
    ("at", "expected_iv"),
    [
        (T0 - ONE_NS, None),
        (T0, 0.30),
        (T0 + pd.Timedelta(seconds=59), 0.30),
        (T0 + pd.Timedelta(minutes=1), 0.31),
        (T0 + pd.Timedelta(days=15), 0.31),
        (T0 + pd.Timedelta(days=400), 0.40),
    ],
)
def test_options_chain_is_the_latest_snapshot_at_or_before(
    uri: str, at: pd.Timestamp, expected_iv: float | None
) -> None:
    with Reader(uri) as reader:
        chain = reader.options_chain("HE", at)
    if expected_iv is None:
        assert chain.empty
        return
    assert chain["iv"].round(6).tolist() == [expected_iv, round(expected_iv + 0.01, 6), round(expected_iv + 0.02, 6)]
    assert chain.index.nunique() == 1
    assert chain.index[0] <= at
    assert str(chain["expiration"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (COT_RELEASE - ONE_NS, None),
        (COT_RELEASE, (0, 250_000.0)),
        (COT_REVISED - ONE_NS, (0, 250_000.0)),
        (COT_REVISED, (1, 251_000.0)),
        (COT_REVISED + pd.Timedelta(days=365), (1, 251_000.0)),
    ],
)
def test_cot_is_point_in_time_around_a_revision(uri: str, at: pd.Timestamp, expected: tuple[int, float] | None) -> None:
    with Reader(uri) as reader:
        report = reader.cot("HE", at)
    if expected is None:
        assert report.empty
        return
    assert len(report) == 1
    assert (int(report["revision"].iloc[0]), float(report["open_interest_all"].iloc[0])) == expected
    assert (report["available_at"] <= at).all()
    for column in ("as_of", "available_at", "ingested_at"):
        assert str(report[column].dtype) == "datetime64[ns, UTC]"


def test_cot_history_holds_every_revision(uri: str) -> None:
    with Reader(uri) as reader:
        history = reader.cot_history("HE")
    assert history["revision"].tolist() == [0, 1]
    assert history["available_at"].tolist() == [COT_RELEASE, COT_REVISED]
    assert str(history["as_of"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize(
    ("at", "expected"),
    [(COT_RELEASE - ONE_NS, None), (COT_RELEASE, 1_000.0), (COT_REVISED - ONE_NS, 1_000.0), (COT_REVISED, 1_500.0)],
)
def test_feature_is_point_in_time_around_a_revision(uri: str, at: pd.Timestamp, expected: float | None) -> None:
    with Reader(uri) as reader:
        values = reader.feature("HE", "cot_managed_money_net", at)
    assert values["value"].tolist() == ([] if expected is None else [expected])
    assert str(values["available_at"].dtype) == "datetime64[ns, UTC]"


def test_any_time_zone_is_accepted_and_converted_to_utc(uri: str) -> None:
    chicago = COT_REVISED.tz_convert(ZoneInfo("America/Chicago")).to_pydatetime()
    with Reader(uri) as reader:
        assert reader.cot("HE", chicago)["revision"].tolist() == [1]


def test_naive_times_and_unknown_symbols_are_rejected_clearly(uri: str) -> None:
    with Reader(uri) as reader:
        with pytest.raises(
            ValueError, match=r"Reader\.cot: at=2021-01-09 00:00:00 is timezone-naive; pass a UTC-aware"
        ):
            reader.cot("HE", datetime(2021, 1, 9))
        with pytest.raises(ValueError, match=r"Reader\.futures_bars: start=.* is timezone-naive"):
            reader.futures_bars("HE", datetime(2024, 3, 4), datetime(2024, 3, 5, tzinfo=UTC), "ohlcv-1m")
        with pytest.raises(ValueError, match=r"end .* is before start"):
            reader.futures_bars("HE", T0, T0 - timedelta(days=1), "ohlcv-1m")
        with pytest.raises(LookupError, match=r"no symbol 'LE\.ohlcv-1d' in library 'futures'"):
            reader.futures_bars("LE", T0, T0)
        with pytest.raises(LookupError, match=r"no symbol 'HE\.atm_iv' in library 'features'"):
            reader.feature("HE", "atm_iv", T0)


def test_reader_opens_while_the_writer_lease_is_held(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    with Store.open(uri, writer=True) as store:
        writer = StreamWriter(store)
        writer.add(FUTURES, data_symbol("HE", "ohlcv-1d"), _bars(T0, 3), ["instrument_id"])
        writer.flush_all()
        with Reader(uri) as reader:
            assert reader.futures_bars("HE", T0, T0 + timedelta(hours=1))["close"].tolist() == [0.0, 1.0, 2.0]


BATCH = 10
WRITER_SCRIPT = """
import select, sys
import numpy as np, pandas as pd, structlog
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.writer import StreamWriter

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
BATCH = 10
start = pd.Timestamp("2024-03-04 14:00", tz="UTC")
with Store.open(sys.argv[1], writer=True) as store:
    writer = StreamWriter(store)
    batches = 0
    while True:
        index = pd.date_range(start + pd.Timedelta(minutes=batches * BATCH), periods=BATCH, freq="min", tz="UTC",
                              name="ts_event")
        frame = pd.DataFrame({"instrument_id": np.full(BATCH, 42, dtype="uint32"),
                              "close": batches * BATCH + np.arange(BATCH, dtype="float64"),
                              "ts_recv": index}, index=index)
        writer.add("futures", "HE.ohlcv-1m", frame, ["instrument_id"])
        writer.flush_all()
        batches += 1
        if batches == 1:
            print("ready", flush=True)
        if batches >= 60 and select.select([sys.stdin], [], [], 0)[0]:
            break
print(f"done {batches * BATCH}", flush=True)
"""


def test_reader_reads_consistent_prefixes_while_another_process_appends(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    Store.open(uri, writer=True).close()
    _release_arctic_handles()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "ready"
        end = T0 + pd.Timedelta(days=365)
        counts = []
        with Reader(uri) as reader:
            for _ in range(30):
                bars = reader.futures_bars("HE", T0, end, "ohlcv-1m")
                counts.append(len(bars))
                assert len(bars) % BATCH == 0
                assert bars["close"].tolist() == [float(i) for i in range(len(bars))]
                assert (bars["ts_recv"] == bars.index).all()
            writer.stdin.write("stop\n")
            writer.stdin.flush()
            done = writer.stdout.readline().split()
        del reader
        _release_arctic_handles()
        assert writer.wait() == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    assert done[0] == "done"
    assert counts == sorted(counts) and counts[0] >= BATCH
    with Reader(uri) as reader:
        final = reader.futures_bars("HE", T0, end, "ohlcv-1m")
    assert len(final) == int(done[1])
    assert final["close"].tolist() == [float(i) for i in range(int(done[1]))]


def test_history_windows_and_the_cot_panel_match_the_full_point_in_time_reads(tmp_path: Path) -> None:
    """`start`/`end` select `as_of` inside ArcticDB; the result equals filtering the full PIT read; `cot_panel` holds
    each market's newest report of its `cot` read."""
    uri = _uri(tmp_path)
    weeks = [COT_AS_OF + pd.Timedelta(weeks=w) for w in range(8)]
    with Store.open(uri, writer=True) as store:
        for number, market in enumerate(("HE", "LE")):
            table = BitemporalTable(store.library(COT), cot_symbol(market))
            for w, as_of in enumerate(weeks):
                release = COT_RELEASE + pd.Timedelta(weeks=w)
                rows = pd.DataFrame({"as_of": [as_of], "open_interest_all": [float(number * 100 + w)]})
                table.record(rows, value_columns=["open_interest_all"], available_at=release, ingested_at=release)
            frame = pd.DataFrame({"as_of": weeks, "available_at": weeks, "value": np.arange(8.0) + number})
            FeatureStore(store).write_feature(market, "total_oi", frame, ingested_at=weeks[-1])
    _release_arctic_handles()
    at = COT_RELEASE + pd.Timedelta(weeks=5)
    start, end = weeks[2], weeks[6]
    with Reader(uri) as reader:
        full = reader.cot("HE", at)
        window = reader.cot("HE", at, start=start, end=end)
        expected = full[(full["as_of"] >= start) & (full["as_of"] <= end)].reset_index(drop=True)
        pd.testing.assert_frame_equal(window, expected)
        assert window["as_of"].tolist() == weeks[2:6]  # week 6 was not released by `at`
        panel = reader.cot_panel(["HE", "LE"], at)
        assert panel.index.tolist() == ["HE", "LE"]
        for market in ("HE", "LE"):
            latest = reader.cot(market, at).iloc[-1]  # the newest as_of known at `at`: one row per market
            pd.testing.assert_series_equal(panel.loc[market], latest, check_names=False)
        feature = reader.feature("LE", "total_oi", weeks[-1], start=weeks[3], end=weeks[4])
        assert feature["value"].tolist() == [4.0, 5.0]
        with pytest.raises(ValueError, match=r"end .* is before start"):
            reader.feature("LE", "total_oi", at, start=end, end=start)


_zones = st.sampled_from(
    [UTC, ZoneInfo("America/Chicago"), timezone(timedelta(hours=14)), timezone(-timedelta(hours=23))]
)
_times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),  # naive
    st.sampled_from([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC), None, "2024-01-01"]),
)
_names = st.one_of(
    st.sampled_from(["HE", "LE", "he", "HE.x", "H E", "HE\x00", "a" * 33, "a" * 500, "É", ""]),
    st.text(max_size=40),
    st.integers(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["futures_bars", "options_chain", "cot", "feature", "cot_panel"]),
    name=_names,
    a=_times,
    b=_times,
)
def test_any_argument_is_an_answer_or_one_clear_error(uri: str, method: str, name: Any, a: Any, b: Any) -> None:
    """Whatever a research notebook passes, a Reader method answers or raises ReaderArgumentError (bad argument)
    or LookupError (a valid name the store lacks): never ArcticDB's InternalException, OverflowError or TypeError."""
    calls = {
        "futures_bars": lambda r: r.futures_bars(name, a, b, "ohlcv-1m"),
        "options_chain": lambda r: r.options_chain(name, a),
        "cot": lambda r: r.cot(name, a, start=b),
        "feature": lambda r: r.feature("HE", name, a, end=b),
        "cot_panel": lambda r: r.cot_panel([name, "HE"], a),
    }
    with Reader(uri) as reader:
        try:
            answer = calls[method](reader)
        except ReaderArgumentError as exc:
            assert str(exc).startswith(f"Reader.{method}: ")
            return
        except LookupError as exc:
            assert "no symbol" in str(exc)
            return
    assert isinstance(answer, pd.DataFrame)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.cot("a" * 500, T0), r"Reader\.cot: invalid market root 'aaaa"),
        (lambda r: r.cot("HE", datetime(1, 1, 1, tzinfo=UTC)), r"Reader\.cot: at=0001-01-01 .* outside the times"),
        (lambda r: r.cot("HE", datetime(9999, 12, 31, tzinfo=UTC)), r"outside the times the store can hold"),
        (lambda r: r.cot("HE", datetime(2021, 1, 9)), r"Reader\.cot: at=2021-01-09 00:00:00 is timezone-naive"),
        (lambda r: r.cot("HE", "2021-01-09"), r"Reader\.cot: at must be a datetime, got str"),
        (lambda r: r.cot_panel("HE", T0), r"markets must be a list of names"),
        (lambda r: r.futures_bars("HE", T0, T0, "ohlcv-1m; drop"), r"invalid Databento schema"),
    ],
)
def test_hostile_arguments_are_reader_argument_errors(uri: str, call: Any, message: str) -> None:
    with Reader(uri) as reader, pytest.raises(ReaderArgumentError, match=message):
        call(reader)


def _six_days_in_two_writes() -> tuple[list[pd.Timestamp], pd.DataFrame, pd.DataFrame]:
    """Six daily values of feature HE.total_oi, as the days and the two frames written (days 0-2, then 3-5)."""
    days = [T0 + pd.Timedelta(days=d) for d in range(6)]
    first = pd.DataFrame({"as_of": days[:3], "available_at": days[:3], "value": [1.0, 2.0, 3.0]})
    later = pd.DataFrame({"as_of": days[3:], "available_at": days[3:], "value": [4.0, 5.0, 6.0]})
    return days, first, later


def _supersede_and_prune(store: Store, later: pd.DataFrame, at: pd.Timestamp, symbol: str, version: object) -> None:
    """Append `later` to HE.total_oi, then merge and prune with no grace, as the daemon would: `version` is gone."""
    FeatureStore(store).write_feature("HE", "total_oi", later, ingested_at=at)
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=1, prune_grace_s=0.0))
    maintenance.run_once()
    maintenance.run_once()
    assert version not in [key.version for key in store.library(FEATURES).list_versions(symbol)]


def test_a_read_whose_version_the_daemon_pruned_under_it_is_done_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that took longer than the grace window loses the version it picked (here: right after picking it, the
    writer appends, merges and prunes with no grace): it is read once more, from the version that replaced it."""
    uri = _uri(tmp_path)
    days, first, later = _six_days_in_two_writes()
    picked: list[object] = []
    with Store.open(uri, writer=True) as store, Reader(uri) as reader:
        features = FeatureStore(store)
        features.write_feature("HE", "total_oi", first, ingested_at=days[2])
        original = BitemporalTable.where_from

        def where_from_then_pruned(table: BitemporalTable, start: Any, as_of: Any = None) -> Any:
            version, since = original(table, start, as_of)
            if not picked:
                picked.append(version)
                _supersede_and_prune(store, later, days[5], table.symbol, version)
            return version, since

        monkeypatch.setattr(BitemporalTable, "where_from", where_from_then_pruned)
        frame = reader.feature("HE", "total_oi", days[5], start=days[0])
    assert len(picked) == 1
    assert frame["value"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_a_batched_read_whose_version_the_daemon_pruned_under_it_is_done_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a batched read (`feature_panel`, and likewise `cot_panel` and a `records` window of several days):
    ArcticDB reports the lost version as a `DataError` entry, not an exception, and it used to surface as a
    LookupError instead of being read once more."""
    uri = _uri(tmp_path)
    days, first, later = _six_days_in_two_writes()
    picked: list[object] = []
    with Store.open(uri, writer=True) as store, Reader(uri) as reader:
        features = FeatureStore(store)
        features.write_feature("HE", "total_oi", first, ingested_at=days[2])
        original = BitemporalTable.start_of

        def start_of_then_pruned(table: BitemporalTable, item: Any, start: Any, as_of: Any) -> Any:
            version, since = original(table, item, start, as_of)
            if not picked:
                picked.append(version)
                _supersede_and_prune(store, later, days[5], table.symbol, version)
            return version, since

        monkeypatch.setattr(BitemporalTable, "start_of", start_of_then_pruned)
        panel = reader.feature_panel(["HE"], ["total_oi"], days[5])
    assert len(picked) == 1
    assert panel.loc["HE", "total_oi"] == 6.0


def test_reads_look_their_symbols_up_by_name_not_in_a_listing_of_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The options library gains a quote partition per market every day (a thousand symbols a year for two
    markets, 2 ms per listing at 3,000): a read finds its symbol by name, and lists only for a window holding no
    partition of a stored stream (the stream's existence then needs a listing)."""
    store_uri = _uri(tmp_path)
    _populate(store_uri)
    with Store.open(store_uri, writer=True) as store:
        writer = StreamWriter(store)
        for day in range(3):
            quotes = _bars(T0 + pd.Timedelta(days=day), 5)[["instrument_id", "close"]]
            writer.add(OPTIONS, data_symbol("HE", "mbp-1"), quotes, key_columns=["instrument_id"])
            writer.flush_all()
    _release_arctic_handles()
    listings: list[str] = []
    real = Library.list_symbols

    def counted(library: Library, *args: Any, **kwargs: Any) -> Any:
        listings.append(library.name)
        return real(library, *args, **kwargs)

    monkeypatch.setattr(Library, "list_symbols", counted)
    day2 = T0 + pd.Timedelta(days=2)
    with Reader(store_uri) as reader:
        quotes = reader.records(OPTIONS, "HE", "mbp-1", day2, day2 + pd.Timedelta(minutes=4))
        reader.options_chain("HE", T0 + pd.Timedelta(days=30))
        reader.cot("HE", COT_REVISED)
        reader.feature("HE", "cot_managed_money_net", COT_REVISED)
        reader.futures_bars("HE", T0, T0 + pd.Timedelta(minutes=3), "ohlcv-1m")
        assert len(quotes) == 5 and listings == []
        assert reader.records(OPTIONS, "HE", "mbp-1", T0 + pd.Timedelta(days=9), T0 + pd.Timedelta(days=10)).empty
        assert listings  # no partition in the window: whether the stream is stored at all takes a listing
        with pytest.raises(LookupError, match=r"no symbol 'LE\.mbp-1' in library 'options'"):
            reader.records(OPTIONS, "LE", "mbp-1", day2, day2)


def test_the_settlement_panel_picks_the_nearest_contract_month_not_the_first_symbol(tmp_path: Path) -> None:
    """On 2025-11-20 HE's listed contracts include HEZ5 (the front), HEG6 and HEJ6 and a spread: alphabetically
    HEG6 comes first, and a backtest asking for the settlement would get February's price."""
    uri = _uri(tmp_path)
    day = pd.Timestamp("2025-11-20", tz="UTC")
    symbols = ["HEG6", "HEJ6", "HEZ5-HEG6", "HEZ5"]
    rows = pd.DataFrame(
        {"as_of": day, "available_at": day + pd.Timedelta(days=1), "value": [2.0, 3.0, 4.0, 1.0], "symbol": symbols}
    )
    with Store.open(uri, writer=True) as store:
        FeatureStore(store).write_feature("HE", "settlement", rows, ingested_at=day + pd.Timedelta(days=1))
    with Reader(uri) as reader:
        panel = reader.feature_panel(["HE"], ["settlement"], day + pd.Timedelta(days=2))
    assert panel.loc["HE", "settlement"] == 1.0
