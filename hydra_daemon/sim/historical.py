"""Databento Historical served from the venue's tape: `POST /v0/timeseries.get_range` and the request estimates
`POST /v0/metadata.get_cost`, `.get_record_count` and `.get_billable_size`.

Accepts the form fields `databento.Historical` sends (dataset, start, end, symbols, schema, stype_in, stype_out,
encoding, compression, limit) with HTTP Basic auth (`key:`). `get_range` answers zstd DBN (Metadata with schema and
symbol mappings, then records with start <= ts_recv (ts_event for bars) < end); the metadata endpoints answer a JSON
number for the same selection: its record count, its billable size (the records' uncompressed DBN bytes) and its
cost, that size times a deterministic `usd_per_byte` (not Databento's price list: tests need a price they can
compute). Errors are `{"detail": ...}` JSON: 401 bad key, 422 bad parameters or `end` after the available data,
faults' 5xx/429.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import zstandard
from databento_dbn import Metadata, Schema, SType

from hydra_daemon.sim.config import DATASET
from hydra_daemon.sim.faults import FaultState
from hydra_daemon.sim.feed import MarketFeed
from hydra_daemon.sim.http_server import json_response
from hydra_daemon.sim.http_types import HttpRequest, HttpResponse
from hydra_daemon.sim.instruments import Instrument
from hydra_daemon.sim.market import NS_PER_DAY, SCHEMAS
from hydra_daemon.sim.symbols import ALL_SYMBOLS, SUPPORTED_STYPES, resolve

GET_RANGE_PATH = "/v0/timeseries.get_range"
COST_PATH = "/v0/metadata.get_cost"
RECORD_COUNT_PATH = "/v0/metadata.get_record_count"
BILLABLE_SIZE_PATH = "/v0/metadata.get_billable_size"
USD_PER_BYTE = 1e-6
"""The venue's price: $1 per MB of records ($1,000 per GB), so simulated requests cost cents, not nothing."""


@dataclass(frozen=True)
class _Interval:
    start_date: date
    end_date: date
    symbol: str


@dataclass(frozen=True)
class _Mapping:
    raw_symbol: str
    intervals: list[_Interval]


class BadRequest(Exception):
    """A request parameter the real API would reject (422)."""


def parse_time_ns(value: str, name: str) -> int:
    """Databento accepts ns integers, ISO 8601 datetimes (naive = UTC) and dates."""
    if value.isdigit():
        return int(value)
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise BadRequest(f"Invalid `{name}` {value!r}: expected ISO 8601 or UNIX nanoseconds.") from None
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return int(stamp.value)


def _iso(ts_ns: int) -> str:
    return pd.Timestamp(ts_ns, tz=UTC).isoformat()


def _day(ts_ns: int) -> date:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC).date()


@dataclass(frozen=True)
class _Selection:
    """The records one request selects, with what its DBN Metadata header says about them."""

    metadata: Metadata
    records: list[bytes]

    @property
    def size(self) -> int:
        return sum(len(record) for record in self.records)


