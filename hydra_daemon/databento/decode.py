"""Decode batches of DBN records into per-(market, schema) pandas frames, vectorised (pure, no I/O).

Data records are grouped by record type and turned into one numpy structured array per type with
`np.frombuffer(b"".join(map(bytes, records)))`, so no per-record pandas work happens. Frames carry:

- a UTC `DatetimeIndex` named after the schema's index field (`ts_recv` where the schema has it, else `ts_event`);
- every record field except framing (`length`, `rtype`, reserved bytes); prices as float64 (fixed 1e-9 → float,
  UNDEF → NaN), timestamps as UTC datetimes (UNDEF → NaT), text as `str`;
- `instrument_id` and `symbol` (the raw symbol, e.g. ``HEJ7``; "" while unknown).

Control records update a `SymbolMap` (SymbolMappingMsg, definitions) or become `GatewayNotice`s (ErrorMsg,
non-heartbeat SystemMsg); heartbeats are only counted.

Hostile bytes: databento_dbn panics (a `PanicException`, not an `Exception`) on a record of a known type whose
declared length is too short, so raw records are checked (`record_problem`) before any reaches it. A record that
fails the check breaks the framing: it and everything after it in the chunk are left undecoded and the batch carries
a `CorruptRecord` with `breaks_stream=True`. A control record whose text cannot be read is skipped and carried as a
`CorruptRecord` too (the framing is intact).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import databento_dbn as dbn
import numpy as np
import pandas as pd

from hydra_daemon.databento.dbn_runs import CorruptRecord, CorruptStream, RecordRun, split_runs

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_TIMESTAMP = dbn.UNDEF_TIMESTAMP
_PRICE_SCALE = float(dbn.FIXED_PRICE_SCALE)
_DROPPED_FIELDS = frozenset({"length", "rtype", "_reserved"})
_OHLCV_BY_RTYPE = {32: "ohlcv-1s", 33: "ohlcv-1m", 34: "ohlcv-1h", 35: "ohlcv-1d", 36: "ohlcv-eod"}
_OHLCV_KEYS = ("instrument_id", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class SchemaLayout:
    """How one Databento schema is decoded and stored: its record type, index field and dedup key columns."""

    schema: str
    record_type: type
    index: str
    key_columns: tuple[str, ...]


def _ohlcv(schema: str) -> SchemaLayout:
    return SchemaLayout(schema, dbn.OHLCVMsg, "ts_event", _OHLCV_KEYS)


LAYOUTS: Mapping[str, SchemaLayout] = {
    layout.schema: layout
    for layout in (
        *(_ohlcv(schema) for schema in _OHLCV_BY_RTYPE.values()),
        SchemaLayout(
            "mbp-1",
            dbn.MBP1Msg,
            "ts_recv",
            (
                "instrument_id",
                "ts_event",
                "sequence",
                "action",
                "side",
                "price",
                "size",
                "flags",
                "bid_px_00",
                "ask_px_00",
                "bid_sz_00",
                "ask_sz_00",
            ),
        ),
        SchemaLayout("trades", dbn.TradeMsg, "ts_recv", ("instrument_id", "ts_event", "sequence", "price", "size")),
        SchemaLayout(
            "definition",
            dbn.InstrumentDefMsg,
            "ts_recv",
            ("instrument_id", "ts_event", "raw_symbol", "security_update_action", "expiration", "strike_price"),
        ),
        SchemaLayout(
            "statistics",
            dbn.StatMsg,
            "ts_recv",
            ("instrument_id", "ts_event", "stat_type", "sequence", "price", "quantity", "update_action"),
        ),
    )
}


_DATA_TYPES = frozenset(item.record_type for item in LAYOUTS.values())
_DATA_BY_RTYPE: Mapping[int, type] = {
    int(dbn.RType.MBP_0): dbn.TradeMsg,
    int(dbn.RType.MBP_1): dbn.MBP1Msg,
    int(dbn.RType.INSTRUMENT_DEF): dbn.InstrumentDefMsg,
    int(dbn.RType.STATISTICS): dbn.StatMsg,
    **{rtype: dbn.OHLCVMsg for rtype in _OHLCV_BY_RTYPE},
}
"""Record types decoded straight from raw bytes into structured arrays (by rtype)."""
_SCHEMA_BY_RTYPE: Mapping[int, str] = {
    int(dbn.RType.MBP_0): "trades",
    int(dbn.RType.MBP_1): "mbp-1",
    int(dbn.RType.INSTRUMENT_DEF): "definition",
    int(dbn.RType.STATISTICS): "statistics",
    **_OHLCV_BY_RTYPE,
}
_LIVE_TS_RANGE_NS = (int(pd.Timestamp("1990-01-01", tz="UTC").value), int(pd.Timestamp("2100-01-01", tz="UTC").value))
"""A live data record whose ts_event or ts_recv lies outside this is corrupt: DBN carries no checksum, and a damaged
record that still frames (an rtype byte swapped between two subscribed types of one size) shows up this way."""
FUTURE_SLACK_NS = 3600 * 1_000_000_000
"""How far past the clock (Live) or a request's end (Historical) a record may be stamped, as `decode_raw`'s and
`decode_records`' ``latest_ns``: one stamped later is damaged, and stored it would carry its stream's watermark past
every record still to come (each then dropped as a redelivery). An hour covers any clock skew of a synchronised
host."""
_CONTROL_BY_RTYPE: Mapping[int, type] = {
    int(dbn.RType.ERROR): dbn.ErrorMsg,
    int(dbn.RType.SYMBOL_MAPPING): dbn.SymbolMappingMsg,
    int(dbn.RType.SYSTEM): dbn.SystemMsg,
}
_UNSUPPORTED_MIN_LENGTH: Mapping[int, int] = {
    10: 368,  # MBP10Msg
    18: 40,  # StatusMsg
    20: 112,  # ImbalanceMsg
    160: 56,  # MBOMsg
    177: 80,  # CMBP1Msg
    192: 80,  # CBBOMsg 1s
    193: 80,  # CBBOMsg 1m
    194: 80,  # CMBP1Msg (tcbbo)
    195: 80,  # BBOMsg 1s
    196: 80,  # BBOMsg 1m
}
"""Other record types databento_dbn knows, with the shortest length it decodes without panicking (measured on
databento-dbn 0.70; `tests/databento/test_hostile_dbn.py` checks it): decoded only to be counted as unsupported."""
MAX_QUARANTINED_BYTES = 1024
"""A quarantined record keeps at most this many of its bytes (a corrupt length may claim up to 1020)."""


def layout(schema: str) -> SchemaLayout:
    """The layout of `schema`; ValueError naming the supported schemas otherwise."""
    try:
        return LAYOUTS[schema]
    except KeyError:
        raise ValueError(f"unsupported schema {schema!r} (supported: {', '.join(sorted(LAYOUTS))})") from None


class SymbolMap:
    """instrument_id → raw symbol and → market, learned from SymbolMappingMsg and definitions.

    `parents` maps the subscribed parent symbols to market names, e.g. ``{"HE.FUT": "HE", "HE.OPT": "HE"}``.
    """

    def __init__(self, parents: Mapping[str, str]) -> None:
        self._parents = dict(parents)
        self._symbol: dict[int, str] = {}
        self._market: dict[int, str] = {}

    def learn_mapping(self, record: dbn.SymbolMappingMsg) -> None:
        """Apply one SymbolMappingMsg (stype_in_symbol = parent, stype_out_symbol = raw symbol); nothing is learned
        when either text cannot be read."""
        symbol, parent = record.stype_out_symbol, record.stype_in_symbol
        self._symbol[record.instrument_id] = symbol
        market = self._parents.get(parent)
        if market is not None:
            self._market[record.instrument_id] = market

    def learn(self, instrument_ids: Iterable[int], symbols: Iterable[str], market: str | None = None) -> None:
        """Remember raw symbols (and optionally the market) of instruments, e.g. from stored definitions."""
        for instrument_id, symbol in zip(instrument_ids, symbols, strict=True):
            self._symbol[int(instrument_id)] = str(symbol)
            if market is not None:
                self._market[int(instrument_id)] = market

    def symbols(self, instrument_ids: np.ndarray) -> np.ndarray:
        """Raw symbols of `instrument_ids` as an object array ("" where unknown)."""
        return _lookup(instrument_ids, self._symbol, "")

    def markets(self, instrument_ids: np.ndarray) -> np.ndarray:
        """Market of each instrument as an object array ("" where unknown)."""
        return _lookup(instrument_ids, self._market, "")


def _lookup(keys: np.ndarray, table: Mapping[int, str], default: str) -> np.ndarray:
    if len(keys) == 0:
        return np.empty(0, dtype=object)
    unique, inverse = np.unique(keys, return_inverse=True)
    values = np.array([table.get(int(key), default) for key in unique], dtype=object)
    return values[inverse]


class NoticeKind(StrEnum):
    ERROR = "error"  # an ErrorMsg
    SYSTEM = "system"  # a non-heartbeat SystemMsg


@dataclass(frozen=True)
class GatewayNotice:
    """An ErrorMsg or a non-heartbeat SystemMsg from the gateway."""

    kind: NoticeKind
    code: int
    message: str
    ts_event: int


@dataclass(frozen=True)
class MarketFrame:
    """Decoded rows of one schema for one market, in stream order."""

    market: str
    schema: str
    frame: pd.DataFrame


class BatchSource(StrEnum):
    """Where a batch came from: the Live stream, or Historical (a gap fill, a backfill, a DBN file)."""

    LIVE = "live"
    HISTORICAL = "historical"


@dataclass(frozen=True)
class DecodedBatch:
    """Everything decoded from one batch of records, in stream order: the one batch type from the transport up to
    the pipelines' `persist()`."""

    frames: tuple[MarketFrame, ...]
    source: BatchSource
    notices: tuple[GatewayNotice, ...] = ()
    heartbeats: int = 0
    unmapped: tuple[int, ...] = ()  # instrument ids of data records whose market is unknown (not stored)
    unsupported: Mapping[str, int] = field(default_factory=dict)  # record type name -> count (not stored)
    corrupt: tuple[CorruptRecord, ...] = ()  # records that could not be decoded (not stored; quarantined)
    delivery: int | None = None
    """The ordered delivery (one live session, one gap fill) this batch continues; None: not part of one."""

    @property
    def rows(self) -> int:
        return sum(len(item.frame) for item in self.frames)


