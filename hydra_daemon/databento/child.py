"""The child side of a Live session (runs in a process forked by `live_launcher`, under its own GIL).

It connects with the real `databento.Live` client, subscribes, starts, and writes every record as raw DBN bytes
(`Live.add_stream`) into a buffered pipe, flushed every `FLUSH_S`; a full pipe blocks the client's socket reads, so
a slow parent pushes back on the gateway through TCP. It reports on a control connection: ``started`` (with the
session id), then ``closed``, ``failed`` (with the redacted error) or ``corrupt`` (the client could not decode the
gateway's stream: it logs why and closes as if cleanly, or re-raises a panic of databento_dbn) when the session
ends, or ``auth_refused`` when the gateway rejected the key (the client raises a plain BentoError for that; only its
log record tells it apart). The API key arrives over that private connection, never in argv or an environment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO

import databento

from hydra_daemon.databento.dbn_runs import is_panic
from hydra_daemon.redaction import redact_text, register_secret

FLUSH_S = 0.02
"""The child flushes records to the parent at least this often."""
CHILD_BUFFER_BYTES = 1 << 18
AUTH_REJECTED_LOG = "CRAM authentication error"
"""How `databento.live.protocol` logs the gateway's ``success=0`` answer to our authentication."""


class _AuthRejections(logging.Handler):
    """Notes the client's log record of a gateway authentication rejection."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(AUTH_REJECTED_LOG):
            self.seen = True


class _DecodeFailure(logging.Handler):
    """Remembers why the client's DBN decoder failed: databento logs a DBNError on `databento.live.protocol`, asyncio
    logs a panic on a malformed record as a fatal protocol error; either way the transport closes and the session
    then looks closed normally."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        detail = f"{record.exc_info[1]}" if record.exc_info and record.exc_info[1] else record.getMessage()
        if self.reason is None and ("error decoding DBN record" in record.getMessage() or "Malformed" in detail):
            self.reason = redact_text(detail)[:500]


@dataclass(frozen=True)
class SessionRequest:
    """What the child subscribes: every schema of `replay` (schema -> replay start, UTC ns) for `symbols` (parent
    stype)."""

    dataset: str
    gateway: str | None
    port: int
    heartbeat_interval_s: int
    symbols: tuple[str, ...]
    replay: Mapping[str, int]


def child_main(control: Connection, data_fd: int) -> None:
    """Run one session: stream raw records into `data_fd`, report on `control`."""
    out = open(data_fd, "wb", buffering=CHILD_BUFFER_BYTES)  # noqa: SIM115 - closed below
    try:
        key, request = control.recv()
        register_secret(key)
        rejections = _AuthRejections()
        logging.getLogger("databento.live.protocol").addHandler(rejections)
        failure = _DecodeFailure()
        for name in ("databento.live.protocol", "asyncio"):
            logging.getLogger(name).addHandler(failure)
        try:
            client = _connect(key, request, out)
        except Exception as exc:
            control.send(("auth_refused" if rejections.seen else "failed", _describe(exc)))
            return
        control.send(("started", client.session_id))
        outcome = _pump(client, out, control)
        if failure.reason is not None:
            outcome = ("corrupt", failure.reason)
        out.close()  # EOF for the parent: everything the session sent is in the pipe
        control.send(outcome)
    except (BrokenPipeError, EOFError, ConnectionResetError):
        return  # the parent went away
    finally:
        with contextlib.suppress(OSError):
            out.close()


def _connect(key: str, request: SessionRequest, out: IO[bytes]) -> databento.Live:
    client = databento.Live(
        key=key,
        gateway=request.gateway,
        port=request.port,
        heartbeat_interval_s=request.heartbeat_interval_s,
        reconnect_policy="none",
    )
    client.add_stream(out)
    try:
        for schema, start in request.replay.items():
            client.subscribe(
                dataset=request.dataset, schema=schema, symbols=list(request.symbols), stype_in="parent", start=start
            )
        client.start()
    except BaseException:
        client.terminate()
        raise
    return client


def _pump(client: databento.Live, out: IO[bytes], control: Connection) -> tuple[str, str | None]:
    """Flush records to the parent until the session closes (or the parent says stop); the session's outcome."""
    while client.is_connected():
        try:
            if control.poll(FLUSH_S):
                control.recv()  # "stop"
                client.terminate()
        except EOFError:
            client.terminate()
            raise
        out.flush()
    try:
        client.block_for_close()
    except Exception as exc:
        return "failed", _describe(exc)
    except BaseException as exc:  # the client re-raises a panic of databento_dbn: the stream was corrupt
        if not is_panic(exc):
            raise
        return "corrupt", _describe(exc)
    out.flush()
    return "closed", None


def _describe(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")
