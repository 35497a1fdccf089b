"""BatchDecoder: decodes on its own thread, in order, delivers everything after close, surfaces decode errors."""

from __future__ import annotations

import threading

import databento_dbn as dbn
import pytest

from hydra_daemon.pipelines.batch_decoder import BatchDecoder, DecoderFinished
from hydra_daemon.pipelines.handoff import RecordHandoff
from hydra_daemon.pipelines.records import DecodedBatch, SymbolMap


def _bar(i: int) -> dbn.OHLCVMsg:
    price = (90 + i) * 1_000_000_000
    return dbn.OHLCVMsg(int(dbn.RType.OHLCV_1M), 1, 7, i * 60_000_000_000, price, price, price, price, i)


def _mapping() -> dbn.SymbolMappingMsg:
    """HE.FUT → HEZ6 for instrument 7 (the stub types SType members as str, hence the ignore)."""
    return dbn.SymbolMappingMsg(0, 7, 0, dbn.SType.PARENT, "HE.FUT", dbn.SType.RAW_SYMBOL, "HEZ6", 0, 0)  # type: ignore[arg-type]


def _drain(decoder: BatchDecoder) -> list[DecodedBatch]:
    batches: list[DecodedBatch] = []
    while True:
        try:
            batch = decoder.get(timeout=1.0)
        except DecoderFinished:
            return batches
        if batch is not None:
            batches.append(batch)


def test_every_record_decoded_once_in_order_even_when_closed_mid_stream() -> None:
    handoff = RecordHandoff(capacity=64)
    decoder = BatchDecoder(handoff, SymbolMap({"HE.FUT": "HE"}), depth=1)
    mapping = _mapping()

    def produce() -> None:
        handoff.put(mapping)
        for i in range(3_000):
            handoff.put(_bar(i))
        handoff.close()

    producer = threading.Thread(target=produce)
    producer.start()
    batches = _drain(decoder)
    producer.join()
    volumes = [v for b in batches for f in b.frames for v in f.frame["volume"].tolist()]
    assert volumes == list(range(3_000))
    with pytest.raises(DecoderFinished):
        decoder.get(timeout=0.01)


def test_routed_by_the_mapping_seen_first() -> None:
    handoff = RecordHandoff(capacity=16)
    decoder = BatchDecoder(handoff, SymbolMap({"HE.FUT": "HE"}))
    handoff.put(_mapping())
    handoff.put(_bar(1))
    handoff.close()
    frames = [f for b in _drain(decoder) for f in b.frames]
    assert [(f.market, f.schema, f.frame["symbol"].tolist()) for f in frames] == [("HE", "ohlcv-1m", ["HEZ6"])]


class _BrokenSymbols(SymbolMap):
    def learn_mapping(self, record: dbn.SymbolMappingMsg) -> None:
        raise RuntimeError(f"cannot map {record.stype_out_symbol}")


def test_decode_error_is_raised_by_get() -> None:
    handoff = RecordHandoff(capacity=4)
    decoder = BatchDecoder(handoff, _BrokenSymbols({}))
    handoff.put(_mapping())
    with pytest.raises(RuntimeError, match="cannot map HEZ6"):
        while decoder.get(timeout=1.0) is None:
            pass
    decoder.stop()