def decode_records(
    records: Sequence[Any], symbols: SymbolMap, market: str | None = None, latest_ns: int | None = None
) -> DecodedBatch:
    """Decode `records` (in stream order; record objects come from Historical, so the batch's source is
    `HISTORICAL`). `market` routes every data record to one market (Historical requests made per market); otherwise
    the market comes from the SymbolMappingMsgs seen so far. A data record with a time outside 1990..2100, or after
    `latest_ns` (`FUTURE_SLACK_NS` past the request's end), is left out and carried in `corrupt` (an undefined time
    becomes NaT, which the writer refuses: the whole batch failed), as is each `CorruptRecord` among `records` (set
    aside by `set_aside_unknown`)."""
    return _decode(_group_by_type(records), {}, symbols, market, BatchSource.HISTORICAL, latest_ns)


def decode_raw(
    data: bytes,
    symbols: SymbolMap,
    market: str | None = None,
    schemas: Collection[str] | None = None,
    latest_ns: int | None = None,
) -> tuple[DecodedBatch, int]:
    """Decode the complete records at the head of `data` (raw DBN records, no Metadata header) like
    `decode_records`; returns the batch and how many bytes it used (a trailing partial record is left over).

    Runs of data records become structured arrays straight from the bytes; only control records (mappings, system
    and error messages) and records of other known types (counted as unsupported) are decoded into objects. At the
    first record failing `record_problem` (given the session's subscribed `schemas`: a gateway sends no other data)
    decoding stops: the batch carries it as a `CorruptRecord` with `breaks_stream=True` and `used` ends before it.
    A record stamped after `latest_ns` (`FUTURE_SLACK_NS` past the clock) is carried as corrupt, framing intact."""
    runs, used, broken = checked_runs(data, schemas)
    parts: dict[type, list[np.ndarray]] = {}
    others: list[bytes] = []
    for run in runs:
        kind = _DATA_BY_RTYPE.get(run.rtype)
        if kind is not None:
            parts.setdefault(kind, []).append(np.frombuffer(data, _dtype(kind), count=run.count, offset=run.start))
        else:
            others.append(data[run.start : run.end])
    objects = decode_objects(b"".join(others)) if others else []
    implausible: list[CorruptRecord] = []
    arrays = {
        kind: _plausible(np.concatenate(items) if len(items) > 1 else items[0], implausible, latest_ns)
        for kind, items in parts.items()
    }
    decoded = _decode(_group_by_type(objects), arrays, symbols, market, BatchSource.LIVE, latest_ns)
    extra = (*implausible, *([] if broken is None else [broken]))
    if extra:
        decoded = replace(decoded, corrupt=(*decoded.corrupt, *extra))
    return decoded, used


