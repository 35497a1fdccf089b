"""A small HTTP/1.1 server (h11 over anyio) for the health socket and the optional metrics listener.

One request per connection (`Connection: close`), GET and HEAD only. Every connection is bounded so a slow or
hostile client cannot hurt capture: at most `MAX_CLIENTS` at once (others get 503 at once; at most `MAX_ACCEPTED`
connections are held, the kernel's backlog holds the rest), request head at most `MAX_REQUEST_BYTES` (431), request
body refused (413), and the whole exchange within `CLIENT_TIMEOUT_S` (then the connection is dropped). Malformed
requests get 400, unknown paths 404, other methods 405. A failed accept (out of file descriptors) or a client gone
mid-answer is logged and passed over: the server's end would end the daemon.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

import anyio
import h11
import structlog
from anyio.abc import Listener, SocketListener, SocketStream
from anyio.streams.stapled import MultiListener

MAX_CLIENTS = 16
MAX_REQUEST_BYTES = 8192
CLIENT_TIMEOUT_S = 5.0
_READ_BYTES = 4096
_LINGER_BYTES = 1 << 16
_SURPLUS_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Response:
    """An answer: status, content type, body and extra headers."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Route = Callable[[], Response]
"""Builds the answer to a GET of one path (runs on the event loop: must be quick and never block)."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode())


async def serve_http(listener: Listener[SocketStream], routes: Mapping[str, Route]) -> None:
    """Answer connections on `listener` from `routes` (path -> GET handler) until cancelled."""
    limiter = anyio.CapacityLimiter(MAX_CLIENTS)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            try:
                limiter.acquire_nowait()
            except anyio.WouldBlock:
                with (
                    anyio.move_on_after(_SURPLUS_TIMEOUT_S),
                    contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError),
                ):
                    await _send(stream, text(503, "too many clients"), head_only=False)
                    await _linger(stream)
                return
            try:
                with anyio.move_on_after(CLIENT_TIMEOUT_S):
                    await _exchange(stream, routes)
                    await _linger(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                structlog.get_logger().debug("http_client_gone", error=f"{type(exc).__name__}: {exc}")
            finally:
                limiter.release()

    async with listener, anyio.create_task_group() as group:
        for one in _sockets(listener):
            group.start_soon(_accept_loop, one, handle)


def _sockets(listener: Listener[SocketStream]) -> list[SocketListener]:
    """The socket listeners behind `listener` (a TCP `MultiListener` holds one per address)."""
    listeners = listener.listeners if isinstance(listener, MultiListener) else [listener]
    sockets = [one for one in listeners if isinstance(one, SocketListener)]
    if len(sockets) != len(listeners):
        raise TypeError(f"serve_http needs socket listeners, got {listener!r}")
    return sockets


MAX_ACCEPTED = 4 * MAX_CLIENTS
"""Connections held at once, served or being refused: beyond this the kernel's backlog holds them (then refuses)."""
_ACCEPT_RETRY_S = 0.1


async def _accept_loop(listener: SocketListener, handle: Callable[[SocketStream], Awaitable[None]]) -> None:
    """Accept while fewer than MAX_ACCEPTED connections are open; an accept that fails (EMFILE, ENFILE, ENOBUFS…)
    is logged and retried, never the end of the server (its end would end the daemon)."""
    held = anyio.Semaphore(MAX_ACCEPTED)

    async def handled(stream: SocketStream) -> None:
        try:
            await handle(stream)
        finally:
            held.release()

    async with anyio.create_task_group() as group:
        while True:
            await held.acquire()
            try:
                stream = await listener.accept()
            except (anyio.BrokenResourceError, OSError) as exc:
                held.release()
                structlog.get_logger().warning(
                    "http_accept_failed", error=f"{type(exc.__cause__ or exc).__name__}: {exc.__cause__ or exc}"
                )
                await anyio.sleep(_ACCEPT_RETRY_S)
                continue
            group.start_soon(handled, stream)


async def _exchange(stream: SocketStream, routes: Mapping[str, Route]) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    try:
        request = await _read_request(stream, connection)
    except _BadRequest as bad:
        await _send(stream, text(bad.status, str(bad)), head_only=False)
        return
    if request is None:
        return
    method = request.method.decode("ascii", "replace")
    path = request.target.decode("ascii", "replace").split("?", 1)[0]
    await _send(stream, _route(routes, method, path), head_only=method == "HEAD")


async def _linger(stream: SocketStream) -> None:
    """Half-close, then discard what the client still sends (bounded) until it closes: closing with unread input
    would reset the connection and could destroy the answer before the client read it."""
    await stream.send_eof()
    discarded = 0
    with contextlib.suppress(anyio.EndOfStream):
        while discarded < _LINGER_BYTES:
            discarded += len(await stream.receive(_READ_BYTES))


async def _read_request(stream: SocketStream, connection: h11.Connection) -> h11.Request | None:
    """The request head, once the (empty) request has ended; None when the client left without one."""
    request: h11.Request | None = None
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            raise _BadRequest(exc.error_status_hint, f"bad request: {exc}") from None
        if event is h11.NEED_DATA:
            try:
                chunk = await stream.receive(_READ_BYTES)
            except anyio.EndOfStream:
                chunk = b""
            connection.receive_data(chunk)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            raise _BadRequest(413, "request bodies are not accepted")
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _route(routes: Mapping[str, Route], method: str, path: str) -> Response:
    handler = routes.get(path)
    if handler is None:
        return text(404, f"not found; paths: {', '.join(sorted(routes))}")
    if method not in ("GET", "HEAD"):
        return Response(405, b"use GET\n", headers={"Allow": "GET, HEAD"})
    try:
        return handler()
    except Exception as error:  # raised into the accept loop it would end the server, and with it the daemon
        structlog.get_logger().error("http_route_failed", path=path, error=f"{type(error).__name__}: {error}")
        return text(500, "internal error answering this path; see the daemon's log (http_route_failed)")


async def _send(stream: SocketStream, response: Response, *, head_only: bool) -> None:
    """Write `response` (formatted here: h11 only parses, so a 400/503 can be sent whatever the parser's state)."""
    headers = {
        "Content-Type": response.content_type,
        "Content-Length": str(len(response.body)),
        "Connection": "close",
        "Cache-Control": "no-store",
        **response.headers,
    }
    head = f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    await stream.send(head.encode("latin-1") + (b"" if head_only else response.body))
