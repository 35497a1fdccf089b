"""A live stream cut between two batches inside one timestamp: the rows after the cut are new records, not a
redelivery, even when they equal (in every key column) a row before the cut at that timestamp."""

from __future__ import annotations

import itertools
import threading

import databento_dbn as dbn
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydra_daemon.capture.commit import MarketRecords
from hydra_daemon.databento.decode import SymbolMap
from hydra_daemon.databento.stream_decoder import DecoderFinished, StreamDecoder
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.partitions import read_stream
from hydra_daemon.store.symbols import OPTIONS, data_symbol
from hydra_daemon.store.writer import StreamWriter, Watermark

T0 = pd.Timestamp("2026-11-26T15:00:00Z").value


def _header() -> bytes:
    return dbn.Metadata("GLBX.MDP3", 0, None, dbn.SType.INSTRUMENT_ID, None, [], ts_out=False).encode()  # type: ignore[arg-type]


def _mapping() -> bytes:
    return bytes(dbn.SymbolMappingMsg(0, 7, T0, dbn.SType.PARENT, "HE.OPT", dbn.SType.RAW_SYMBOL, "HEZ6 C90", T0, T0))  # type: ignore[arg-type]


def _trade() -> bytes:
    """One lot traded at 90 in a packet received at T0 (two aggressors in one packet: two such records)."""
    level = dbn.BidAskPair(89_000_000_000, 91_000_000_000, 3, 4)
    return bytes(
        dbn.MBP1Msg(1, 7, T0 - 10, 90_000_000_000, 1, dbn.Action.TRADE, dbn.Side.ASK, 0, T0, sequence=5, levels=level)
    )


class TwoReads:
    """The child's pipe as the decoder sees it: one read ends after the first trade, the second trade arrives in a
    later read (the child flushes its buffer at arbitrary record boundaries)."""

    def __init__(self, first: bytes, second: bytes) -> None:
        self._reads = [first, second]
        self.first_batch_taken = threading.Event()

    def read(self, timeout: float) -> bytes | None:
        if len(self._reads) == 2:
            return self._reads.pop(0)
        if self._reads:
            if not self.first_batch_taken.wait(timeout):
                return None
            return self._reads.pop(0)
        return b""


def test_identical_records_sharing_a_timestamp_split_across_batches_are_both_stored(store: Store) -> None:
    source = TwoReads(_header() + _mapping() + _trade(), _trade())
    decoder = StreamDecoder(source, SymbolMap({"HE.OPT": "HE"}), schemas=("mbp-1",))
    records = MarketRecords(store, StreamWriter(store), OPTIONS, ("HE",))
    batches = 0
    while True:
        try:
            batch = decoder.get(timeout=1.0)
        except DecoderFinished:
            break
        if batch is not None and batch.rows:
            batches += 1
            records.add(batch.frames, delivery=1)  # one session: what LiveStream stamps on its batches
            source.first_batch_taken.set()
    records.flush_all()
    assert batches == 2
    stored = read_stream(store.library(OPTIONS), data_symbol("HE", "mbp-1")).data
    assert len(stored) == 2, "the second trade was dropped as if it were a redelivery of the first"


def _rows(keys: list[int]) -> pd.DataFrame:
    index = pd.DatetimeIndex([pd.Timestamp(T0, tz="UTC")] * len(keys), name="ts_recv")
    return pd.DataFrame({"sequence": keys}, index=index)


def test_a_replay_split_inside_the_resumed_timestamp_matches_the_stored_rows_once(store: Store) -> None:
    """Two identical records at T0; the first was committed before a crash. The next session replays both, in two
    batches: the first matches the stored one, the second is new."""
    first = StreamWriter(store)
    first.add(OPTIONS, "HE.trades", _rows([5]), ["sequence"], delivery=1)
    first.flush_all()
    restarted = StreamWriter(store)
    assert restarted.add(OPTIONS, "HE.trades", _rows([5]), ["sequence"], delivery=2) == 0
    assert restarted.add(OPTIONS, "HE.trades", _rows([5]), ["sequence"], delivery=2) == 1
    restarted.flush_all()
    again = StreamWriter(store)  # a third session replaying the whole timestamp stores nothing more
    assert again.add(OPTIONS, "HE.trades", _rows([5, 5]), ["sequence"], delivery=3) == 0
    assert len(read_stream(store.library(OPTIONS), "HE.trades").data) == 2


_symbols = itertools.count()


@st.composite
def _sessions(draw: st.DrawFn) -> tuple[list[int], list[int], list[tuple[int, list[tuple[int, bool]], bool]]]:
    """A stream with repeated timestamps and keys, delivered by sessions. Each replays from the first row at the
    committed watermark's time or up to `back` timestamps earlier, then continues in batches cut anywhere
    (`advance` rows each, flushing after some); it ends with a reconnect (same writer) or a crash (a new writer:
    unflushed rows are lost)."""
    seconds = list(itertools.accumulate(draw(st.lists(st.integers(0, 1), min_size=1, max_size=30))))
    keys = draw(st.lists(st.integers(0, 1), min_size=len(seconds), max_size=len(seconds)))
    batch = st.tuples(st.integers(0, 6), st.booleans())
    session = st.tuples(st.integers(0, 2), st.lists(batch, min_size=1, max_size=4), st.booleans())
    return seconds, keys, draw(st.lists(session, max_size=6))


def _replay_start(stream: pd.DataFrame, watermark: Watermark | None, back: int) -> int:
    """The first row of the timestamp `back` timestamps before the watermark's (0 when nothing is committed)."""
    if watermark is None:
        return 0
    times = np.unique(stream.index.asi8)
    at = max(0, int(np.searchsorted(times, watermark.ts_ns)) - back)
    return int(np.searchsorted(stream.index.asi8, times[at]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_sessions())
def test_property_sessions_cut_anywhere_store_each_row_once(store: Store, data: tuple) -> None:
    seconds, keys, sessions = data
    symbol = f"P{next(_symbols)}.prop"
    index = pd.DatetimeIndex([pd.Timestamp(T0 + s * 1_000_000_000, tz="UTC") for s in seconds], name="ts_recv")
    stream = pd.DataFrame({"sequence": keys, "row": range(len(seconds))}, index=index)
    writer = StreamWriter(store, flush_rows=10**9, flush_interval_s=10**9)
    for number, (back, batches, crash) in enumerate([*sessions, (0, [(len(seconds), True)], False)]):
        position = _replay_start(stream, writer.watermark(OPTIONS, symbol), back)
        for advance, flush in batches:
            end = min(len(stream), position + advance)
            if end > position:
                writer.add(OPTIONS, symbol, stream.iloc[position:end], ["sequence"], delivery=number)
                position = end
            if flush:
                writer.flush_all()
        if crash:
            writer = StreamWriter(store, flush_rows=10**9, flush_interval_s=10**9)
    assert list(read_stream(store.library(OPTIONS), symbol).data["row"]) == list(range(len(seconds)))
