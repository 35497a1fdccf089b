"""A Databento Live Subscription Gateway (LSG) on loopback: CRAM auth, subscriptions, DBN streaming from the tape.

Speaks exactly the text-then-DBN protocol of `databento.live` (0.88): greeting + `cram=`, `auth=...` reply
`success=1|session_id=N` or `success=0|error=...`, subscription lines, `start_session`, then Metadata, one
SymbolMappingMsg per (subscribed symbol, instrument), and records merged across schemas in emission order.
Sessions stream from tape cursors (no per-session copies) and wait on socket drain, so slow clients cost no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import secrets
import socket
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
import zstandard
from databento_dbn import (
    UNDEF_TIMESTAMP,
    ErrorCode,
    ErrorMsg,
    Metadata,
    SType,
    SymbolMappingMsg,
    SystemCode,
    SystemMsg,
)

from hydra_daemon.sim.config import DATASET
from hydra_daemon.sim.faults import FaultState, SessionAction
from hydra_daemon.sim.feed import MarketFeed
from hydra_daemon.sim.market import SCHEMAS, Emission
from hydra_daemon.sim.symbols import resolve

log = structlog.get_logger()

# DBN enum members are typed as plain str/int in databento_dbn's stubs; constructing them keeps mypy exact.
_INSTRUMENT_ID, _RAW_SYMBOL = SType("instrument_id"), SType("raw_symbol")
_HEARTBEAT = SystemCode(0)
_INTERNAL_ERROR, _INVALID_SUBSCRIPTION, _SKIPPED_RECORDS = ErrorCode(6), ErrorCode(5), ErrorCode(7)
_REPLAY_COMPLETED = SystemCode(3)
_SKIPPED = "Skipped records after slow reading: the session fell behind the venue's history window"

LSG_VERSION = "0.9.9"
DEFAULT_HEARTBEAT_S = 30
_BATCH_RECORDS = 512
_IDLE_POLL_S = 0.1
_CORRUPT_BYTES = b"\xff\x7f" * 64
_SHORT_RECORD = bytes([4, 1]) + bytes(14)
_SEND_BUFFER = 64 * 1024  # fixed kernel send buffer: a stalled reader backs up into drain() quickly


class ProtocolViolation(Exception):
    """The client sent something the gateway cannot parse."""


def parse_control_line(line: bytes) -> dict[str, str]:
    """`a=1|b=2\\n` -> {"a": "1", "b": "2"}."""
    text = line.decode("utf-8", errors="replace").strip()
    if not text:
        raise ProtocolViolation("empty control line")
    fields: dict[str, str] = {}
    for token in text.split("|"):
        key, sep, value = token.partition("=")
        if not sep:
            raise ProtocolViolation(f"control token without '=': {token!r}")
        fields[key] = value
    return fields


def expected_auth(challenge: str, api_key: str) -> str:
    """The CRAM response a client holding `api_key` sends (see databento.common.cram)."""
    return f"{hashlib.sha256(f'{challenge}|{api_key}'.encode()).hexdigest()}-{api_key[-5:]}"


@dataclass
class _Subscription:
    instruments: set[int] = field(default_factory=set)
    start_ns: int | None = None
    replay: bool = False


@dataclass
class _Session:
    session_id: int
    writer: asyncio.StreamWriter
    ts_out: bool
    heartbeat_s: float
    compressor: zstandard.ZstdCompressionObj | None
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    mappings: list[tuple[str, str, int, str]] = field(default_factory=list)  # (stype_in, symbol, id, raw)
    replaying: bool = False  # a `start=` replay whose end has not been announced yet
    outbox: list[bytes] = field(default_factory=list)  # framed control records queued by the listener
    actions: list[SessionAction] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class LiveGateway:
    """asyncio TCP server; many concurrent sessions; faults from the shared `FaultState` and `apply()`."""

    def __init__(
        self,
        feed: MarketFeed,
        api_keys: tuple[str, ...],
        faults: FaultState,
        host: str,
        port: int,
        replay_window_ns: int,
    ) -> None:
        self.feed = feed
        self.replay_window_ns = replay_window_ns
        self.api_keys = api_keys
        self.faults = faults
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sessions: dict[int, _Session] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reopen: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for session in list(self._sessions.values()):
            session.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def write_buffer_bytes(self) -> int:
        """Bytes queued in all session transports (bounded by backpressure, whatever the clients' speed)."""
        return sum(s.writer.transport.get_write_buffer_size() for s in self._sessions.values())

    def apply(self, action: SessionAction) -> int:
        """Apply a one-shot action to every open session; returns how many sessions it hit.

        RESET happens at once (even to a session blocked on a full socket); the others go through the session's
        pump so they land between whole records."""
        for session in list(self._sessions.values()):
            if action is SessionAction.RESET:
                _reset(session.writer)
                continue
            session.actions.append(action)
            session.wake.set()
        return len(self._sessions)

    async def go_down(self, seconds: float) -> None:
        """Reset every session and refuse connections for `seconds` wall seconds."""
        self.apply(SessionAction.RESET)
        if self._server is not None:
            self._server.close()
            self._server = None
        loop = asyncio.get_running_loop()
        if self._reopen is not None:
            self._reopen.cancel()
        self._reopen = loop.call_later(seconds, lambda: self._spawn(self.start()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- connection handling ----------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        session_id = next(self._ids)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        try:
            session = await self._handshake(session_id, reader, writer)
            if session is None:
                return
            self._sessions[session_id] = session
            try:
                await self._read_subscriptions(session, reader)
            except ProtocolViolation as exc:
                await self._reject(session, str(exc), with_metadata=True)
                return
            await self._stream(session, reader)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # venue shutdown; finishing normally avoids asyncio's 3.11 client_connected_cb noise
        finally:
            self._sessions.pop(session_id, None)
            if task is not None:
                self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _handshake(
        self, session_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Session | None:
        challenge = secrets.token_urlsafe(24)
        writer.write(f"lsg_version={LSG_VERSION}\ncram={challenge}\n".encode())
        await writer.drain()
        request = parse_control_line(await reader.readuntil(b"\n"))
        error = self._auth_error(challenge, request)
        if error is not None:
            writer.write(f"success=0|error={error}\n".encode())
            await writer.drain()
            return None
        writer.write(f"success=1|session_id={session_id}\n".encode())
        await writer.drain()
        heartbeat = request.get("heartbeat_interval_s") or DEFAULT_HEARTBEAT_S
        compressor = zstandard.ZstdCompressor().compressobj() if request.get("compression") == "zstd" else None
        return _Session(session_id, writer, request.get("ts_out") == "1", float(heartbeat), compressor)

    async def _read_subscriptions(self, session: _Session, reader: asyncio.StreamReader) -> None:
        """Read subscription lines up to `start_session`; a bad one is raised only then (the client expects nothing
        from the gateway before it starts the session)."""
        violation: ProtocolViolation | None = None
        while True:
            fields = parse_control_line(await reader.readuntil(b"\n"))
            if "start_session" in fields:
                if violation is not None:
                    raise violation
                return
            try:
                self._subscribe(session, fields, before_start=True)
            except ProtocolViolation as exc:
                violation = violation or exc

    async def _reject(self, session: _Session, error: str, with_metadata: bool) -> None:
        """After auth the client only parses DBN: say why in an ErrorMsg (after Metadata if none was sent yet)."""
        log.warning("sim_lsg_rejected_subscription", session_id=session.session_id, error=error)
        now = self.feed.clock.now_ns()
        head = (
            Metadata(DATASET, now, None, _INSTRUMENT_ID, None, ts_out=session.ts_out).encode() if with_metadata else b""
        )
        with contextlib.suppress(ConnectionError):
            await self._send(
                session, head + self._frame(session, bytes(ErrorMsg(now, error, code=_INVALID_SUBSCRIPTION)))
            )
            await self._close(session)

    def _auth_error(self, challenge: str, request: dict[str, str]) -> str | None:
        if "auth" not in request:
            return "Expected an authentication request"
        if self.faults.auth_failure or request["auth"] not in {expected_auth(challenge, k) for k in self.api_keys}:
            return "Authentication failed."
        if request.get("dataset") != DATASET:
            return f"Unknown dataset {request.get('dataset')!r}; this venue serves {DATASET}"
        if request.get("encoding", "dbn") != "dbn":
            return f"Unsupported encoding {request.get('encoding')!r}; only dbn"
        return None

    def _subscribe(self, session: _Session, fields: dict[str, str], before_start: bool) -> None:
        schema = fields.get("schema", "")
        if schema not in SCHEMAS:
            raise ProtocolViolation(f"unsupported schema {schema!r}; the simulated venue serves {SCHEMAS}")
        stype_in = fields.get("stype_in", "raw_symbol")
        try:
            pairs = resolve(self.feed.model.instruments, stype_in, fields.get("symbols", "").split(","))
        except ValueError as exc:
            raise ProtocolViolation(str(exc)) from None
        sub = session.subscriptions.setdefault(schema, _Subscription())
        if not before_start and not sub.instruments:
            sub.start_ns = None
        sub.instruments.update(inst.instrument_id for _, inst in pairs)
        start = fields.get("start")
        if before_start and start:
            sub.replay = True
            start_ns = int(start)
            sub.start_ns = start_ns if sub.start_ns is None else min(sub.start_ns, start_ns)
        known = {(symbol, iid) for _, symbol, iid, _ in session.mappings}
        for symbol, inst in pairs:
            if (symbol, inst.instrument_id) not in known:
                session.mappings.append((stype_in, symbol, inst.instrument_id, inst.raw_symbol))
                known.add((symbol, inst.instrument_id))

    # --- streaming --------------------------------------------------------------------------------------------

    def _initial_cursor(self, schema: str, sub: _Subscription) -> int:
        tape = self.feed.tape
        if sub.replay and sub.start_ns is not None:
            oldest = self.feed.clock.now_ns() - self.replay_window_ns
            return tape.first_published_index(schema, max(sub.start_ns, oldest))
        last = tape.last_key(schema)
        if schema == "definition" and last is not None:
            return tape.first_index(schema, last)  # the latest definitions snapshot, as the real gateway sends
        return tape.end(schema)

    def _mapping_records(self, session: _Session, first: int) -> bytes:
        now = self.feed.clock.now_ns()
        out = bytearray()
        for stype_in, symbol, iid, raw in session.mappings[first:]:
            msg = SymbolMappingMsg(0, iid, now, SType(stype_in), symbol, _RAW_SYMBOL, raw, now, UNDEF_TIMESTAMP)
            out += self._frame(session, bytes(msg))
        return bytes(out)

    async def _stream(self, session: _Session, reader: asyncio.StreamReader) -> None:
        metadata = Metadata(DATASET, self.feed.clock.now_ns(), None, _INSTRUMENT_ID, None, ts_out=session.ts_out)
        await self._send(session, metadata.encode() + self._mapping_records(session, 0))
        cursors = {schema: self._initial_cursor(schema, sub) for schema, sub in session.subscriptions.items()}
        session.replaying = any(sub.replay for sub in session.subscriptions.values())
        pump = asyncio.ensure_future(self._pump(session, cursors))
        listener = asyncio.ensure_future(self._listen(session, reader, cursors))
        try:
            done, _ = await asyncio.wait([pump, listener], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, listener):
                task.cancel()
            await asyncio.gather(pump, listener, return_exceptions=True)
        for task in done:
            try:
                task.result()
            except ProtocolViolation as exc:
                await self._reject(session, str(exc), with_metadata=False)

    async def _listen(self, session: _Session, reader: asyncio.StreamReader, cursors: dict[str, int]) -> None:
        """Read until the client hangs up; subscriptions on a running session start at the tape's end (no replay)."""
        while True:
            fields = parse_control_line(await reader.readuntil(b"\n"))
            if "schema" not in fields:
                continue
            before = len(session.mappings)
            self._subscribe(session, fields, before_start=False)
            cursors.setdefault(fields["schema"], self.feed.tape.end(fields["schema"]))
            session.outbox.append(self._mapping_records(session, before))
            session.wake.set()

    async def _pump(self, session: _Session, cursors: dict[str, int]) -> None:
        last_sent = time.monotonic()
        while True:
            if session.actions and await self._run_actions(session):
                return
            if self.faults.stall:
                await self._idle(session)
                last_sent = time.monotonic()  # stall is silent; restart the heartbeat clock afterwards
                continue
            if session.outbox:
                queued, session.outbox = b"".join(session.outbox), []
                await self._send(session, queued)
                continue
            if self._fell_off_the_tape(cursors):
                error = ErrorMsg(self.feed.clock.now_ns(), _SKIPPED, code=_SKIPPED_RECORDS)
                await self._send(session, self._frame(session, bytes(error)))
                await self._close(session)
                return
            chunk = b"" if self.faults.pause else self._collect(session, cursors)
            if chunk:
                await self._send(session, chunk)
                last_sent = time.monotonic()
                continue
            if session.replaying:
                session.replaying = False
                done = SystemMsg(self.feed.clock.now_ns(), "Finished replay", _REPLAY_COMPLETED)
                await self._send(session, self._frame(session, bytes(done)))
                last_sent = time.monotonic()
                continue
            if time.monotonic() - last_sent >= session.heartbeat_s:
                heartbeat = SystemMsg(self.feed.clock.now_ns(), "Heartbeat", _HEARTBEAT)
                await self._send(session, self._frame(session, bytes(heartbeat)))
                last_sent = time.monotonic()
                continue
            await self._idle(session)

    async def _idle(self, session: _Session) -> None:
        session.wake.clear()
        waits = [
            asyncio.ensure_future(session.wake.wait()),
            asyncio.ensure_future(self.feed.wait_for_data(_IDLE_POLL_S)),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def _fell_off_the_tape(self, cursors: dict[str, int]) -> bool:
        """True when history pruning overtook this session's cursor (records would silently go missing)."""
        return any(index < self.feed.tape.base(schema) for schema, index in cursors.items())

    def _collect(self, session: _Session, cursors: dict[str, int]) -> bytes:
        tape = self.feed.tape
        out = bytearray()
        count = 0
        while count < _BATCH_RECORDS:
            best: tuple[int, str, Emission] | None = None
            for schema, index in cursors.items():
                end = tape.end(schema)
                wanted = session.subscriptions[schema].instruments
                while index < end:
                    seq, emission = tape.get(schema, index)
                    if emission.instrument_id in wanted:
                        if best is None or seq < best[0]:
                            best = (seq, schema, emission)
                        break
                    index += 1
                cursors[schema] = index
            if best is None:
                break
            _, schema, emission = best
            cursors[schema] += 1
            out += self._frame(session, emission.data)
            count += 1
        return bytes(out)

    def _frame(self, session: _Session, record: bytes) -> bytes:
        if not session.ts_out:
            return record
        framed = bytearray(record)
        framed[0] += 2
        framed += struct.pack("<Q", self.feed.clock.now_ns())
        return bytes(framed)

    async def _send(self, session: _Session, data: bytes) -> None:
        if session.compressor is not None:
            data = session.compressor.compress(data) + session.compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        rate = self.faults.slow_bytes_per_s
        if rate > 0:
            step = max(1, int(rate / 10))
            for offset in range(0, len(data), step):
                session.writer.write(data[offset : offset + step])
                await session.writer.drain()
                await asyncio.sleep(0.1)
            return
        session.writer.write(data)
        await session.writer.drain()

    async def _run_actions(self, session: _Session) -> bool:
        """Run queued one-shot actions; True when the session is over."""
        actions, session.actions = session.actions, []
        for action in actions:
            if action is SessionAction.CORRUPT:
                session.writer.write(_CORRUPT_BYTES)
                await session.writer.drain()
                continue
            if action is SessionAction.SHORT_RECORD:
                await self._send(session, _SHORT_RECORD)
                continue
            if action is SessionAction.ERROR:
                error = ErrorMsg(self.feed.clock.now_ns(), "Simulated gateway error", code=_INTERNAL_ERROR)
                await self._send(session, self._frame(session, bytes(error)))
            await self._close(session)
            return True
        return False

    async def _close(self, session: _Session) -> None:
        """Graceful close (FIN), ending the zstd frame first."""
        if session.compressor is not None:
            session.writer.write(session.compressor.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
        session.writer.close()
        await session.writer.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with SO_LINGER 0, so the peer gets a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
