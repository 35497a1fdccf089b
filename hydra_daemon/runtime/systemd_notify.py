"""sd_notify(3) over `$NOTIFY_SOCKET`: READY/STATUS/STOPPING/WATCHDOG datagrams; a no-op without the variable."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog


class Notifier:
    """Sends notify datagrams to systemd; never blocks (a full receive queue drops the message)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        """True when `$NOTIFY_SOCKET` names a socket."""
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; True if it was handed to the kernel."""
        if self._sock is None or self._address is None:
            return False
        message = "\n".join(assignments).encode("utf-8")
        try:
            self._sock.sendto(message, self._address)
        except OSError as exc:
            structlog.get_logger().warning("sd_notify_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    def ready(self, status: str) -> bool:
        """READY=1 plus a status line."""
        return self.notify("READY=1", status_line(status))

    def status(self, status: str) -> bool:
        """STATUS=<one line>."""
        return self.notify(status_line(status))

    def stopping(self, status: str = "stopping") -> bool:
        """STOPPING=1 plus a status line."""
        return self.notify("STOPPING=1", status_line(status))

    def watchdog(self) -> bool:
        """WATCHDOG=1 keep-alive ping."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Release the socket; later calls are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_line(text: str) -> str:
    """`STATUS=` assignment with `text` flattened to one line."""
    return "STATUS=" + " ".join(text.split())


def watchdog_interval_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """`$WATCHDOG_USEC` in seconds when it applies to this process (`$WATCHDOG_PID` unset or ours), else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    target = env.get("WATCHDOG_PID", "")
    if target and (not target.isdigit() or int(target) != (os.getpid() if pid is None else pid)):
        return None
    return int(usec) / 1_000_000


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    structlog.get_logger().warning("notify_socket_ignored", reason="NOTIFY_SOCKET is neither a path nor @abstract")
    return None
