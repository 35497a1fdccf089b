"""StreamWriter on real ArcticDB (LMDB): UTC enforcement, dtype normalisation, micro-batching, exactly-once."""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydra_daemon.store.arctic import Store, StoreReadOnlyError
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.partitions import read_stream, stream_symbols
from hydra_daemon.store.symbols import FUTURES, is_partitioned, partition_symbol
from hydra_daemon.store.writer import FlushError, StreamWriter, Watermark

SYMBOL = "HE.trades"  # stored in UTC day partitions: these tests' rows are all on BASE's day
BASE = pd.Timestamp("2024-03-01 14:30", tz="UTC")
PARTITION = partition_symbol(SYMBOL, BASE.date())


def _trades(
    seconds: list[int], keys: list[int] | None = None, start: int = 0, base: pd.Timestamp = BASE
) -> pd.DataFrame:
    index = pd.DatetimeIndex([base + pd.Timedelta(seconds=s) for s in seconds], name="ts_event")
    keys = keys if keys is not None else list(range(start, start + len(seconds)))
    return pd.DataFrame(
        {"sequence": np.array(keys, dtype="int64"), "price": np.arange(len(seconds)) * 0.25}, index=index
    )


def _stored(store: Store, symbol: str = SYMBOL) -> pd.DataFrame:
    return restore_utc(read_stream(store.library(FUTURES), symbol).data)


def test_naive_index_rejected_naming_the_symbol(store: Store) -> None:
    writer = StreamWriter(store)
    naive = _trades([0, 1]).tz_localize(None)
    with pytest.raises(ValueError, match=f"futures/{SYMBOL}: index is timezone-naive"):
        writer.add(FUTURES, SYMBOL, naive, ["sequence"])
    assert writer.pending_rows() == 0


def test_non_utc_index_rejected_naming_the_symbol(store: Store) -> None:
    writer = StreamWriter(store)
    chicago = _trades([0, 1]).tz_convert("America/Chicago")
    with pytest.raises(ValueError, match=f"futures/{SYMBOL}: index time zone is America/Chicago"):
        writer.add(FUTURES, SYMBOL, chicago, ["sequence"])


def test_naive_datetime_column_rejected_naming_the_symbol(store: Store) -> None:
    frame = _trades([0, 1]).assign(ts_recv=pd.Timestamp("2024-03-01 14:30"))
    with pytest.raises(ValueError, match=rf"futures/{SYMBOL}: datetime columns \['ts_recv'\] are timezone-naive"):
        StreamWriter(store).add(FUTURES, SYMBOL, frame, ["sequence"])


def test_tz_columns_stored_as_utc_and_unsorted_input_sorted_stably(store: Store) -> None:
    frame = _trades([2, 0, 1]).assign(ts_recv=pd.Timestamp("2024-03-01 08:30", tz="America/Chicago"))
    writer = StreamWriter(store)
    assert writer.add(FUTURES, SYMBOL, frame, ["sequence"]) == 3
    writer.flush_all()
    stored = _stored(store)
    assert list(stored["sequence"]) == [1, 2, 0]
    assert (stored["ts_recv"] == pd.Timestamp("2024-03-01 14:30", tz="UTC")).all()
    assert str(stored.index.tz) == "UTC"


def test_read_only_store_cannot_write(lmdb_uri: str) -> None:
    with Store.open(lmdb_uri, writer=False) as reader, pytest.raises(StoreReadOnlyError):
        StreamWriter(reader)


def test_dtypes_arctic_cannot_append_are_normalised(store: Store) -> None:
    writer = StreamWriter(store, flush_rows=1)
    first = _trades([0, 1, 2]).assign(
        side=pd.Categorical(["A", "B", None]),
        size=pd.array([1, 2, 3], dtype="Int64"),
        venue=pd.array(["X", None, "Z"], dtype="string[pyarrow]"),
        flags=pd.array([1, None, 3], dtype="int64[pyarrow]"),
    )
    second = _trades([3, 4], start=3).assign(
        side=pd.Categorical(["B", "B"]),
        size=pd.array([None, 5], dtype="Int64"),
        venue=pd.array(["Y", "Y"], dtype=pd.ArrowDtype(__import__("pyarrow").string())),
        flags=pd.array([4, 5], dtype="int64[pyarrow]"),
    )
    writer.add(FUTURES, SYMBOL, first, ["sequence"])
    writer.flush_due()
    writer.add(FUTURES, SYMBOL, second, ["sequence"])
    assert len(writer.flush_due()) == 1
    stored = _stored(store)
    assert list(stored["side"]) == ["A", "B", None, "B", "B"]
    np.testing.assert_array_equal(stored["size"].to_numpy(), [1, 2, 3, np.nan, 5])
    assert list(stored["venue"]) == ["X", None, "Z", "Y", "Y"]
    np.testing.assert_array_equal(stored["flags"].to_numpy(), [1, np.nan, 3, 4, 5])


