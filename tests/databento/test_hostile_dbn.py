"""Hostile DBN bytes: nothing reaches databento_dbn that makes it panic, a corrupt record is quarantined and ends
the stream at once (never a dead decoder thread), and Historical responses are checked the same way."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.databento import stream_decoder
from hydra_daemon.databento.dbn_runs import CorruptStream, is_panic
from hydra_daemon.databento.decode import DecodedBatch, SymbolMap, decode_raw, decode_records, record_problem
from hydra_daemon.databento.historical_fill import checked_records, response_records
from hydra_daemon.databento.quarantine import DbnQuarantine
from hydra_daemon.databento.stream_decoder import DecoderFinished, StreamDecoder

DATA = Path(__file__).resolve().parents[1] / "data"
POOL: list[Any] = [
    r
    for schema in ("mbp-1", "definition", "ohlcv-1d")
    for r in db.DBNStore.from_file(DATA / f"test_data.{schema}.dbn.zst")
]
POOL.append(dbn.SystemMsg(1, "Heartbeat", code=dbn.SystemCode.HEARTBEAT))  # type: ignore[arg-type]
STREAM = b"".join(bytes(r) for r in POOL)
SHORT_MBP1 = bytes([4, int(dbn.RType.MBP_1)]) + bytes(14)  # a known type declaring 16 bytes: the library panics


def _decodes_without_panic(record: bytes) -> bool:
    try:
        list(dbn.DBNDecoder(has_metadata=False, input_version=dbn.DBN_VERSION).write_and_decode(record))
    except BaseException as exc:
        return not is_panic(exc) and isinstance(exc, Exception)
    return True


def test_the_library_panics_on_the_short_record_we_refuse() -> None:
    assert not _decodes_without_panic(SHORT_MBP1)
    assert record_problem(int(dbn.RType.MBP_1), 16) == "MBP1Msg record (rtype 1) declares 16 bytes, expected 80"


@pytest.mark.parametrize("rtype", range(256))
def test_every_header_we_let_through_decodes_without_panic(rtype: int) -> None:
    for length in range(16, 1024, 4):
        if record_problem(rtype, length) is None:
            assert _decodes_without_panic(bytes([length // 4, rtype]) + bytes(length - 2)), (rtype, length)


_mutation = st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255))


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(_mutation, max_size=4), cut=st.integers(min_value=0), insert=st.binary(max_size=24))
def test_any_damaged_stream_decodes_its_good_head_or_stops_at_a_corrupt_record(
    flips: list[tuple[int, int]], cut: int, insert: bytes
) -> None:
    data = bytearray(STREAM)
    for at, value in flips:
        data[at % len(data)] = value
    at = cut % len(data)
    data[at:at] = insert
    decoded, used = decode_raw(bytes(data), SymbolMap({}), market="ES")
    assert 0 <= used <= len(data)
    broken = [c for c in decoded.corrupt if c.breaks_stream]
    assert len(broken) <= 1
    if broken:
        assert broken[0].offset == used and broken[0].raw == bytes(data[used : used + len(broken[0].raw)])
    if bytes(data[:used]) == STREAM[:used]:  # an undamaged head decodes exactly as the original records
        head = sum(1 for _ in _records_within(used))
        assert decoded.rows <= head


def _records_within(size: int) -> list[Any]:
    out, total = [], 0
    for record in POOL:
        total += len(bytes(record))
        if total > size:
            break
        out.append(record)
    return out


class Chunks:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)
        self._lock = threading.Lock()

    def read(self, timeout: float) -> bytes | None:
        with self._lock:
            return self._chunks.pop(0) if self._chunks else b""


def _header() -> bytes:
    return dbn.Metadata("GLBX.MDP3", 0, None, dbn.SType.INSTRUMENT_ID, None, [], ts_out=False).encode()  # type: ignore[arg-type]


T0 = 1_704_067_200_000_000_000  # 2024-01-01 UTC: live records carry real times


def _bar(i: int) -> bytes:
    price = (90 + i) * 1_000_000_000
    return bytes(dbn.OHLCVMsg(int(dbn.RType.OHLCV_1M), 1, 7, T0 + i * 60_000_000_000, price, price, price, price, i))


def _mapping() -> bytes:
    return bytes(dbn.SymbolMappingMsg(0, 7, 0, dbn.SType.PARENT, "HE.FUT", dbn.SType.RAW_SYMBOL, "HEZ6", 0, 0))  # type: ignore[arg-type]


def test_a_short_record_delivers_what_came_before_then_ends_the_stream_at_once() -> None:
    seen: list[DecodedBatch] = []
    payload = _header() + _mapping() + b"".join(_bar(i) for i in range(5)) + SHORT_MBP1 + _bar(99)
    decoder = StreamDecoder(Chunks([payload]), SymbolMap({"HE.FUT": "HE"}), seen.append)
    batch = decoder.get(timeout=5)
    assert batch is not None and [v for f in batch.frames for v in f.frame["volume"]] == [0, 1, 2, 3, 4]
    with pytest.raises(CorruptStream, match="corrupt record \\(quarantined\\): MBP1Msg record"):
        decoder.get(timeout=5)
    [corrupt] = [c for b in seen for c in b.corrupt]
    assert corrupt.raw == SHORT_MBP1 and corrupt.breaks_stream


def test_a_panic_in_the_decoder_thread_is_raised_by_get_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        list(dbn.DBNDecoder(has_metadata=False, input_version=dbn.DBN_VERSION).write_and_decode(SHORT_MBP1))
    except BaseException as exc:
        panic = exc
    assert is_panic(panic)

    def explode(data: bytes, symbols: SymbolMap, **_: object) -> tuple[DecodedBatch, int]:
        raise panic

    monkeypatch.setattr(stream_decoder, "decode_raw", explode)
    seen: list[DecodedBatch] = []
    decoder = StreamDecoder(Chunks([_header() + _bar(1)]), SymbolMap({}), seen.append)
    with pytest.raises(CorruptStream, match="the DBN decoder panicked"):
        decoder.get(timeout=5)
    assert [c.reason for b in seen for c in b.corrupt] == [f"the DBN decoder panicked: {panic}"]
    with pytest.raises(DecoderFinished):
        decoder.get(timeout=0.1)


def test_an_oversized_metadata_header_is_refused_not_buffered() -> None:
    header = b"DBN\x03" + (1 << 31).to_bytes(4, "little")
    decoder = StreamDecoder(Chunks([header + bytes(1000)]), SymbolMap({}))
    with pytest.raises(CorruptStream, match="over the limit"):
        decoder.get(timeout=5)


def test_a_mapping_with_unreadable_text_is_skipped_and_kept(tmp_path: Path) -> None:
    mapping = bytearray(_mapping())
    mapping[20:24] = b"\xff\xfe\xfd\xfc"  # inside stype_in_symbol: not UTF-8
    decoded, used = decode_raw(bytes(mapping) + _bar(1), SymbolMap({"HE.FUT": "HE"}))
    assert used == len(mapping) + len(_bar(1))
    [corrupt] = decoded.corrupt
    assert not corrupt.breaks_stream and "unreadable SymbolMappingMsg" in corrupt.reason
    quarantine = DbnQuarantine(tmp_path / "q" / "dbn.jsonl", max_bytes=1000)
    for _ in range(3):
        quarantine.add(corrupt, "live")
    lines = (tmp_path / "q" / "dbn.jsonl").read_text().splitlines()
    assert len(lines) == 1, "bounded: the second entry would pass max_bytes"
    entry = json.loads(lines[0])
    assert bytes.fromhex(entry["raw_hex"]) == bytes(mapping) and entry["source"] == "live"


def _historical_store(body: bytes) -> db.DBNStore:
    metadata = dbn.Metadata("GLBX.MDP3", 0, dbn.SType.PARENT, dbn.SType.INSTRUMENT_ID, dbn.Schema.OHLCV_1M, [])  # type: ignore[arg-type]
    return db.DBNStore.from_bytes(io.BytesIO(zstandard.ZstdCompressor().compress(metadata.encode() + body)))


def test_a_corrupt_historical_response_is_a_corrupt_stream_with_the_record() -> None:
    assert len(checked_records(_historical_store(_bar(1) + _bar(2)), "HE.FUT")) == 2
    with pytest.raises(CorruptStream, match=r"HE\.FUT: MBP1Msg record") as info:
        checked_records(_historical_store(_bar(1) + SHORT_MBP1 + _bar(2)), "HE.FUT")
    assert info.value.record is not None and info.value.record.raw == SHORT_MBP1
    with pytest.raises(CorruptStream, match="ends inside a record"):
        checked_records(_historical_store(_bar(1) + _bar(2)[:-5]), "HE.FUT")


def test_a_historical_record_of_an_unknown_type_is_set_aside_and_the_rest_decoded() -> None:
    """A record type newer than this databento-dbn (which refuses it) whose length frames it: refusing the response
    made every fill of its range fail the same way, and a Live session skipping such a record relies on the fill."""
    unknown = bytes([14, 0x99]) + bytes(54)
    records = checked_records(_historical_store(_bar(1) + unknown + _bar(2)), "HE.FUT")
    decoded = decode_records(records, SymbolMap({"HE.FUT": "HE"}), market="HE")
    [frame] = decoded.frames
    assert frame.frame["close"].tolist() == [91.0, 92.0]
    [corrupt] = decoded.corrupt
    assert corrupt.raw == unknown and not corrupt.breaks_stream and "unknown record type 153" in corrupt.reason
    with pytest.raises(CorruptStream, match="unknown record type 153"):  # framing that does not hold stays corrupt
        checked_records(_historical_store(_bar(1) + bytes([15, 0x99]) + bytes(54) + _bar(2)), "HE.FUT")


def _response(body: bytes, compress: bool) -> bytes:
    metadata = dbn.Metadata("GLBX.MDP3", 0, dbn.SType.PARENT, dbn.SType.INSTRUMENT_ID, dbn.Schema.OHLCV_1M, [])  # type: ignore[arg-type]
    raw = metadata.encode() + body
    return zstandard.ZstdCompressor().compress(raw) if compress else raw


@settings(max_examples=300, deadline=None)
@given(
    flips=st.lists(_mutation, min_size=1, max_size=4),
    cut=st.none() | st.integers(min_value=1),
    compress=st.booleans(),
    after=st.booleans(),
)
def test_any_damaged_historical_response_is_records_or_a_corrupt_stream(
    flips: list[tuple[int, int]], cut: int | None, compress: bool, after: bool
) -> None:
    """Damage before or after compression, including the metadata (version, ts_out) and truncation."""
    raw = bytearray(_response(b"".join(_bar(i) for i in range(20)), compress=False))
    if not after:
        for at, value in flips:
            raw[at % len(raw)] = value
    data = bytearray(zstandard.ZstdCompressor().compress(bytes(raw)) if compress else raw)
    if after:
        for at, value in flips:
            data[at % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data) + 1]
    try:
        records = response_records(bytes(data), "HE.FUT")
    except CorruptStream as exc:
        assert str(exc).startswith("HE.FUT: ") or "HE.FUT: " in str(exc)
        return
    assert len(records) <= 20


PANICKING_BODY = bytes.fromhex(
    "28b52ffd20b8c50200440444424e0367000000474c42582e4d445033000800ff0004000047000e2301006a1540334bb85416"
    "8033191d5e03d5000026599f6503000080dc45d55c5ef50a00000000000700cfd88870000da0079c0077c1c3301006"
)
"""A zstd response whose damaged metadata made the client's DBNStore panic ('mid > len') while reading its header
(found by benchmarks/fuzz.py)."""


def test_a_body_the_client_panics_on_while_reading_its_header_is_a_corrupt_stream() -> None:
    with pytest.raises(CorruptStream, match="the DBN library panicked"):
        response_records(PANICKING_BODY, "HE.FUT")


def test_a_record_of_a_schema_the_session_did_not_subscribe_is_corrupt() -> None:
    """A flipped rtype byte can turn a daily bar (rtype 35) into a 1-second bar (rtype 32) of the same size: only
    the subscription tells it from a real one."""
    daily = bytearray(_bar(1))
    daily[1] = int(dbn.RType.OHLCV_1D)
    second = bytearray(daily)
    second[1] = int(dbn.RType.OHLCV_1S)
    decoded, used = decode_raw(bytes(daily + second), SymbolMap({}), market="HE", schemas=("ohlcv-1d", "definition"))
    assert used == len(daily) and decoded.rows == 1
    [corrupt] = decoded.corrupt
    assert corrupt.breaks_stream and "ohlcv-1s record (rtype 32) on a session that did not subscribe" in corrupt.reason


def test_a_live_record_with_an_impossible_time_is_quarantined_not_decoded() -> None:
    """An MBP-1 record read as a statistics record (both 80 bytes, both subscribed by options) puts a price where
    ts_recv belongs: the time is decades off, so the record is skipped and carried as corrupt (framing intact)."""
    bars = [bytearray(_bar(i)) for i in range(3)]
    struct_ts_event = 8  # header: length, rtype, publisher_id (u16), instrument_id (u32), then ts_event (u64)
    bars[1][struct_ts_event : struct_ts_event + 8] = (3_702_750_000_000).to_bytes(8, "little")  # 1970
    decoded, used = decode_raw(b"".join(map(bytes, bars)), SymbolMap({}), market="HE")
    assert used == 3 * len(bars[0]) and decoded.rows == 2
    [corrupt] = decoded.corrupt
    assert not corrupt.breaks_stream and "outside 1990..2100" in corrupt.reason and corrupt.raw == bytes(bars[1])


def test_a_record_stamped_after_the_latest_plausible_time_is_carried_as_corrupt() -> None:
    """`latest_ns` (the clock, or a Historical request's end, plus `FUTURE_SLACK_NS`): a bar stamped after it, though
    inside 1990..2100, is set aside, Live or Historical; one at it is decoded."""
    bars = [dbn.OHLCVMsg(int(dbn.RType.OHLCV_1M), 1, 7, T0 + i * 60_000_000_000, 1, 1, 1, 1, i) for i in range(3)]
    latest = T0 + 60_000_000_000
    for decoded in (
        decode_records(bars, SymbolMap({}), market="HE", latest_ns=latest),
        decode_raw(b"".join(bytes(b) for b in bars), SymbolMap({}), market="HE", latest_ns=latest)[0],
    ):
        assert [v for f in decoded.frames for v in f.frame["volume"]] == [0, 1]
        [corrupt] = decoded.corrupt
        assert corrupt.raw == bytes(bars[2]) and not corrupt.breaks_stream
        assert "stamped 20" in corrupt.reason and "the host clock is behind" in corrupt.reason, corrupt.reason


def test_a_historical_record_with_an_impossible_time_is_carried_as_corrupt_not_decoded() -> None:
    """Historical hands record objects (`decode_records`); one whose ts_event is undefined (2**64 - 1) would be
    decoded as NaT without the check Live records get (the writer then refuses the whole batch)."""
    bars = [dbn.OHLCVMsg(int(dbn.RType.OHLCV_1M), 1, 7, T0 + i * 60_000_000_000, 1, 1, 1, 1, i) for i in range(3)]
    undefined = dbn.OHLCVMsg(int(dbn.RType.OHLCV_1M), 1, 7, dbn.UNDEF_TIMESTAMP, 1, 1, 1, 1, 9)
    decoded = decode_records([bars[0], undefined, bars[1], bars[2]], SymbolMap({}), market="HE")
    assert [v for f in decoded.frames for v in f.frame["volume"]] == [0, 1, 2]
    [corrupt] = decoded.corrupt
    assert "outside 1990..2100" in corrupt.reason and corrupt.raw == bytes(undefined)
