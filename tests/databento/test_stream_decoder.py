"""StreamDecoder: every record decoded once and in order however the bytes are chunked; a stream cut inside a
record is an error; a slow consumer counts as busy, not idle."""

from __future__ import annotations

import threading

import databento_dbn as dbn
import pytest

from hydra_daemon.databento.dbn_runs import CorruptStream
from hydra_daemon.databento.decode import DecodedBatch, SymbolMap
from hydra_daemon.databento.stream_decoder import DecoderFinished, StreamDecoder

T0 = 1_704_067_200_000_000_000  # 2024-01-01 UTC: live records carry real times


def _bar(i: int) -> dbn.OHLCVMsg:
    price = (90 + i) * 1_000_000_000
    return dbn.OHLCVMsg(int(dbn.RType.OHLCV_1M), 1, 7, T0 + i * 60_000_000_000, price, price, price, price, i)


def _mapping() -> dbn.SymbolMappingMsg:
    return dbn.SymbolMappingMsg(0, 7, 0, dbn.SType.PARENT, "HE.FUT", dbn.SType.RAW_SYMBOL, "HEZ6", 0, 0)  # type: ignore[arg-type]


def _header() -> bytes:
    return dbn.Metadata("GLBX.MDP3", 0, None, dbn.SType.INSTRUMENT_ID, None, [], ts_out=False).encode()  # type: ignore[arg-type]


class Chunks:
    """A byte source handing out fixed chunks, then end of stream (b"")."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)
        self._lock = threading.Lock()

    def read(self, timeout: float) -> bytes | None:
        with self._lock:
            return self._chunks.pop(0) if self._chunks else b""


def _drain(decoder: StreamDecoder) -> list[DecodedBatch]:
    batches: list[DecodedBatch] = []
    while True:
        try:
            batch = decoder.get(timeout=1.0)
        except DecoderFinished:
            return batches
        if batch is not None:
            batches.append(batch)


@pytest.mark.parametrize("size", [1, 7, 56, 1000, 1 << 20])
def test_every_record_decoded_once_in_order_whatever_the_chunking(size: int) -> None:
    payload = _header() + bytes(_mapping()) + b"".join(bytes(_bar(i)) for i in range(3_000))
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    decoder = StreamDecoder(Chunks(chunks), SymbolMap({"HE.FUT": "HE"}), depth=1)
    frames = [f for b in _drain(decoder) for f in b.frames]
    assert {(f.market, f.schema) for f in frames} == {("HE", "ohlcv-1m")}
    assert [v for f in frames for v in f.frame["volume"].tolist()] == list(range(3_000))
    assert {s for f in frames for s in f.frame["symbol"]} == {"HEZ6"}
    with pytest.raises(DecoderFinished):
        decoder.get(timeout=0.01)


def test_stream_ending_inside_a_record_is_raised_by_get() -> None:
    payload = _header() + bytes(_mapping()) + bytes(_bar(1))[:-3]
    decoder = StreamDecoder(Chunks([payload]), SymbolMap({"HE.FUT": "HE"}))
    with pytest.raises(CorruptStream, match="ended inside a record"):
        _drain(decoder)


def test_waiting_for_the_consumer_is_not_idleness() -> None:
    payload = _header() + b"".join(bytes(_bar(i)) for i in range(10))
    decoder = StreamDecoder(Chunks([payload, payload[len(_header()) :]]), SymbolMap({}), depth=1)
    try:
        pause = threading.Event()
        for _ in range(1_000):  # the second batch waits for room in the queue: the decoder is blocked on us
            if decoder.idle_s() == 0.0:
                break
            pause.wait(0.01)
        assert decoder.idle_s() == 0.0
        assert decoder.get(timeout=1.0) is not None
    finally:
        decoder.close()
