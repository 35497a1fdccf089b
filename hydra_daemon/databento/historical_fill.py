"""Fetching ranges from Databento Historical (`timeseries.get_range`), chunked, one market at a time (sync I/O).

Requests are made per market parent symbol (``HE.FUT``), so every returned record belongs to that market without
relying on symbol mappings. Every request is priced and limited by a `CostGuard` first. Call from a worker thread
(`anyio.to_thread.run_sync`) in async code.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import databento
import databento_dbn as dbn
import structlog
import zstandard

from hydra_daemon.databento.cost_guard import CostGuard, CostRefused, HistoricalRequest
from hydra_daemon.databento.dbn_runs import CorruptRecord, CorruptStream, is_panic, metadata_length
from hydra_daemon.databento.decode import (
    FUTURE_SLACK_NS,
    DecodedBatch,
    SymbolMap,
    checked_runs,
    decode_objects,
    decode_records,
    is_unknown_type,
    set_aside_unknown,
)
from hydra_daemon.databento.historical_client import HistoricalError, historical_client, http_errors
from hydra_daemon.secrets import ApiKey

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S

CHUNK_NS: dict[str, int] = {
    "ohlcv-1d": 366 * NS_PER_DAY,
    "definition": 7 * NS_PER_DAY,
    "ohlcv-1h": 60 * NS_PER_DAY,
    "ohlcv-1m": 7 * NS_PER_DAY,
    "statistics": 7 * NS_PER_DAY,
}
"""Request span per schema (end exclusive); schemas not listed (quotes, trades) use `DEFAULT_CHUNK_NS`."""
DEFAULT_CHUNK_NS = 3600 * NS_PER_S

log = structlog.get_logger()


def chunks(schema: str, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """[start, end) cut into consecutive request spans for `schema`; empty if start >= end."""
    step = CHUNK_NS.get(schema, DEFAULT_CHUNK_NS)
    return [(a, min(a + step, end_ns)) for a in range(start_ns, end_ns, step)]


@dataclass(frozen=True)
class HistoricalSource:
    """A Historical client for one dataset; `base_url` (DatabentoConfig.historical_url) overrides the endpoint;
    `guard` prices and limits every request."""

    dataset: str
    key: ApiKey
    guard: CostGuard
    base_url: str | None = None

    def client(self) -> databento.Historical:
        return historical_client(self.key.reveal(), self.base_url)

    def request(self, parent: str, schema: str, start_ns: int, end_ns: int) -> HistoricalRequest:
        return HistoricalRequest(self.dataset, parent, schema, start_ns, end_ns)

    def fetch(self, client: databento.Historical, parent: str, schema: str, start_ns: int, end_ns: int) -> list[Any]:
        """All records of `schema` for the instruments of `parent` (e.g. ``HE.FUT``) with start <= ts < end;
        `CostRefused` (nothing requested) when the guard refuses the price; `CorruptStream` when the response does not
        hold decodable DBN records (checked before databento_dbn sees them: it panics on some)."""
        charged_on = datetime.now(UTC).date()
        quote = self.guard.authorize(client, self.request(parent, schema, start_ns, end_ns))
        what = f"Historical {parent} {schema} [{start_ns}, {end_ns})"
        try:
            with http_errors(), _reading(what):  # the client decodes the body's header while building the store
                store = self._get_range(client, parent, schema, start_ns, end_ns)
        except HistoricalError as exc:
            if exc.http_status is not None:  # an error answer carries no data and is not billed
                self.guard.refund(quote, charged_on)
            raise
        return checked_records(store, what)

    def _get_range(self, client: databento.Historical, parent: str, schema: str, start_ns: int, end_ns: int) -> Any:
        return client.timeseries.get_range(
            dataset=self.dataset,
            start=start_ns,
            end=end_ns,
            symbols=[parent],
            schema=schema,
            stype_in="parent",
            stype_out="instrument_id",
        )

    def decode(
        self, client: databento.Historical, request: HistoricalRequest, symbols: SymbolMap, market: str
    ) -> DecodedBatch:
        """`request`'s records decoded for `market` (a backfill's request); each record decoding leaves out as corrupt
        gets one `record_rejected` line naming it and the request (the rest is stored; a later backfill of the range
        fetches it again)."""
        records = self.fetch(client, request.symbols, request.schema, request.start_ns, request.end_ns)
        decoded = decode_records(records, symbols, market, request.end_ns + FUTURE_SLACK_NS)
        for record in decoded.corrupt:
            log.warning("record_rejected", pipeline="backfill", what=record.reason, where=request.describe())
        return decoded

    def fetch_chunks(
        self, client: databento.Historical, parent: str, schema: str, start_ns: int, end_ns: int
    ) -> Iterator[list[Any]]:
        """`fetch` over `chunks(schema, start_ns, end_ns)`, one list of records per chunk, in time order.

        A chunk the guard refuses ends the fill: [its start, end_ns) is recorded as a gap left unfilled."""
        for a, b in chunks(schema, start_ns, end_ns):
            try:
                records = self.fetch(client, parent, schema, a, b)
            except CostRefused as refused:
                self.guard.record_gap(self.request(parent, schema, a, end_ns), str(refused))
                return
            self.guard.stats.gap_fill_records += len(records)
            yield records


_UNREADABLE = (databento.BentoError, dbn.DBNError, zstandard.ZstdError, ValueError, EOFError)
"""What reading a body that is not (zstd) DBN raises in the client and databento_dbn."""


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Inside, what a body that is not (zstd) DBN makes the client or databento_dbn raise, a panic included, becomes
    `CorruptStream`; HTTP errors pass through (`http_errors` names them)."""
    try:
        yield
    except (CorruptStream, databento.BentoHttpError):
        raise
    except _UNREADABLE as exc:
        raise CorruptStream(f"{what}: not readable DBN ({type(exc).__name__}: {str(exc)[:200]})") from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise CorruptStream(f"{what}: not readable DBN (the DBN library panicked: {str(exc)[:200]})") from None