def test_micro_batches_flush_on_rows_not_per_add(store: Store) -> None:
    writer = StreamWriter(store, flush_rows=5, flush_interval_s=3600)
    for second in range(4):
        writer.add(FUTURES, SYMBOL, _trades([second], start=second), ["sequence"])
        assert writer.flush_due() == []
    writer.add(FUTURES, SYMBOL, _trades([4], start=4), ["sequence"])
    commits = writer.flush_due()
    assert [(c.symbol, c.rows) for c in commits] == [(SYMBOL, 5)]
    assert len(store.library(FUTURES).list_versions(PARTITION)) == 1
    assert writer.pending_rows() == 0


def test_interval_flush(store: Store) -> None:
    writer = StreamWriter(store, flush_rows=1_000, flush_interval_s=0)
    writer.add(FUTURES, SYMBOL, _trades([0]), ["sequence"])
    assert [c.rows for c in writer.flush_due()] == [1]


def test_watermark_commits_with_the_data(store: Store) -> None:
    writer = StreamWriter(store)
    writer.add(FUTURES, SYMBOL, _trades([0, 1, 1]), ["sequence"])
    (commit,) = writer.flush_all()
    expected = Watermark((BASE + pd.Timedelta(seconds=1)).value, {"[1]": 1, "[2]": 1})
    assert commit.watermark == expected
    assert Watermark.from_metadata(store.library(FUTURES).read(PARTITION).metadata) == expected
    assert StreamWriter(store).watermark(FUTURES, SYMBOL) == expected


def test_redelivered_rows_are_not_duplicated(store: Store) -> None:
    writer = StreamWriter(store)
    assert writer.add(FUTURES, SYMBOL, _trades(list(range(10))), ["sequence"]) == 10
    writer.flush_all()
    assert writer.add(FUTURES, SYMBOL, _trades(list(range(5, 15)), start=5), ["sequence"]) == 5
    assert writer.add(FUTURES, SYMBOL, _trades(list(range(12, 15)), start=12), ["sequence"]) == 0  # pending
    writer.flush_all()
    assert list(_stored(store)["sequence"]) == list(range(15))


def test_restart_resumes_from_committed_watermark(lmdb_uri: str) -> None:
    with Store.open(lmdb_uri, writer=True) as store:
        writer = StreamWriter(store)
        writer.add(FUTURES, SYMBOL, _trades([0, 1, 2, 2], keys=[0, 1, 2, 3]), ["sequence"])
        writer.flush_all()
        writer.add(FUTURES, SYMBOL, _trades([3, 4], keys=[4, 5]), ["sequence"])  # lost in the "crash"
    with Store.open(lmdb_uri, writer=True) as store:
        writer = StreamWriter(store)
        assert writer.watermark(FUTURES, SYMBOL) == Watermark(
            (BASE + pd.Timedelta(seconds=2)).value, {"[2]": 1, "[3]": 1}
        )
        replay = _trades([2, 2, 3, 4], keys=[2, 3, 4, 5])  # upstream replays from the watermark time
        assert writer.add(FUTURES, SYMBOL, replay, ["sequence"]) == 2
        writer.flush_all()
        assert list(_stored(store)["sequence"]) == [0, 1, 2, 3, 4, 5]


def test_boundary_rows_with_equal_timestamps(store: Store) -> None:
    """Rows sharing the watermark timestamp: replayed ones dropped, unseen ones kept, identical keys counted."""
    writer = StreamWriter(store)
    writer.add(FUTURES, SYMBOL, _trades([0, 5, 5], keys=[7, 1, 1]), ["sequence"])
    writer.flush_all()
    # replay of ts=5: both 1s already stored; a third identical row and a new key 2 at ts=5 are new
    assert writer.add(FUTURES, SYMBOL, _trades([5, 5, 5, 5], keys=[1, 1, 1, 2]), ["sequence"]) == 2
    writer.flush_all()
    restarted = StreamWriter(store)
    assert restarted.add(FUTURES, SYMBOL, _trades([5, 5, 5, 5, 6], keys=[1, 1, 1, 2, 3]), ["sequence"]) == 1
    restarted.flush_all()
    assert list(_stored(store)["sequence"]) == [7, 1, 1, 1, 2, 3]