def _plausible(array: np.ndarray, corrupt: list[CorruptRecord], latest_ns: int | None = None) -> np.ndarray:
    """`array` without the records whose ts_event/ts_recv lie outside `_LIVE_TS_RANGE_NS` or after ``latest_ns``
    (added to `corrupt`)."""
    low, high = (np.uint64(bound) for bound in _LIVE_TS_RANGE_NS)
    latest = np.uint64(min(int(high), latest_ns)) if latest_ns is not None else high
    bad = np.zeros(len(array), dtype=bool)
    for name in ("ts_event", "ts_recv"):
        if name in (array.dtype.names or ()):
            ts = array[name].astype(np.uint64)
            bad |= (ts < low) | (ts > latest)
    if not bad.any():
        return array
    for record in array[bad]:
        raw = record.tobytes()[:MAX_QUARANTINED_BYTES]
        reason = _implausible(record, latest)
        corrupt.append(CorruptRecord(-1, int(record["rtype"]), len(raw), reason, raw, breaks_stream=False))
    return array[~bad]


def _implausible(record: np.void, latest: np.uint64) -> str:
    what = f"record (rtype {int(record['rtype'])})"
    times = [int(record[name]) for name in ("ts_event", "ts_recv") if name in (record.dtype.names or ())]
    if all(_LIVE_TS_RANGE_NS[0] <= ts <= _LIVE_TS_RANGE_NS[1] for ts in times):
        stamped = pd.Timestamp(max(times), tz="UTC").isoformat()
        limit = pd.Timestamp(int(latest), tz="UTC").isoformat()
        late = "an hour past the clock or the request"
        return f"{what} stamped {stamped}, after {limit} ({late}): damaged, or the host clock is behind"
    return f"{what} with ts_event/ts_recv outside 1990..2100: damaged"


