"""Record decoding against the real Databento sample files (oracle: the client's own DBNStore.to_df)."""

from __future__ import annotations

from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.databento.decode import LAYOUTS, SymbolMap, decode_records, layout

DATA = Path(__file__).resolve().parents[1] / "data"


def _store(schema: str) -> db.DBNStore:
    return db.DBNStore.from_file(DATA / f"test_data.{schema}.dbn.zst")


@pytest.mark.parametrize("schema", ["mbp-1", "ohlcv-1d", "definition", "statistics", "trades"])
def test_sample_file_decodes_like_the_client(schema: str) -> None:
    store = _store(schema)
    decoded = decode_records(list(store), SymbolMap({}), market="ES")
    assert [(f.market, f.schema) for f in decoded.frames] == [("ES", schema)]
    frame = decoded.frames[0].frame
    expected = store.to_df(price_type="float", pretty_ts=True, map_symbols=True)
    spec = layout(schema)
    assert frame.index.name == spec.index
    assert str(frame.index.tz) == "UTC"
    assert len(frame) == len(expected)
    np.testing.assert_array_equal(frame.index.asi8, pd.DatetimeIndex(expected.index).asi8)
    for column in expected.columns:
        if column in ("rtype", "symbol"):
            continue
        ours, theirs = frame[column], expected[column]
        if pd.api.types.is_float_dtype(theirs):
            np.testing.assert_allclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=0, atol=1e-9)
        elif pd.api.types.is_datetime64_any_dtype(theirs):
            assert pd.DatetimeIndex(ours).equals(pd.DatetimeIndex(theirs).tz_convert("UTC")), column
        else:
            assert ours.astype(str).tolist() == theirs.astype(str).tolist(), column
    assert set(frame["symbol"]) == ({"ESH1"} if schema == "definition" else {""})


def test_definitions_teach_symbols_to_later_batches() -> None:
    symbols = SymbolMap({})
    decode_records(list(_store("definition")), symbols, market="ES")
    bars = decode_records(list(_store("ohlcv-1d")), symbols, market="ES").frames[0].frame
    assert bars["symbol"].tolist() == ["ESH1"]
    assert bars.loc[:, ["open", "high", "low", "close"]].iloc[0].tolist() == [3702.75, 3735.0, 3697.25, 3735.0]


def test_live_stream_routes_by_symbol_mapping_and_reports_the_rest() -> None:
    records = list(_store("live"))
    mappings = [r for r in records if isinstance(r, dbn.SymbolMappingMsg)]
    parents = {m.stype_in_symbol: "ES" for m in mappings[:1]}
    decoded = decode_records(records, SymbolMap(parents))
    routed_id = mappings[0].instrument_id
    for item in decoded.frames:
        assert item.market == "ES"
        assert set(item.frame["instrument_id"]) == {routed_id}
        assert set(item.frame["symbol"]) == {mappings[0].stype_out_symbol}
    data_ids = {r.instrument_id for r in records if type(r) in {lay.record_type for lay in LAYOUTS.values()}}
    assert set(decoded.unmapped) == data_ids - {routed_id}
    assert decoded.unsupported == {"MBOMsg": 5, "MBP10Msg": 2}


def test_heartbeats_counted_and_notices_kept() -> None:
    records = [
        dbn.SystemMsg(ts_event=1, msg="Heartbeat", code=dbn.SystemCode.HEARTBEAT),  # type: ignore[arg-type]
        dbn.SystemMsg(ts_event=2, msg="Slow", code=dbn.SystemCode.SLOW_READER_WARNING),  # type: ignore[arg-type]
        dbn.ErrorMsg(ts_event=3, err="boom", code=dbn.ErrorCode.INTERNAL_ERROR),  # type: ignore[arg-type]
    ]
    decoded = decode_records(records, SymbolMap({}))
    assert decoded.heartbeats == 1
    assert [(n.kind, n.message) for n in decoded.notices] == [("system", "Slow"), ("error", "boom")]
    assert decoded.frames == ()


UNDEF = dbn.UNDEF_PRICE
PLAUSIBLE = (int(pd.Timestamp("1990-01-01", tz="UTC").value), int(pd.Timestamp("2100-01-01", tz="UTC").value))
"""Times a decoded record may carry; outside, it is carried as corrupt."""
ohlcv_args = st.fixed_dictionaries(
    {
        "rtype": st.sampled_from([dbn.RType.OHLCV_1D, dbn.RType.OHLCV_1M]),
        "instrument_id": st.integers(1, 2**32 - 1),
        "ts_event": st.one_of(st.integers(*PLAUSIBLE), st.integers(0, 2**63 - 1)),
        "open": st.integers(-(2**63), 2**63 - 1),
        "high": st.integers(1, 2**63 - 1),
        "low": st.integers(1, 10**12),
        "close": st.integers(1, 10**12),
        "volume": st.integers(0, 2**64 - 1),
    }
)


@given(st.lists(ohlcv_args, max_size=40))
def test_ohlcv_fields_roundtrip_in_stream_order(args: list[dict[str, int]]) -> None:
    records = [dbn.OHLCVMsg(publisher_id=1, **a) for a in args]
    decoded = decode_records(records, SymbolMap({}), market="HE")
    got = {item.schema: item.frame for item in decoded.frames}
    plausible = [a for a in args if PLAUSIBLE[0] <= a["ts_event"] <= PLAUSIBLE[1]]
    implausible = [bytes(r) for r, a in zip(records, args, strict=True) if a not in plausible]
    assert sorted(r.raw for r in decoded.corrupt) == sorted(implausible)
    for schema, rtype in (("ohlcv-1d", dbn.RType.OHLCV_1D), ("ohlcv-1m", dbn.RType.OHLCV_1M)):
        want = [a for a in plausible if a["rtype"] == rtype]
        if not want:
            assert schema not in got
            continue
        frame = got[schema]
        assert frame.index.asi8.tolist() == [a["ts_event"] for a in want]
        assert frame["instrument_id"].tolist() == [a["instrument_id"] for a in want]
        assert frame["volume"].tolist() == [a["volume"] for a in want]
        for name in ("open", "high", "low", "close"):
            expected = [np.nan if a[name] == UNDEF else a[name] / 1e9 for a in want]
            np.testing.assert_array_equal(frame[name].to_numpy(), np.array(expected, dtype=np.float64))


def test_unknown_schema_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported schema 'mbo'"):
        layout("mbo")