def test_key_columns_must_exist_and_stay_the_same(store: Store) -> None:
    writer = StreamWriter(store)
    with pytest.raises(ValueError, match=r"key columns \['instrument_id'\] are not in the frame"):
        writer.add(FUTURES, SYMBOL, _trades([0]), ["instrument_id"])
    writer.add(FUTURES, SYMBOL, _trades([0]), ["sequence"])
    with pytest.raises(ValueError, match="differ from"):
        writer.add(FUTURES, SYMBOL, _trades([1]), ["price"])


def test_failed_flush_keeps_rows_and_other_symbols_flush(store: Store) -> None:
    writer = StreamWriter(store)
    clash = _trades([0], keys=[0]).assign(price="not a number")
    store.library(FUTURES).write("HE.bad", clash)
    writer.add(FUTURES, SYMBOL, _trades([0, 1]), ["sequence"])
    writer.add(FUTURES, "HE.bad", _trades([1, 2]), ["sequence"])  # float price onto a string column: append fails
    with pytest.raises(FlushError, match=r"HE\.bad") as failed:
        writer.flush_all()
    assert [c.symbol for c in failed.value.commits] == [SYMBOL]
    assert writer.pending_rows() == 2


def test_watermark_derived_from_data_when_metadata_missing(store: Store) -> None:
    store.library(FUTURES).write(PARTITION, _trades([0, 3, 3], keys=[0, 1, 2]))
    writer = StreamWriter(store)
    assert writer.add(FUTURES, SYMBOL, _trades([3, 3, 4], keys=[1, 2, 3]), ["sequence"]) == 1
    writer.flush_all()
    assert list(_stored(store)["sequence"]) == [0, 1, 2, 3]


# --- property: any redelivery pattern stores each row exactly once -------------------------------------------------

_counter = itertools.count()


@st.composite
def _deliveries(draw: st.DrawFn, unique_keys: bool) -> tuple[list[int], list[int], list[tuple[int, int, str]]]:
    gaps = draw(st.lists(st.integers(0, 2), min_size=1, max_size=40))
    seconds = list(itertools.accumulate(gaps))
    keys = (
        list(range(len(seconds)))
        if unique_keys
        else draw(st.lists(st.integers(0, 2), min_size=len(seconds), max_size=len(seconds)))
    )
    group_starts = [i for i in range(len(seconds)) if i == 0 or seconds[i] != seconds[i - 1]]
    steps: list[tuple[int, int, str]] = []
    delivered = committed = 0
    while delivered < len(seconds):
        if unique_keys:
            start = draw(st.integers(0, delivered))
        else:  # replay from a timestamp: whole groups from a group start at or before what was delivered
            start = draw(st.sampled_from([g for g in group_starts if g <= delivered]))
        end = draw(st.integers(delivered + 1, len(seconds)))
        after = draw(st.sampled_from(["none", "flush", "crash"]))
        steps.append((start, end, after))
        delivered = max(delivered, end)
        if after == "flush":
            committed = delivered
        elif after == "crash":
            delivered = committed
    return seconds, keys, steps


def _run_deliveries(
    store: Store,
    seconds: list[int],
    keys: list[int],
    steps: list[tuple[int, int, str]],
    *,
    schema: str = "prop",
    base: pd.Timestamp = BASE,
) -> None:
    symbol = f"P{next(_counter)}.{schema}"
    stream = _trades(seconds, keys=keys, base=base).assign(row=np.arange(len(seconds)))
    writer = StreamWriter(store, flush_rows=10**9, flush_interval_s=10**9)
    for start, end, after in steps:
        writer.add(FUTURES, symbol, stream.iloc[start:end], ["sequence"])
        if after == "flush":
            writer.flush_all()
        elif after == "crash":
            writer = StreamWriter(store, flush_rows=10**9, flush_interval_s=10**9)  # pending rows are lost
    writer.flush_all()
    stored = _stored(store, symbol)
    assert list(stored["row"]) == list(range(len(seconds)))
    if is_partitioned(symbol):
        days = sorted(set(stream.index.date))
        assert stream_symbols(store.library(FUTURES), symbol) == [partition_symbol(symbol, d) for d in days]
    pd.testing.assert_index_equal(stored.index, stream.index, check_names=False)