def record_problem(rtype: int, length: int, schemas: Collection[str] | None = None) -> str | None:
    """Why a record with this header must not be handed to databento_dbn (None when it may): data and control
    records must have exactly their current size, other known types at least the size the library needs, and an
    unknown type is corrupt; with `schemas` (what the session subscribed) a data record of another schema is too."""
    kind = _DATA_BY_RTYPE.get(rtype) or _CONTROL_BY_RTYPE.get(rtype)
    if kind is not None:
        size = _dtype(kind).itemsize
        if length != size:
            return f"{kind.__name__} record (rtype {rtype}) declares {length} bytes, expected {size}"
        schema = _SCHEMA_BY_RTYPE.get(rtype)
        if schemas is not None and schema is not None and schema not in schemas:
            return f"{schema} record (rtype {rtype}) on a session that did not subscribe {schema}"
        return None
    minimum = _UNSUPPORTED_MIN_LENGTH.get(rtype)
    if minimum is None:
        return f"unknown record type {rtype} (length {length})"
    if length < minimum:
        return f"record type {rtype} declares {length} bytes, shorter than its {minimum}"
    return None


def checked_runs(
    data: bytes, schemas: Collection[str] | None = None
) -> tuple[list[RecordRun], int, CorruptRecord | None]:
    """`split_runs(data)` cut before the first record that breaks the framing (a header shorter than 16 bytes or a
    `record_problem`): the good runs, the bytes they span, and the corrupt record (None when all are good)."""
    try:
        runs, used = split_runs(data)
        broken = None
    except CorruptStream as exc:
        runs, used = split_runs(data[: exc.offset])
        broken = _corrupt_at(data, exc.offset, exc.reason)
    for index, run in enumerate(runs):
        problem = record_problem(run.rtype, run.length, schemas)
        if problem is not None:
            return runs[:index], run.start, _corrupt_at(data, run.start, problem)
    return runs, used, broken


def set_aside_unknown(data: bytes) -> tuple[bytes, tuple[CorruptRecord, ...]]:
    """`data` (whole records) without the records of a type this DBN version does not know, and those records, to
    quarantine (``breaks_stream=False``). A newer DBN version may add record types, which databento_dbn refuses; when
    every declared length chains exactly to the end of `data`, the framing around them holds and the rest can be
    decoded. Otherwise `data` is returned whole, for `checked_runs` to tell what is wrong. Damage can chain too (a
    header turned into an unknown type with another length covering valid records): a record is at most 1,020 bytes,
    so the quarantine keeps every byte it covered."""
    try:
        runs, used = split_runs(data)
    except CorruptStream:
        return data, ()
    unknown = [run for run in runs if is_unknown_type(run.rtype)]
    if used != len(data) or not unknown:
        return data, ()
    set_aside = tuple(
        CorruptRecord(
            at,
            run.rtype,
            run.length,
            f"unknown record type {run.rtype} (length {run.length}): set aside whole (a type newer than this "
            "databento-dbn, or damage: then its bytes hold the records it covers)",
            bytes(data[at : at + min(run.length, MAX_QUARANTINED_BYTES)]),
            breaks_stream=False,
        )
        for run in unknown
        for at in range(run.start, run.end, run.length)
    )
    return b"".join(data[run.start : run.end] for run in runs if not is_unknown_type(run.rtype)), set_aside