class HistoricalApi:
    """Route for the Historical timeseries and metadata endpoints (other `/v0/` paths: 404 JSON)."""

    def __init__(
        self, feed: MarketFeed, api_keys: tuple[str, ...], faults: FaultState, usd_per_byte: float = USD_PER_BYTE
    ) -> None:
        self.feed = feed
        self.api_keys = api_keys
        self.faults = faults
        self.usd_per_byte = usd_per_byte

    def respond(self, request: HttpRequest) -> HttpResponse | None:
        if not request.path.startswith("/v0/"):
            return None
        response = self._answer(request)
        delay = self.faults.http_delay_s
        if delay <= 0:
            return response
        return HttpResponse(response.status, response.body, response.content_type, response.headers, delay)

    def _answer(self, request: HttpRequest) -> HttpResponse:
        if not self._authorized(request.headers.get("authorization", "")):
            return json_response(401, {"detail": "Authentication failed. Check your API key."})
        failure = self.faults.take_http_failure()
        if failure is not None:
            return json_response(failure, {"detail": f"Simulated venue fault: HTTP {failure}."})
        if request.path not in (GET_RANGE_PATH, COST_PATH, RECORD_COUNT_PATH, BILLABLE_SIZE_PATH):
            return json_response(404, {"detail": f"The simulated venue does not serve {request.path}."})
        if request.method != "POST":
            return json_response(405, {"detail": f"Use POST {request.path}."})
        try:
            selection = self._select(request.form)
        except BadRequest as exc:
            return json_response(422, {"detail": str(exc)})
        if request.path == COST_PATH:
            return json_response(200, self.cost_usd(selection.size))
        if request.path == RECORD_COUNT_PATH:
            return json_response(200, len(selection.records))
        if request.path == BILLABLE_SIZE_PATH:
            return json_response(200, selection.size)
        records = selection.records
        if records and self.faults.undefined_time_responses > 0:
            self.faults.undefined_time_responses -= 1
            records = [_with_undefined_ts_event(records[0]), *records[1:]]
        payload = selection.metadata.encode() + b"".join(records)
        if request.form.get("compression", "zstd") != "none":
            payload = zstandard.ZstdCompressor().compress(payload)
        return HttpResponse(status=200, body=payload, content_type="application/octet-stream")

    def cost_usd(self, size: int) -> float:
        """What a request returning `size` bytes of records costs at this venue."""
        return round(size * self.usd_per_byte, 9)

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, _ = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user in self.api_keys

    def _select(self, form: Mapping[str, str]) -> _Selection:
        dataset = form.get("dataset", "")
        if dataset != DATASET:
            raise BadRequest(f"Unknown dataset {dataset!r}; the simulated venue serves {DATASET}.")
        schema = form.get("schema", "trades")
        if schema not in SCHEMAS:
            raise BadRequest(f"Unsupported schema {schema!r}; the simulated venue serves {', '.join(SCHEMAS)}.")
        stype_in = form.get("stype_in", "raw_symbol")
        if stype_in not in SUPPORTED_STYPES:
            raise BadRequest(f"Unsupported stype_in {stype_in!r}; use one of {', '.join(SUPPORTED_STYPES)}.")
        if form.get("stype_out", "instrument_id") != "instrument_id":
            raise BadRequest("Only stype_out=instrument_id is supported.")
        if form.get("encoding", "dbn") != "dbn":
            raise BadRequest("Only encoding=dbn is supported.")
        if "start" not in form:
            raise BadRequest("Missing required parameter `start`.")
        available_end = self.feed.model.now_ns
        start = parse_time_ns(form["start"], "start")
        end = parse_time_ns(form["end"], "end") if form.get("end") else available_end
        if end > available_end:
            raise BadRequest(
                f"The requested `end` ({_iso(end)}) is after the available data end ({_iso(available_end)}); "
                "retry later or request an earlier `end`."
            )
        if start >= end:
            raise BadRequest(f"Invalid range: `start` ({start}) must be before `end` ({end}).")
        limit = int(form["limit"]) if form.get("limit") else None
        symbols = [s for s in form.get("symbols", "").split(",") if s] or [ALL_SYMBOLS]
        pairs = resolve(self.feed.model.instruments, stype_in, symbols)
        wanted = {inst.instrument_id for _, inst in pairs}
        records = [e.data for e in self.feed.tape.slice(schema, start, end) if e.instrument_id in wanted]
        if limit is not None:
            records = records[:limit]
        metadata = Metadata(
            DATASET,
            start,
            SType(stype_in),
            SType("instrument_id"),
            Schema(schema),
            symbols=symbols,
            mappings=_mappings(pairs, start, end),
            end=end,
            limit=limit,
        )
        return _Selection(metadata, records)


def _with_undefined_ts_event(record: bytes) -> bytes:
    """`record` with its header's ts_event (bytes 8..16) set to DBN's undefined timestamp."""
    return record[:8] + (2**64 - 1).to_bytes(8, "little") + record[16:]


def _mappings(pairs: Sequence[tuple[str, Instrument]], start: int, end: int) -> list[Any]:
    start_date = _day(start)
    end_date = _day(end - 1) + timedelta(days=1) if end - start < 400 * NS_PER_DAY else _day(end)
    grouped: dict[str, list[_Interval]] = {}
    for symbol, inst in pairs:
        grouped.setdefault(symbol, []).append(_Interval(start_date, end_date, str(inst.instrument_id)))
    return [_Mapping(symbol, intervals) for symbol, intervals in grouped.items()]
