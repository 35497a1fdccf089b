"""The health socket under abuse: any bytes get a well-formed HTTP answer or a close, never a crash of the server;
1,000 concurrent clients neither stall the event loop nor keep the next well-formed request from being answered."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.runtime.health import open_health_socket, serve_health
from hydra_daemon.runtime.health_client import NO_ANSWER, health_command
from hydra_daemon.runtime.http_server import Response, Route, text

ANSWERS = (b"200", b"400", b"404", b"405", b"413", b"431", b"503")


def _routes() -> dict[str, Route]:
    return {
        "/health": lambda: Response(200, json.dumps({"status": "ok"}).encode(), "application/json"),
        "/metrics": lambda: text(200, "hydra_up 1"),
        "/broken": lambda: Response(200, json.dumps({"at": object()}).encode()),  # raises TypeError
    }


class Server:
    """The health server on its own event loop (a blocking portal), plus a ticker task standing in for capture on
    the same loop."""

    def __init__(self, path: Path, portal: Any) -> None:
        self.path = path
        self.ticks = 0
        listener = portal.call(open_health_socket, path)
        self._served = portal.start_task_soon(serve_health, listener, path, _routes())
        self._ticker = portal.start_task_soon(self._tick)

    async def _tick(self) -> None:
        while True:
            await anyio.sleep(0.01)
            self.ticks += 1

    def stop(self) -> None:
        for future in (self._served, self._ticker):
            future.cancel()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("abuse") / "health.sock"
    with anyio.from_thread.start_blocking_portal() as portal:
        running = Server(path, portal)
        yield running
        running.stop()


def _exchange(path: Path, request: bytes, *, half_close: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(20)
        client.connect(str(path))
        client.sendall(request)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    return data


def _ok(path: Path) -> bool:
    answer = _exchange(path, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", half_close=False)
    return answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b'{"status": "ok"}')


_request_parts = st.sampled_from(
    [b"GET ", b"HEAD ", b"POST ", b"/health", b"/metrics", b"/x?y", b" HTTP/1.1", b" HTTP/1.0", b" HTTP/9.9",
     b"\r\n", b"\n", b"Host: x\r\n", b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"\x00", b"\xff",
     b": ", b"a" * 100, b"\r\n\r\n", b"hello"]
)  # fmt: skip
_requests = st.one_of(st.lists(_request_parts, max_size=12).map(b"".join), st.binary(max_size=300))


@settings(max_examples=200, deadline=None)
@given(request=_requests)
def test_any_bytes_get_a_well_formed_answer_or_a_close(server: Server, request: bytes) -> None:
    answer = _exchange(server.path, request)
    assert answer == b"" or (answer.startswith(b"HTTP/1.1 ") and answer[9:12] in ANSWERS), answer[:80]


def test_a_thousand_concurrent_clients_neither_stall_the_loop_nor_block_the_next_request(server: Server) -> None:
    clients = []
    try:
        for i in range(1000):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(20)
            client.connect(str(server.path))
            client.sendall([b"GET /hea", b"\xff\xfe garbage", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"][i % 3])
            clients.append(client)
        ticks = server.ticks
        answers = [client.recv(64) for client in clients[:100]]
        assert all(a == b"" or a.startswith(b"HTTP/1.1 ") for a in answers)
        assert sum(a.startswith(b"HTTP/1.1 503 ") for a in answers) > 0, "surplus clients are refused at once"
        assert server.ticks > ticks, "the event loop kept running other tasks during the storm"
    finally:
        for client in clients:
            client.close()
    assert _ok(server.path)


def test_a_route_that_raises_answers_500_and_the_server_goes_on(server: Server) -> None:
    """A handler's exception reached the accept loop and ended the server, and with it the daemon's task group
    (found by a review helper)."""
    answer = _exchange(server.path, b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ") and b"http_route_failed" in answer
    assert _ok(server.path)


def test_the_health_command_says_in_one_line_when_the_socket_answers_no_health_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--socket` pointing at another service answering JSON that is not an object raised AttributeError (a
    traceback) instead of the command's one line and exit 2 (found by a review helper)."""
    path = tmp_path / "other.sock"
    routes: dict[str, Route] = {"/health": lambda: Response(200, b"[1, 2]", "application/json")}
    with anyio.from_thread.start_blocking_portal() as portal:
        listener = portal.call(open_health_socket, path)
        served = portal.start_task_soon(serve_health, listener, path, routes)
        try:
            assert health_command(path) == NO_ANSWER
        finally:
            served.cancel()
    assert "not a health document" in capsys.readouterr().err
