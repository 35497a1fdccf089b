"""Raw DBN bytes → runs → decoded batches: the same result as decoding record objects, whatever the interleaving of
record types and wherever a chunk is cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.databento.dbn_runs import CorruptStream, metadata_length, split_runs
from hydra_daemon.databento.decode import DecodedBatch, SymbolMap, decode_raw, decode_records

DATA = Path(__file__).resolve().parents[1] / "data"
SCHEMAS = ("live", "mbp-1", "definition", "statistics", "ohlcv-1d", "trades")
POOL: list[Any] = [r for schema in SCHEMAS for r in db.DBNStore.from_file(DATA / f"test_data.{schema}.dbn.zst")]
POOL += [
    dbn.SystemMsg(1, "Heartbeat", code=dbn.SystemCode.HEARTBEAT),  # type: ignore[arg-type]
    dbn.SystemMsg(2, "Finished replay", code=dbn.SystemCode.REPLAY_COMPLETED),  # type: ignore[arg-type]
    dbn.ErrorMsg(3, "Authentication failed", code=dbn.ErrorCode.AUTH_FAILED),  # type: ignore[arg-type]
]


def _frames(batch: DecodedBatch) -> dict[tuple[str, str], pd.DataFrame]:
    return {(f.market, f.schema): f.frame for f in batch.frames}


def _assert_same(ours: DecodedBatch, theirs: DecodedBatch) -> None:
    assert _frames(ours).keys() == _frames(theirs).keys()
    for key, frame in _frames(theirs).items():
        pd.testing.assert_frame_equal(_frames(ours)[key], frame)
    assert (ours.notices, ours.heartbeats, ours.unsupported) == (theirs.notices, theirs.heartbeats, theirs.unsupported)


@settings(max_examples=60, deadline=None)
@given(picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=80), cut=st.integers(0, 10_000))
def test_decoding_raw_bytes_in_two_chunks_equals_decoding_the_records(picks: list[int], cut: int) -> None:
    records = [POOL[i] for i in picks]
    payload = b"".join(bytes(r) for r in records)
    cut = min(cut, len(payload))
    symbols = SymbolMap({})
    first, used = decode_raw(payload[:cut], symbols, market="ES")
    assert used <= cut
    second, rest = decode_raw(payload[used:], symbols, market="ES")
    assert rest == len(payload) - used
    head = sum(1 for _ in _records_within(records, used))
    _assert_same(first, decode_records(records[:head], SymbolMap({}), market="ES"))
    assert first.rows + second.rows == decode_records(records, SymbolMap({}), market="ES").rows


def _records_within(records: list[Any], size: int) -> list[Any]:
    taken, total = [], 0
    for record in records:
        total += len(bytes(record))
        if total > size:
            break
        taken.append(record)
    return taken


def test_runs_follow_the_stream_order_of_types() -> None:
    mbp = [r for r in POOL if isinstance(r, dbn.MBP1Msg)]
    stat = next(r for r in POOL if isinstance(r, dbn.StatMsg))
    payload = b"".join(bytes(r) for r in [*mbp, stat, *mbp])  # type: ignore[call-overload]
    runs, used = split_runs(payload)
    assert used == len(payload)
    assert [(run.rtype, run.count) for run in runs] == [(1, len(mbp)), (24, 1), (1, len(mbp))]


def test_zero_length_record_is_a_corrupt_stream() -> None:
    with pytest.raises(CorruptStream, match="record at byte 80: declares length 0"):
        split_runs(bytes(next(r for r in POOL if isinstance(r, dbn.MBP1Msg))) + bytes(16))


def test_metadata_header_length_needs_the_whole_header() -> None:
    header = dbn.Metadata("GLBX.MDP3", 0, None, dbn.SType.INSTRUMENT_ID, None, [], ts_out=False).encode()  # type: ignore[arg-type]
    assert metadata_length(header[:5]) is None
    assert metadata_length(header[:-1]) is None
    assert metadata_length(header + b"rest") == len(header)
    with pytest.raises(CorruptStream, match="does not start with a DBN header"):
        metadata_length(b"XYZ" + header[3:])