def is_unknown_type(rtype: int) -> bool:
    """True for a record type this DBN version does not know (`set_aside_unknown`)."""
    return rtype not in _DATA_BY_RTYPE and rtype not in _CONTROL_BY_RTYPE and rtype not in _UNSUPPORTED_MIN_LENGTH


def decode_objects(payload: bytes) -> list[Any]:
    """Record objects of `payload` (whole records of the current DBN version, no Metadata header)."""
    return list(dbn.DBNDecoder(has_metadata=False, input_version=dbn.DBN_VERSION).write_and_decode(payload))


def _corrupt_at(data: bytes, offset: int, reason: str) -> CorruptRecord:
    length = data[offset] * 4
    rtype = data[offset + 1] if offset + 1 < len(data) else -1
    raw = bytes(data[offset : offset + max(2, min(length, MAX_QUARANTINED_BYTES))])
    return CorruptRecord(offset, rtype, length, reason, raw, breaks_stream=True)


def _dtype(record_type: type) -> np.dtype:
    return np.dtype(record_type._dtypes)  # type: ignore[attr-defined]


def _decode(
    by_type: dict[type, list[Any]],
    arrays: dict[type, np.ndarray],
    symbols: SymbolMap,
    market: str | None,
    source: BatchSource,
    latest_ns: int | None = None,
) -> DecodedBatch:
    notices: list[GatewayNotice] = []
    heartbeats = 0
    corrupt: list[CorruptRecord] = list(by_type.pop(CorruptRecord, ()))  # set aside before decoding (Historical)
    for record in by_type.pop(dbn.SymbolMappingMsg, ()):
        try:
            symbols.learn_mapping(record)
        except Exception as exc:  # databento_dbn raises DBNError on text that is not UTF-8
            corrupt.append(_unreadable(record, exc))
    for record in by_type.pop(dbn.SystemMsg, ()):
        try:
            if record.is_heartbeat():
                heartbeats += 1
            else:
                notices.append(GatewayNotice(NoticeKind.SYSTEM, int(record.code), record.msg, record.ts_event))
        except Exception as exc:
            corrupt.append(_unreadable(record, exc))
    for record in by_type.pop(dbn.ErrorMsg, ()):
        try:
            notices.append(GatewayNotice(NoticeKind.ERROR, int(record.code), record.err, record.ts_event))
        except Exception as exc:
            corrupt.append(_unreadable(record, exc))
    unsupported: dict[str, int] = {}
    for record_type, group in by_type.items():
        if record_type not in _DATA_TYPES:
            unsupported[record_type.__name__] = len(group)
            continue
        array = _plausible(structured(group, record_type), corrupt, latest_ns)  # Historical: as Live's, in decode_raw
        arrays[record_type] = np.concatenate([arrays[record_type], array]) if record_type in arrays else array
    frames: list[MarketFrame] = []
    unmapped: list[int] = []
    definitions = arrays.pop(dbn.InstrumentDefMsg, None)
    if definitions is not None:
        raw = _text(definitions["raw_symbol"])
        symbols.learn(definitions["instrument_id"].tolist(), raw.tolist(), market)
        _split(frames, unmapped, definitions, "definition", symbols, market)
    for record_type, array in arrays.items():
        for schema, part in _schemas_of(record_type, array):
            _split(frames, unmapped, part, schema, symbols, market)
    return DecodedBatch(
        tuple(frames), source, tuple(notices), heartbeats, tuple(sorted(set(unmapped))), unsupported, tuple(corrupt)
    )


def _unreadable(record: Any, exc: Exception) -> CorruptRecord:
    raw = bytes(record)
    reason = f"unreadable {type(record).__name__}: {type(exc).__name__}: {str(exc)[:200]}"
    return CorruptRecord(-1, raw[1], raw[0] * 4, reason, raw[:MAX_QUARANTINED_BYTES], breaks_stream=False)