@st.composite
def _live_batches(draw: st.DrawFn) -> tuple[list[int], list[int], list[tuple[int, int, str]]]:
    """One live delivery cut into batches anywhere (a timestamp's rows may span batches and be equal in every key
    column), each batch followed by nothing, a flush, or a flush whose append commits but loses its response."""
    seconds = list(itertools.accumulate(draw(st.lists(st.sampled_from([0, 0, 1]), min_size=1, max_size=30))))
    keys = draw(st.lists(st.sampled_from([0, 0, 1]), min_size=len(seconds), max_size=len(seconds)))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(seconds) - 1), max_size=10)) if len(seconds) > 1 else []))
    bounds = [0, *cuts, len(seconds)]
    after = st.sampled_from(["none", "flush", "lost"])
    return seconds, keys, [(start, end, draw(after)) for start, end in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_live_batches())
def test_property_lost_responses_in_a_live_delivery_store_each_row_once(store: Store, data: tuple) -> None:
    seconds, keys, batches = data
    symbol = f"P{next(_counter)}.prop"
    stream = _trades(seconds, keys=keys).assign(row=np.arange(len(seconds)))
    library = store.library(FUTURES)
    real_append, lose = library.append, {"next": False}

    def append(*args: object, **kwargs: object) -> None:
        real_append(*args, **kwargs)
        if lose["next"]:
            lose["next"] = False
            raise ConnectionError("response lost")

    library.append = append  # type: ignore[method-assign]
    try:
        writer = StreamWriter(store, flush_rows=10**9, flush_interval_s=10**9)
        for start, end, after in batches:
            writer.add(FUTURES, symbol, stream.iloc[start:end], ["sequence"], delivery="live")
            if after != "none":
                lose["next"] = after == "lost"
                with contextlib.suppress(FlushError):
                    writer.flush_all()
        lose["next"] = False
        writer.flush_all()
    finally:
        library.append = real_append  # type: ignore[method-assign]
    assert list(_stored(store, symbol)["row"]) == list(range(len(seconds)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_deliveries(unique_keys=False))
def test_property_replayed_timestamps_store_each_row_once(store: Store, data: tuple) -> None:
    _run_deliveries(store, *data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_deliveries(unique_keys=True))
def test_property_overlapping_chunks_with_unique_keys_store_each_row_once(store: Store, data: tuple) -> None:
    _run_deliveries(store, *data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_deliveries(unique_keys=False))
def test_property_day_partitions_across_midnight_store_each_row_once(store: Store, data: tuple) -> None:
    """The same, for a stream stored per UTC day whose rows straddle midnight (flushes become one append per day)."""
    _run_deliveries(store, *data, schema="trades", base=pd.Timestamp("2024-02-29 23:59:50", tz="UTC"))


def test_append_that_committed_but_reported_failure_is_not_repeated(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost response (the append committed, the client saw an error): the retry must not append it again."""
    library = store.library(FUTURES)
    real_append = library.append

    def append_then_lose_response(*args: object, **kwargs: object) -> None:
        real_append(*args, **kwargs)
        raise ConnectionError("response lost")

    writer = StreamWriter(store)
    writer.add(FUTURES, SYMBOL, _trades([0, 1]), ["sequence"])
    monkeypatch.setattr(library, "append", append_then_lose_response)
    with pytest.raises(FlushError, match="response lost"):
        writer.flush_all()
    monkeypatch.undo()
    writer.add(FUTURES, SYMBOL, _trades([1, 2], start=1), ["sequence"])
    commits = writer.flush_all()
    assert [c.rows for c in commits] == [1]
    assert list(_stored(store)["sequence"]) == [0, 1, 2]


def test_a_lost_response_inside_a_timestamp_keeps_the_rows_of_it_that_follow(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One live delivery brings three one-lot trades of one packet (equal in every key column), a flush after each;
    the second append commits but its response is lost. The retry must drop only what that append committed, not
    also count the first trade, which left the buffer before: else the third trade is taken for it and lost."""
    library = store.library(FUTURES)
    real_append = library.append

    def append_then_lose_response(*args: object, **kwargs: object) -> None:
        real_append(*args, **kwargs)
        raise ConnectionError("response lost")

    writer = StreamWriter(store, flush_rows=1)
    trade = {price: _trades([0], keys=[7]).assign(price=price) for price in (1.0, 2.0, 3.0)}
    writer.add(FUTURES, SYMBOL, trade[1.0], ["sequence"], delivery="session-1")
    writer.flush_due()
    writer.add(FUTURES, SYMBOL, trade[2.0], ["sequence"], delivery="session-1")
    monkeypatch.setattr(library, "append", append_then_lose_response)
    with pytest.raises(FlushError, match="response lost"):
        writer.flush_due()
    monkeypatch.undo()
    writer.add(FUTURES, SYMBOL, trade[3.0], ["sequence"], delivery="session-1")
    assert [c.rows for c in writer.flush_all()] == [1]
    assert list(_stored(store)["price"]) == [1.0, 2.0, 3.0]
