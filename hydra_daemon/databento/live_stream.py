"""The streaming core shared by the futures and options pipelines: one Databento Live session covering every
configured market, reconnected forever, resumed from the store's watermarks, gaps filled from Historical.

Flow per connection:

1. ask `resume(schema)` for each market's committed watermark of each schema (UTC ns; a market absent: nothing of
   it stored yet);
2. a market's watermark older than `now - replay_window_s` is first filled from Historical up to that limit
   (`BatchSource.HISTORICAL` batches), each market from its own watermark, so Live only has to replay the last
   window;
3. subscribe each schema with ``start = oldest watermark - REPLAY_OVERLAP_NS`` (``start=0``: the whole replay
   window when nothing is stored) and start the session — in a child process (`LiveProcess`), so the client's
   per-record work runs under its own GIL, on another core than our decoding and commits;
4. the child streams raw DBN bytes through a pipe; a `StreamDecoder` thread turns them into column batches with
   numpy (overlapping with the consumer committing the previous batch); while no rows come, `Idle.TICK` every
   `idle_tick_s` lets the consumer flush on time;
5. the session ends on a gateway error, a reset, a graceful close, a corrupt record (quarantined in
   `<state_dir>/quarantine/dbn.jsonl`, counted in `stats.corrupt_records`), or our own watchdog (no record or
   heartbeat for `watchdog_s`); we stop the child, back off with jitter and start again at 1.

A record the Live client cannot decode (e.g. a record type newer than its DBN version) ends the session, and every
replay meets it again. From the second such end in a row, `ReplaySkip` moves the replay start past the newest
watermark by a growing step, and Historical, decoded by us (which quarantines the record and goes on), fills what
Live skips: capture goes on, exactly once, at the cost of a small fill.

Overlapping replays are harmless: the `StreamWriter` drops every row at or before its watermark, so the store ends
up with each record exactly once. Each session's live stream and each gap fill is one numbered delivery
(`DecodedBatch.delivery`): a timestamp whose records the decoder split over two batches is continued, not taken
for a redelivery of rows equal in every key column.

A slow consumer fills the pipe, which blocks the child's client, which stops reading its socket: TCP back-pressure
on the gateway, nothing dropped, memory bounded.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.clock import Clock, WallClock
from hydra_daemon.config import DatabentoConfig
from hydra_daemon.databento.child import SessionRequest
from hydra_daemon.databento.cost_guard import CostGuard
from hydra_daemon.databento.dbn_runs import CorruptRecord, CorruptStream
from hydra_daemon.databento.decode import FUTURE_SLACK_NS, DecodedBatch, NoticeKind, SymbolMap, decode_records
from hydra_daemon.databento.historical_client import HistoricalError
from hydra_daemon.databento.historical_fill import HistoricalSource
from hydra_daemon.databento.launcher import Launcher
from hydra_daemon.databento.process import LiveAuthError, LiveProcess, UndecodableStream
from hydra_daemon.databento.quarantine import DbnQuarantine, dbn_quarantine_path
from hydra_daemon.databento.stream_decoder import DecoderFinished, StreamDecoder
from hydra_daemon.ingest import Idle, PipelineState, PipelineStats
from hydra_daemon.redaction import redact_text, register_secret
from hydra_daemon.secrets import ApiKey

log = structlog.get_logger()

NS_PER_S = 1_000_000_000
CONNECT_TIMEOUT_S = 45.0
"""Connect (10 s) + authenticate (30 s) in the client, plus slack."""
REPLAY_OVERLAP_NS = 60 * NS_PER_S
"""Live replay starts this much before the watermark (records at the edge may be published late); the writer
drops the overlap."""

BAR_NS = {"ohlcv-1s": NS_PER_S, "ohlcv-1m": 60 * NS_PER_S, "ohlcv-1h": 3600 * NS_PER_S, "ohlcv-1d": 86_400 * NS_PER_S}
"""Historical filters bars on ts_event (the bar's start) but they are published at its end: fills reach back one bar
further, so a bar published after the resume point is fetched even though it started before it."""

_DELIVERIES = itertools.count(1)
"""Numbers each ordered delivery (a session's live stream, one gap fill): its batches carry it (`DecodedBatch.delivery`)
so the writer tells a timestamp continued in the next batch from a redelivered one."""

SKIP_STEPS_NS = tuple(seconds * NS_PER_S for seconds in (1, 10, 60, 600, 3600))
"""How far past the newest watermark Live replays after consecutive sessions ended on a record the client cannot
decode: the first step after the second such end, the next after each further one (records the client lost with it
may lie before the poison record, so a small first step can fall short)."""

ResumePoint = Callable[[str], dict[str, int]]
"""schema -> per market, its committed watermark in UTC ns (a market absent: nothing of it stored yet). Called from a
worker thread."""

Starts = dict[str, dict[str, int]]
"""schema -> market -> where its records resume (UTC ns), advanced as fills cover them."""


@dataclass(frozen=True)
class LiveSettings:
    """Where and how to connect; built from `DatabentoConfig` plus the API key."""

    key: ApiKey
    dataset: str = "GLBX.MDP3"
    gateway: str | None = None
    port: int = 13000
    historical_url: str | None = None
    heartbeat_interval_s: int = 30
    replay_window_s: int = 23 * 3600
    max_historical_cost_usd: float = 10.0
    state_dir: Path | None = None
    """Where the cost guard keeps today's Historical spend and the gaps it refused to fill (None: memory, logs)."""

    @classmethod
    def from_config(cls, config: DatabentoConfig, key: ApiKey, state_dir: Path | None = None) -> LiveSettings:
        return cls(
            key=key,
            max_historical_cost_usd=config.max_historical_cost_usd,
            state_dir=state_dir,
            dataset=config.dataset,
            gateway=config.live_gateway,
            port=config.live_port,
            historical_url=config.historical_url,
            heartbeat_interval_s=config.heartbeat_interval_s,
            replay_window_s=config.replay_window_s,
        )

    @property
    def watchdog_s(self) -> float:
        """Silence (no record, no heartbeat) after which we drop the session ourselves."""
        return self.heartbeat_interval_s * 1.5 + 1.0


@dataclass(frozen=True)
class StreamSpec:
    """What one session subscribes: `schemas` for every parent symbol in `parents` (parent symbol -> market)."""

    schemas: tuple[str, ...]
    parents: Mapping[str, str]


AUTH_RETRY_S = 600.0
"""After the key was refused, try again this rarely (it only changes with a restart; the gateway may have erred)."""
AUTH_HINT = "check the Databento API key (systemd credential databento_api_key or $DATABENTO_API_KEY), then restart"


def _auth_refusal(exc: Exception) -> str | None:
    """The log event for an authentication refusal (Live gateway rejection, Historical 401/403), else None."""
    if isinstance(exc, LiveAuthError):
        return "live_auth_refused"
    if isinstance(exc, HistoricalError) and exc.key_refused:
        return "historical_auth_refused"
    return None


class SessionStalled(RuntimeError):
    """Our watchdog saw neither records nor heartbeats for too long."""


class SessionClosed(RuntimeError):
    """The gateway closed the session gracefully (it does not come back by itself)."""


class ReplaySkip:
    """Where Live must replay from to get past a record its client cannot decode: after two undecodable session ends
    in a row, the newest stored record's publication (a bar's end) plus the next of `SKIP_STEPS_NS`; None otherwise.
    Any other end of a session that streamed, or Live storing an overlap past the previous skip's fill (that record
    is behind us), starts the count again; a session that ended before it streamed (e.g. the skip's Historical fill
    failed: its range is not served yet) changes nothing, so the next one tries the same skip."""

    def __init__(self) -> None:
        self.undecodable_ends = 0
        self._target: int | None = None

    def session_ended(self, *, undecodable: bool, streamed: bool) -> None:
        if undecodable:
            self.undecodable_ends += 1
        elif streamed:
            self.undecodable_ends, self._target = 0, None

    def target(self, newest_ns: int, now_ns: int) -> int | None:
        """The replay start past the record (at most one overlap before `now_ns`, so Historical can fill up to one
        overlap past it), or None to replay as usual."""
        if self._target is not None and newest_ns > self._target + 2 * REPLAY_OVERLAP_NS:
            # Live stored an overlap past what the skip's fill reached: that record is behind us, this is another
            self.undecodable_ends, self._target = 1, None
        if self.undecodable_ends < 2:
            return None
        step = SKIP_STEPS_NS[min(self.undecodable_ends - 2, len(SKIP_STEPS_NS) - 1)]
        target = min(newest_ns + step, now_ns - REPLAY_OVERLAP_NS)
        if target <= newest_ns:
            return None  # the record is newer than Historical can serve: replay as usual until it can
        self._target = target
        return target


class LiveStream:
    """Yields `DecodedBatch`es with rows (and `Idle.TICK` while quiet) forever from one Live session per connection;
    owns reconnects and gap fills.

    `clock` says what "now" is (the venue's clock in tests); `stats` is updated in place (state, reconnects,
    gaps_filled, last_error).
    """

    def __init__(
        self,
        settings: LiveSettings,
        spec: StreamSpec,
        resume: ResumePoint,
        stats: PipelineStats,
        *,
        symbols: SymbolMap | None = None,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        idle_tick_s: float = 0.25,
    ) -> None:
        register_secret(settings.key.reveal())
        self.settings = settings
        self.spec = spec
        self.symbols = symbols if symbols is not None else SymbolMap(spec.parents)
        self._resume = resume
        self._stats = stats
        self._clock = clock or WallClock()
        self._backoff = backoff or Backoff()
        self._idle_tick_s = idle_tick_s
        guard = CostGuard(settings.max_historical_cost_usd, settings.state_dir, stats)
        self._historical = HistoricalSource(settings.dataset, settings.key, guard, settings.historical_url)
        self._quarantine = DbnQuarantine(dbn_quarantine_path(settings.state_dir) if settings.state_dir else None)
        self._skip = ReplaySkip()
        self._streamed = False  # whether the current (or last) session got to stream
        Launcher.shared()  # starts importing the client in the launcher now, not at the first connect

    async def batches(self) -> AsyncGenerator[DecodedBatch | Idle, None]:
        """Forever: connect, fill, stream; on any session end back off and reconnect.

        A refused key (the Live gateway's rejection, Historical 401/403) is permanent until the key changes: the
        stream waits `AUTH_RETRY_S` in state ``auth_refused`` instead of hammering the gateway, and says so once."""
        auth_logged = False
        while True:
            started = time.monotonic()
            try:
                async with aclosing(self._session()) as session:
                    async for batch in session:
                        auth_logged = False
                        yield batch
                raise SessionClosed("the gateway closed the session")
            except Exception as exc:  # every session end is retried; cancellation is not an Exception
                reason = redact_text(f"{type(exc).__name__}: {exc}")
                refused = _auth_refusal(exc)
                undecodable = isinstance(exc, UndecodableStream)
            self._stats.reconnects += 1
            self._stats.last_error = reason
            self._skip.session_ended(undecodable=undecodable, streamed=self._streamed)
            if refused is not None:
                self._stats.state = PipelineState.AUTH_REFUSED
                if not auth_logged:
                    log.error(refused, error=reason, retry_in_s=AUTH_RETRY_S, hint=AUTH_HINT)
                    auth_logged = True
                await anyio.sleep(AUTH_RETRY_S)
                continue
            if time.monotonic() - started > max(10.0, 2 * self.settings.heartbeat_interval_s):
                self._backoff.reset()
            delay = self._backoff.next_delay()
            self._stats.state = PipelineState.RECONNECTING
            log.warning("live_session_ended", error=reason, retry_in_s=round(delay, 3))
            await anyio.sleep(delay)

    async def _session(self) -> AsyncGenerator[DecodedBatch | Idle, None]:
        self._stats.state = PipelineState.CONNECTING
        self._streamed = False
        starts: Starts = {schema: await anyio.to_thread.run_sync(self._resume, schema) for schema in self.spec.schemas}
        published = [start + BAR_NS.get(schema, 0) for schema, marks in starts.items() for start in marks.values()]
        newest = max(published, default=self._live_floor())  # the newest stored record's publication
        async with aclosing(self._fill_older_than_replay(starts)) as filled:
            async for batch in filled:
                yield batch
        replay = {
            schema: max(1, min(marks.values()) - REPLAY_OVERLAP_NS) if marks else 0 for schema, marks in starts.items()
        }
        skip_to = self._skip.target(newest, self._clock.now_ns())
        if skip_to is not None:
            log.error(
                "live_record_skipped",
                error=self._stats.last_error,
                replay_from_ns=skip_to,
                undecodable_sessions=self._skip.undecodable_ends,
                hint="the Live client could not decode a record (a newer DBN version?): upgrade databento; "
                "what Live skips is filled from Historical",
            )
            async with aclosing(self._fill_before(starts, skip_to + REPLAY_OVERLAP_NS, self._live_floor())) as filled:
                async for batch in filled:
                    yield batch
            replay = dict.fromkeys(starts, skip_to)
        child = await self._start_child(replay)
        try:
            session_id = await anyio.to_thread.run_sync(child.wait_started, CONNECT_TIMEOUT_S, abandon_on_cancel=True)
            # The replay window moved on while we filled and connected: fill what slipped out of it before reading
            # the live stream (the child blocks on its full pipe meanwhile, so nothing is lost or reordered).
            async with aclosing(self._fill_older_than_replay(starts)) as filled:
                async for batch in filled:
                    yield batch
            self._stats.state = PipelineState.STREAMING
            self._streamed = True
            log.info("live_session_started", session_id=session_id, replay_from_ns=replay)
            async with aclosing(self._drain(child)) as drained:
                async for item in drained:
                    yield item
        finally:
            child.stop()

    async def _start_child(self, replay: Mapping[str, int]) -> LiveProcess:
        """A child session asked for `replay`, forked off the event loop: the fork waits for the launcher, which is
        still importing the client (~2 s, more on a loaded machine) at the first connect and after it was restarted.
        Shielded, so a stop that lands meanwhile finds the child in `_session`'s cleanup instead of orphaning it."""
        with anyio.CancelScope(shield=True):
            child = await anyio.to_thread.run_sync(LiveProcess, self.settings.key.reveal(), self._request(replay))
        return child

    def _live_floor(self) -> int:
        """The oldest time Live replays now."""
        return self._clock.now_ns() - self.settings.replay_window_s * NS_PER_S

    async def _fill_older_than_replay(self, starts: Starts) -> AsyncGenerator[DecodedBatch, None]:
        """Fill from Historical every market whose resume point is older than the replay window now; advance `starts`
        to the window's edge. A schema with nothing stored is left to Live's replay."""
        async with aclosing(self._fill_before(starts, self._live_floor(), None)) as filled:
            async for batch in filled:
                yield batch

    async def _fill_before(
        self, starts: Starts, end_ns: int, unstored: int | None
    ) -> AsyncGenerator[DecodedBatch, None]:
        """Fill from Historical, schema by schema, every parent whose resume point is older than `end_ns`; advance
        `starts` to `end_ns`. A schema with nothing stored at all starts at `unstored` (None: it is not filled)."""
        for schema in _fill_order(list(starts)):
            begin = self._parent_starts(starts[schema], unstored)
            due = {parent: start for parent, start in begin.items() if start < end_ns}
            if not due:
                continue
            self._stats.state = PipelineState.FILLING
            refused = self._stats.historical_refusals
            async with aclosing(self._fill(schema, due, end_ns)) as filled:
                async for batch in filled:
                    yield batch
            if self._stats.historical_refusals == refused:  # a refused range is left as a recorded gap
                self._stats.gaps_filled += 1
            advanced = {self.spec.parents[parent]: max(start, end_ns) for parent, start in begin.items()}
            starts[schema] = {**starts[schema], **advanced}

    def _parent_starts(self, marks: Mapping[str, int], unstored: int | None) -> dict[str, int]:
        """Per parent symbol, where a fill of one schema starts: its market's resume point in `marks`. A parent whose
        market has none there (an options session's underlying futures; a market with nothing stored yet) takes the
        oldest of them, so it is filled with the others; with `marks` empty every parent takes `unstored` (None:
        none is filled)."""
        fallback = min(marks.values()) if marks else unstored
        starts = {}
        for parent, market in self.spec.parents.items():
            start = marks.get(market, fallback)
            if start is not None:
                starts[parent] = start
        return starts

    async def _fill(self, schema: str, starts: Mapping[str, int], end_ns: int) -> AsyncGenerator[DecodedBatch, None]:
        """Historical [start - overlap (- one bar), end) for each parent of `starts` from its own start, one batch
        per request chunk with rows."""
        log.info("gap_fill_started", schema=schema, start_ns=dict(starts), end_ns=end_ns)
        client = await anyio.to_thread.run_sync(self._historical.client)
        delivery = next(_DELIVERIES)
        for parent, start_ns in starts.items():
            market = self.spec.parents[parent]
            first = max(0, start_ns - REPLAY_OVERLAP_NS - BAR_NS.get(schema, 0))
            chunks = self._historical.fetch_chunks(client, parent, schema, first, end_ns)
            while True:
                try:
                    decoded = await anyio.to_thread.run_sync(
                        _next_decoded, chunks, self.symbols, market, self._decoded, end_ns + FUTURE_SLACK_NS
                    )
                except CorruptStream as exc:
                    if exc.record is not None:
                        self._quarantined(exc.record, f"historical {parent} {schema}")
                    raise
                if decoded is None:
                    break
                self._stats.gap_fill_records += decoded.rows
                if decoded.rows:
                    yield replace(decoded, delivery=delivery)

    def _request(self, replay: Mapping[str, int]) -> SessionRequest:
        settings = self.settings
        return SessionRequest(
            dataset=settings.dataset,
            gateway=settings.gateway,
            port=settings.port,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            symbols=tuple(self.spec.parents),
            replay={schema: replay[schema] for schema in self.spec.schemas},
        )

    async def _drain(self, child: LiveProcess) -> AsyncGenerator[DecodedBatch | Idle, None]:
        """Batches with rows until the child's stream ends, `Idle.TICK` every `idle_tick_s` without; then raise how
        the session ended (or SessionClosed by caller). Heartbeat- or notice-only batches are not batches."""
        decoder = StreamDecoder(
            child, self.symbols, self._decoded, schemas=self.spec.schemas, now_ns=self._clock.now_ns
        )
        delivery = next(_DELIVERIES)
        try:
            last_yield = time.monotonic()
            while True:
                try:
                    decoded = await anyio.to_thread.run_sync(decoder.get, 0.2)
                    self._stats.queue_depth = decoder.depth()
                except DecoderFinished:
                    break
                if decoded is not None and decoded.rows:
                    yield replace(decoded, delivery=delivery)
                    last_yield = time.monotonic()
                elif time.monotonic() - last_yield >= self._idle_tick_s:
                    yield Idle.TICK
                    last_yield = time.monotonic()
                idle = decoder.idle_s()
                if idle > self.settings.watchdog_s:
                    raise SessionStalled(
                        f"no record or heartbeat for {idle:.1f} s "
                        f"(heartbeat_interval_s={self.settings.heartbeat_interval_s}); dropping the session"
                    )
            try:
                await anyio.to_thread.run_sync(child.outcome)  # raises LiveSessionError on an abnormal close
            except UndecodableStream as exc:
                if exc.record is not None:
                    self._quarantined(exc.record, "live")
                raise
        finally:
            await decoder.aclose()  # off the event loop, and before `_session` closes the child's pipe under it

    def _decoded(self, decoded: DecodedBatch) -> None:
        """Log what a batch says about the source and quarantine its corrupt records (decoder or worker thread)."""
        _log_decoded(decoded)
        for record in decoded.corrupt:
            self._quarantined(record, decoded.source.value)

    def _quarantined(self, record: CorruptRecord, source: str) -> None:
        self._stats.corrupt_records += 1
        self._quarantine.add(record, source)


def _next_decoded(
    chunks: object, symbols: SymbolMap, market: str, on_decoded: Callable[[DecodedBatch], None], latest_ns: int
) -> DecodedBatch | None:
    records = next(chunks, None)  # type: ignore[call-overload]
    if records is None:
        return None
    decoded = decode_records(records, symbols, market=market, latest_ns=latest_ns)
    on_decoded(decoded)
    return decoded


def _log_decoded(decoded: DecodedBatch) -> None:
    for notice in decoded.notices:
        error = notice.kind is NoticeKind.ERROR
        emit = log.warning if error else log.info
        event = "gateway_error" if error else "gateway_system_message"
        emit(event, code=notice.code, message=redact_text(notice.message), ts_event=notice.ts_event)
    if decoded.unmapped:
        log.error("records_without_market", instrument_ids=list(decoded.unmapped)[:20], count=len(decoded.unmapped))
    if decoded.unsupported:
        log.error("records_of_unsupported_type", counts=dict(decoded.unsupported))


def _fill_order(schemas: Sequence[str]) -> list[str]:
    """Definitions first, so fills of other schemas already know their instruments' raw symbols."""
    return sorted(schemas, key=lambda schema: schema != "definition")