def response_records(body: bytes, what: str) -> list[Any]:
    """The records of a Historical response body (zstd or plain DBN), as `fetch` reads them; `CorruptStream`
    otherwise."""
    with _reading(what):
        store = databento.DBNStore.from_bytes(io.BytesIO(body))
    return checked_records(store, what)


def checked_records(store: databento.DBNStore, what: str) -> list[Any]:
    """The records of `store`, after checking that its bytes frame only records databento_dbn decodes safely (when
    they are of the current DBN version; older versions are upgraded by the library); `CorruptStream` for anything
    wrong, including a panic of the library. Records of a type unknown to this DBN version are skipped: they are in
    the list as `CorruptRecord`s (`set_aside_unknown`), which decoding carries into its batch's `corrupt`."""
    with _reading(what):
        raw = store.reader.read()
        header = metadata_length(raw)
        if header is None:
            raise CorruptStream(f"{what}: the response ends inside its DBN header")
        if store.metadata.ts_out:
            raise CorruptStream(f"{what}: the response carries ts_out, which Historical requests never ask for")
        if raw[3] == dbn.DBN_VERSION:
            body = raw[header:]
            unknown: tuple[CorruptRecord, ...] = ()
            _, used, broken = checked_runs(body)
            if broken is not None and is_unknown_type(broken.rtype):  # scanned again only then
                body, unknown = set_aside_unknown(body)
                _, used, broken = checked_runs(body)
            if broken is not None:
                raise CorruptStream(f"{what}: {broken.reason}", broken.offset, broken)
            if used != len(body):
                raise CorruptStream(f"{what}: the response ends inside a record ({len(body) - used} bytes left over)")
            if unknown:
                return [*decode_objects(body), *unknown]
        return list(store)
