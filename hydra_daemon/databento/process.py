"""Parent side of one Databento Live session running in a child process (`live_child`, forked by `live_launcher`),
so the client's per-record decoding runs under its own GIL, on another core than our decoding and commits.

The child streams raw DBN bytes (Metadata header, then records) into a pipe we read; it reports ``started``,
``closed`` or ``failed`` on a control socket. Stopping tells it to terminate its client and kills it if it lingers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import threading
from multiprocessing.connection import Connection
from typing import Any

from hydra_daemon.databento.child import SessionRequest
from hydra_daemon.databento.dbn_runs import CorruptRecord, CorruptStream
from hydra_daemon.databento.launcher import Launcher

PIPE_BYTES = 1 << 20
READ_BYTES = 1 << 22
OUTCOME_WAIT_S = 5.0
STOP_GRACE_S = 2.0


class LiveSessionError(RuntimeError):
    """The child's session failed: connecting, authenticating, or an abnormal close (message already redacted)."""


class LiveAuthError(LiveSessionError):
    """The gateway rejected the API key: retrying soon with the same key cannot help."""


class UndecodableStream(CorruptStream):
    """The child's Live client could not decode a record the gateway sent, and ended the session there (it drops the
    record, so neither its bytes nor its time reach us)."""


class LiveProcess:
    """One child session: start it, read its raw record bytes, learn how it ended, stop it."""

    def __init__(self, key: str, request: SessionRequest) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            self._pid = Launcher.shared().fork(theirs.fileno(), write_fd)
        except BaseException:
            ours.close()
            os.close(read_fd)
            raise
        finally:
            theirs.close()
            os.close(write_fd)
        self._control = Connection(ours.detach())
        self._data_fd = read_fd
        self._stopped = False
        self._control.send((key, request))

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._pid

    def wait_started(self, timeout: float) -> str | None:
        """Block until the child's session streams; its session id. LiveSessionError if it could not start."""
        status, detail = self._next_status(timeout)
        if status == "auth_refused":
            raise LiveAuthError(detail)
        if status != "started":
            raise LiveSessionError(detail or f"the live client process ended while connecting ({status})")
        return detail

    def read(self, timeout: float) -> bytes | None:
        """Raw record bytes the child sent (b"" at end of stream), or None if none within `timeout`."""
        ready, _, _ = select.select([self._data_fd], [], [], timeout)
        if not ready:
            return None
        return os.read(self._data_fd, READ_BYTES)

    def outcome(self) -> None:
        """After end of stream: return if the gateway closed the session, raise LiveSessionError if it failed and
        `UndecodableStream` (with the reason as its record) if the client could not decode what the gateway sent."""
        status, detail = self._next_status(OUTCOME_WAIT_S)
        if status == "failed":
            raise LiveSessionError(detail)
        if status == "exited":
            raise LiveSessionError(
                f"the live client process (pid {self._pid}) exited without reporting how the session ended (killed?)"
            )
        if status == "corrupt":
            reason = f"the Live client could not decode the gateway's stream: {detail}"
            raise UndecodableStream(reason, record=CorruptRecord(-1, -1, 0, reason, b"", breaks_stream=True))

    def stop(self) -> None:
        """Abandon the session: tell the child, close our ends, kill it if it lingers (without blocking us)."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError, ValueError):
            self._control.send("stop")
        os.close(self._data_fd)  # a child blocked on a full pipe gets EPIPE
        threading.Thread(target=self._reap, name="hydra-live-reaper", daemon=True).start()

    def _reap(self) -> None:
        """The child closes its control end when it exits; kill it if that does not happen in time."""
        with contextlib.suppress(OSError, EOFError):
            while self._control.poll(STOP_GRACE_S):
                self._control.recv()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        self._control.close()

    def _next_status(self, timeout: float) -> tuple[str, Any]:
        try:
            if self._control.poll(timeout):
                status, detail = self._control.recv()
                return str(status), detail
        except (EOFError, OSError):
            return "exited", None
        return "timeout", None
