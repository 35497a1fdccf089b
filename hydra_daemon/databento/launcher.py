"""Forks Live client processes from a pre-imported launcher, so a (re)connect costs milliseconds, not the ~2 s of
importing the client (a zygote, like multiprocessing's forkserver but without re-running the parent's main module).

The launcher is started once per daemon process (`Launcher.shared`) as ``python -m hydra_daemon.databento.launcher
<fd>``; for each session it receives a control socket and the write end of a data pipe over its Unix
socket (SCM_RIGHTS), forks a child running `child.child_main` with them, and answers the child's pid. It exits
when the daemon closes its socket (also when the daemon dies); forked children are reaped by the kernel.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from hydra_daemon.databento.child import child_main
from hydra_daemon.logging_setup import configure_logging
from hydra_daemon.store.resident import bound_heap

_PID_BYTES = 8


class LauncherGone(RuntimeError):
    """The launcher process exited; the next `Launcher.shared()` starts a new one."""


class Launcher:
    """Parent side: a running launcher process and the socket to ask it for children."""

    _shared: Launcher | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            process_group=0,  # a terminal's Ctrl-C (SIGINT to the foreground group) is the daemon's to handle
        )
        theirs.close()
        self._socket = ours
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> Launcher:
        """The process-wide launcher, started on first use (or again after it exited)."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared._process.poll() is not None:
                cls._shared = cls()
            return cls._shared

    @property
    def pid(self) -> int:
        """The launcher's process id."""
        return self._process.pid

    def fork(self, control_fd: int, data_fd: int) -> int:
        """Fork a child running a session on these descriptors (the caller closes its copies); the child's pid.
        Blocks while the launcher still imports (first use)."""
        with self._lock:
            try:
                socket.send_fds(self._socket, [b"F"], [control_fd, data_fd])
                reply = self._socket.recv(_PID_BYTES, socket.MSG_WAITALL)
            except OSError as exc:
                raise LauncherGone(f"the live client launcher is gone: {exc}") from exc
        if len(reply) != _PID_BYTES:
            raise LauncherGone("the live client launcher exited")
        return int.from_bytes(reply, "little")


def serve(sock: socket.socket) -> None:
    """Launcher loop: one forked child per request, until the parent closes the socket."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our children
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1, 2)
        except OSError:
            return
        if not message:
            return
        pid = os.fork()
        if pid == 0:
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                child_main(Connection(fds[0]), fds[1])
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        sock.sendall(pid.to_bytes(_PID_BYTES, "little"))


def main(fd: int) -> None:
    """Launcher process: the daemon's log format on the shared stderr; Ctrl-C is the daemon's to handle (a
    terminal sends SIGINT to the whole process group), so the launcher and its children ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bound_heap()  # its children (forked) keep it: they run as long as a Live session
    configure_logging(level=logging.WARNING)
    serve(socket.socket(fileno=fd))


if __name__ == "__main__":
    main(int(sys.argv[1]))
