"""Health socket: a Unix stream socket answering each connection with one JSON status document.

Protocol: connect, optionally send a line (``status``), read one JSON document until the server closes. The
document holds version, pid, uptime, the store URI with credentials masked, per-pipeline stats with restart
bookkeeping, periodic jobs, and an overall ``status`` of ``ok``, ``degraded`` or ``failing``. The client side
(`hydra-daemon health`) lives in `hydra_daemon.runtime.health_client`, which imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import SocketListener, SocketStream

from hydra_daemon.redaction import redact_value
from hydra_daemon.runtime.supervisor import Supervisor
from hydra_daemon.store.uri import redact_uri

SOCKET_MODE = 0o660
_MAX_CLIENTS = 16
_MAX_REQUEST_BYTES = 1024
_CLIENT_GRACE_S = 2.0


class HealthSocketError(RuntimeError):
    """The health socket cannot be created (in use by a live daemon, or not a socket)."""


@dataclass
class DaemonState:
    """What the health answer reports besides the supervisor: identity, readiness and the stall threshold."""

    store_uri: str
    stall_after_s: float
    started_at: datetime
    started_monotonic: float
    ready: bool = False
    stopping: bool = False

    @classmethod
    def now(cls, store_uri: str, stall_after_s: float) -> DaemonState:
        """State for a daemon starting now."""
        return cls(store_uri, stall_after_s, datetime.now(UTC), time.monotonic())


@functools.cache
def daemon_version() -> str:
    """The installed hydra-daemon version."""
    try:
        return metadata.version("hydra-daemon")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def overall_status(
    pipelines: dict[str, dict[str, Any]], jobs: dict[str, dict[str, Any]], *, ready: bool, stalled: bool, stopping: bool
) -> str:
    """failing: no pipeline running, or no progress for too long, or stopping; degraded: anything else amiss."""
    states = [p["supervisor_state"] for p in pipelines.values()]
    if stopping or stalled or not states or all(s != "running" for s in states):
        return "failing"
    if not ready or any(s != "running" for s in states) or any(j["last_ok"] is False for j in jobs.values()):
        return "degraded"
    return "ok"


def health_document(supervisor: Supervisor, state: DaemonState) -> dict[str, Any]:
    """The JSON-safe health answer, with every secret masked."""
    supervisor.sample_progress()
    now = time.monotonic()
    pipelines = {name: record.as_dict(now) for name, record in supervisor.records.items()}
    jobs = {name: job.as_dict() for name, job in supervisor.jobs.items()}
    progress_age = supervisor.progress_age_s()
    document = {
        "daemon": "hydra-daemon",
        "version": daemon_version(),
        "pid": os.getpid(),
        "started_at": state.started_at.isoformat(),
        "uptime_s": round(now - state.started_monotonic, 3),
        "store": redact_uri(state.store_uri),
        "ready": state.ready,
        "progress_age_s": round(progress_age, 3),
        "status": overall_status(
            pipelines, jobs, ready=state.ready, stalled=progress_age > state.stall_after_s, stopping=state.stopping
        ),
        "pipelines": pipelines,
        "jobs": jobs,
    }
    redacted: dict[str, Any] = redact_value(document)
    return redacted


async def open_health_socket(path: Path) -> SocketListener:
    """Listen at `path` (mode 0660, parent created); a stale socket is replaced, a live one refused."""
    await _prepare_socket_path(path)
    listener = await anyio.create_unix_listener(path, mode=SOCKET_MODE)
    structlog.get_logger().info("health_socket_listening", socket=str(path))
    return listener


async def serve_health(listener: SocketListener, path: Path, answer: Callable[[], dict[str, Any]]) -> None:
    """Answer every connection with `answer()` as JSON until cancelled; then close and remove the socket file."""
    limiter = anyio.CapacityLimiter(_MAX_CLIENTS)
    log = structlog.get_logger()

    async def handle(stream: SocketStream) -> None:
        async with limiter, stream:
            try:
                payload = (json.dumps(answer(), sort_keys=True) + "\n").encode("utf-8")
                await stream.send(payload)
                await stream.send_eof()
                with anyio.move_on_after(_CLIENT_GRACE_S):
                    await _drain(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                log.debug("health_client_gone", error=f"{type(exc).__name__}: {exc}")

    try:
        async with listener:
            await listener.serve(handle)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_unlink_socket, path)


async def _drain(stream: SocketStream) -> None:
    """Read (and ignore) what the client sends until it closes, bounded in size."""
    received = 0
    while received < _MAX_REQUEST_BYTES:
        try:
            chunk = await stream.receive(_MAX_REQUEST_BYTES)
        except anyio.EndOfStream:
            return
        received += len(chunk)


async def _prepare_socket_path(path: Path) -> None:
    """Create the parent directory; refuse a live socket or a non-socket file; remove a stale socket."""
    if not await anyio.to_thread.run_sync(_socket_file_present, path):
        return
    try:
        with anyio.fail_after(2):
            stream = await anyio.connect_unix(path)
    except (OSError, TimeoutError):
        await anyio.to_thread.run_sync(_unlink_socket, path)
        return
    await stream.aclose()
    raise HealthSocketError(f"{path} is answered by another running daemon; stop it or set health_socket elsewhere")


def _socket_file_present(path: Path) -> bool:
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise HealthSocketError(f"{path} exists and is not a socket; remove it or set health_socket elsewhere")
    return True


def _unlink_socket(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
