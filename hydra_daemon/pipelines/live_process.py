"""One Databento Live session in a child process, so the client's per-record decoding runs under its own GIL.

The child (`child_main`) connects with the real `databento.Live` client, subscribes, starts, and writes every record
as raw DBN bytes (`Live.add_stream`) into a buffered pipe, flushed every `FLUSH_S`; a full pipe blocks the client's
socket reads, so a slow parent pushes back on the gateway through TCP. It reports on a control pipe: ``started``
(with the session id), then ``closed`` or ``failed`` (with the redacted error) when the session ends.

The API key travels over the private control pipe, never in argv or the environment of other processes. Children are
forked from a forkserver that has this module preloaded, so a (re)connect does not pay for importing the client.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import select
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO, Any

import databento

from hydra_daemon.redaction import redact_text, register_secret

FLUSH_S = 0.02
"""The child flushes records to the parent at least this often."""
CHILD_BUFFER_BYTES = 1 << 18
PIPE_BYTES = 1 << 20
READ_BYTES = 1 << 22
OUTCOME_WAIT_S = 5.0

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload([__name__])


class LiveSessionError(RuntimeError):
    """The child's session failed: connecting, authenticating, or an abnormal close (message already redacted)."""


@dataclass(frozen=True)
class SessionRequest:
    """What the child subscribes: every schema for `symbols` (parent stype), each with its replay start."""

    dataset: str
    gateway: str | None
    port: int
    heartbeat_interval_s: int
    symbols: tuple[str, ...]
    replay: Mapping[str, int]


def child_main(control: Connection, data: Connection) -> None:
    """Child process entry: run one session, stream raw records into `data`, report on `control`."""
    key, request = control.recv()
    register_secret(key)
    out = open(os.dup(data.fileno()), "wb", buffering=CHILD_BUFFER_BYTES)  # noqa: SIM115 - closed below
    data.close()
    try:
        try:
            client = _connect(key, request, out)
        except Exception as exc:
            control.send(("failed", _describe(exc)))
            return
        control.send(("started", client.session_id))
        outcome = _pump(client, out, control)
        with contextlib.suppress(OSError):
            out.close()  # EOF for the parent: everything the session sent is in the pipe
        control.send(outcome)
    except (BrokenPipeError, EOFError, ConnectionResetError):
        return  # the parent went away


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
    out.flush()
    return "closed", None


def _describe(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")


class LiveProcess:
    """Parent side of one child session: start it, read its raw record bytes, learn how it ended, stop it."""

    def __init__(self, key: str, request: SessionRequest) -> None:
        self._control, child_control = _context.Pipe()
        self._data, child_data = _context.Pipe(duplex=False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._data.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._process = _context.Process(
            target=child_main, args=(child_control, child_data), name="hydra-live-client", daemon=True
        )
        self._process.start()
        child_control.close()
        child_data.close()
        self._control.send((key, request))
        self._stopped = False

    def wait_started(self, timeout: float) -> str | None:
        """Block until the child's session streams; its session id. LiveSessionError if it could not start."""
        status, detail = self._next_status(timeout)
        if status != "started":
            raise LiveSessionError(detail or f"the live client process ended while connecting ({status})")
        return detail

    def read(self, timeout: float) -> bytes | None:
        """Raw record bytes the child sent (b"" at end of stream), or None if none within `timeout`."""
        fd = self._data.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        return os.read(fd, READ_BYTES)

    def outcome(self) -> None:
        """After end of stream: return if the gateway closed the session, raise LiveSessionError if it failed."""
        status, detail = self._next_status(OUTCOME_WAIT_S)
        if status == "failed":
            raise LiveSessionError(detail)

    def stop(self) -> None:
        """Abandon the session: tell the child, close our ends, make sure the process goes (without blocking)."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError, ValueError):
            self._control.send("stop")
        threading.Thread(target=self._reap, name="hydra-live-reaper", daemon=True).start()

    def _reap(self) -> None:
        self._process.join(timeout=2.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5.0)
        for conn in (self._control, self._data):
            conn.close()

    def _next_status(self, timeout: float) -> tuple[str, Any]:
        try:
            if self._control.poll(timeout):
                status, detail = self._control.recv()
                return str(status), detail
        except (EOFError, OSError):
            return "exited", None
        if not self._process.is_alive():
            return "exited", None
        return "timeout", None