def _group_by_type(records: Sequence[Any]) -> dict[type, list[Any]]:
    """Records per type, each list in stream order (one C-level pass per distinct type, no per-record Python)."""
    types = set(map(type, records))
    if len(types) == 1:
        return {types.pop(): list(records)}
    return {kind: [r for r in records if type(r) is kind] for kind in types}


def structured(records: Sequence[Any], record_type: type) -> np.ndarray:
    """One numpy structured array holding `records` (all of `record_type`), without per-field Python work."""
    dtype = _dtype(record_type)
    payload = b"".join(map(bytes, records))
    if len(payload) != dtype.itemsize * len(records):
        raise CorruptStream(
            f"{record_type.__name__}: {len(payload)} bytes for {len(records)} records, expected "
            f"{dtype.itemsize} bytes each (DBN version mismatch? decode with the current databento-dbn)"
        )
    return np.frombuffer(payload, dtype=dtype)


def _schemas_of(record_type: type, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    if record_type is dbn.OHLCVMsg:
        return [
            (_OHLCV_BY_RTYPE[int(rtype)], array[array["rtype"] == rtype])
            for rtype in np.unique(array["rtype"])
            if int(rtype) in _OHLCV_BY_RTYPE
        ]
    return [next((schema, array) for schema, item in LAYOUTS.items() if item.record_type is record_type)]


def _split(
    frames: list[MarketFrame],
    unmapped: list[int],
    array: np.ndarray,
    schema: str,
    symbols: SymbolMap,
    market: str | None,
) -> None:
    ids = array["instrument_id"]
    unique, inverse = np.unique(ids, return_inverse=True)
    symbol = symbols.symbols(unique)[inverse]
    if market is not None:
        frames.append(MarketFrame(market, schema, to_frame(array, schema, symbol)))
        return
    names, codes = np.unique(symbols.markets(unique).astype(str), return_inverse=True)
    if len(names) == 1 and names[0] != "":
        frames.append(MarketFrame(str(names[0]), schema, to_frame(array, schema, symbol)))
        return
    rows = codes[inverse]
    for code, name in enumerate(names.tolist()):
        if name == "":
            unmapped.extend(unique[codes == code].tolist())
            continue
        mask = rows == code
        frames.append(MarketFrame(name, schema, to_frame(array[mask], schema, symbol[mask])))


def to_frame(array: np.ndarray, schema: str, symbol: np.ndarray) -> pd.DataFrame:
    """Frame of one schema's structured array: UTC index on the layout's index field, converted columns, symbol."""
    spec = layout(schema)
    record_type = spec.record_type
    prices = set(record_type._price_fields)  # type: ignore[attr-defined]
    times = set(record_type._timestamp_fields)  # type: ignore[attr-defined]
    columns: dict[str, Any] = {}
    for name in array.dtype.names or ():
        if name in _DROPPED_FIELDS or name == spec.index:
            continue
        values = array[name]
        if name in prices:
            columns[name] = fixed_to_float(values)
        elif name in times:
            columns[name] = utc_times(values)
        elif values.dtype.kind == "S":
            columns[name] = _text(values)
        else:
            columns[name] = np.ascontiguousarray(values)
    columns["symbol"] = symbol
    index = pd.DatetimeIndex(utc_times(array[spec.index]), name=spec.index)
    return pd.DataFrame(columns, index=index)


def fixed_to_float(values: np.ndarray) -> np.ndarray:
    """Fixed-point 1e-9 prices → float64, UNDEF_PRICE → NaN."""
    out = values.astype(np.float64) / _PRICE_SCALE
    out[values == UNDEF_PRICE] = np.nan
    return out


def utc_times(values: np.ndarray) -> pd.DatetimeIndex:
    """UTC nanosecond timestamps (uint64) → tz-aware datetimes, UNDEF_TIMESTAMP → NaT."""
    raw = values.astype(np.uint64)
    ns = raw.astype(np.int64)
    ns[raw == np.uint64(UNDEF_TIMESTAMP)] = np.iinfo(np.int64).min  # NaT
    return pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC")


_ONE_CHAR = np.array([chr(code) if code else "" for code in range(256)], dtype=object)


def _text(values: np.ndarray) -> np.ndarray:
    """Fixed-width C strings → object array of str (single chars through a lookup table)."""
    if values.dtype.itemsize == 1:
        return _ONE_CHAR[values.view(np.uint8)]
    return np.char.decode(values, "utf-8", "replace").astype(object)
