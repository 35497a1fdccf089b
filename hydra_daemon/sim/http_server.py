"""A small asyncio HTTP/1.1 server dispatching to `Route`s (one request per connection, `Connection: close`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import structlog

from hydra_daemon.sim.http_types import HttpRequest, HttpResponse, Route

log = structlog.get_logger()

_MAX_BODY = 16 * 2**20
_HEADER_TIMEOUT_S = 30.0


def json_response(status: int, payload: object) -> HttpResponse:
    """A JSON answer, e.g. the `{"detail": ...}` errors Databento's clients expect."""
    return HttpResponse(status=status, body=json.dumps(payload).encode(), content_type="application/json")


class HttpServer:
    """Serves `routes` in order: the first that answers (not None) wins; no route -> 404 JSON.

    Routes in `threaded` are thread-safe and slow (e.g. zip building): they answer in a worker thread; the others
    answer on the loop (they read loop-owned state such as the tape).
    """

    def __init__(self, host: str, port: int, routes: Sequence[Route], threaded: Sequence[Route] = ()) -> None:
        self.host = host
        self.port = port
        self.routes = list(routes)
        self.threaded = list(threaded)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            request = await asyncio.wait_for(read_request(reader), _HEADER_TIMEOUT_S)
            response = await self._dispatch(request) if request is not None else None
            if response is None:
                response = json_response(400, {"detail": "Malformed HTTP request."})
            if response.delay_s > 0:
                await asyncio.sleep(response.delay_s)
            writer.write(encode_response(response))
            await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # venue shutdown; finishing normally avoids asyncio's 3.11 client_connected_cb noise
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _dispatch(self, request: HttpRequest) -> HttpResponse:
        for route in self.routes:
            try:
                if any(route is t for t in self.threaded):
                    response = await asyncio.to_thread(route.respond, request)
                else:
                    response = route.respond(request)
            except Exception as exc:  # a route bug must not take the venue down
                log.exception("sim_http_route_failed", path=request.path)
                return json_response(500, {"detail": f"Internal error in simulated venue: {exc}"})
            if response is not None:
                return response
        return json_response(404, {"detail": f"No such endpoint: {request.method} {request.path}"})


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """Parse one request (Content-Length bodies only); None when the bytes are not HTTP."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or "0")
    if length > _MAX_BODY:
        return None
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    form: dict[str, str] = {}
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    return HttpRequest(method=method.upper(), path=url.path, query=query, form=form, headers=headers)


def encode_response(response: HttpResponse) -> bytes:
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else "Status"
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in response.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
