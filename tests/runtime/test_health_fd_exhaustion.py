"""The health socket when clients hold more connections than the process may open files: the server must shed them
(answer or refuse) and keep serving, never end — its end takes the whole daemon down (run_daemon's task group), and
systemd gives up after StartLimitBurst=5 such exits in 10 minutes."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import flood_of_idle_clients

SERVER = textwrap.dedent(
    """
    import os, resource, sys
    from pathlib import Path

    import anyio

    from hydra_daemon.runtime.health import open_health_socket, serve_health
    from hydra_daemon.runtime.http_server import Response

    ROUTES = {"/health": lambda: Response(200, b'{"status": "ok"}', "application/json")}

    async def main(path: str) -> None:
        listener = await open_health_socket(Path(path))
        # The daemon's own descriptors are what they are; leave room for 48 clients (systemd's default soft limit,
        # 1024, leaves room for about a thousand).
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 48, hard))
        print("ready", flush=True)
        await serve_health(listener, Path(path), ROUTES)

    anyio.run(main, sys.argv[1])
    """
)


def _get_health(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(path))
        client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    return data


@contextlib.contextmanager
def _server(path: Path) -> Iterator[subprocess.Popen[str]]:
    """The health server in a process of its own (its end is what the tests look for), ready at `path`."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        while (line := server.stdout.readline()) and line.strip() != "ready":  # structlog's default goes to stdout
            pass
        assert line.strip() == "ready", server.stderr.read() if server.stderr else ""
        yield server
    finally:
        server.kill()
        server.wait()


def _still_serving(server: subprocess.Popen[str], path: Path) -> None:
    assert server.poll() is None, f"the health server ended:\n{server.stderr.read() if server.stderr else ''}"
    answer = b""
    for _ in range(20):  # descriptors come back as the flood's connections close
        try:
            answer = _get_health(path)
            break
        except OSError:
            time.sleep(0.25)
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_more_clients_than_file_descriptors_do_not_end_the_health_server(tmp_path: Path) -> None:
    path = tmp_path / "health.sock"
    with _server(path) as server:
        assert _get_health(path).startswith(b"HTTP/1.1 200")
        flood_of_idle_clients(socket.AF_UNIX, str(path))
        _still_serving(server, path)


def test_a_refused_client_that_resets_does_not_end_the_health_server(tmp_path: Path) -> None:
    """With 16 clients being served, the 17th gets its 503 and the server waits for it to close. A client that
    closes without reading the 503 (a timeout in a monitoring agent) resets the connection: that error must end that
    connection only, not the server (whose end ends the daemon)."""
    path = tmp_path / "health.sock"
    with _server(path) as server:
        slow = []
        for _ in range(16):  # hold every served slot (each may take 5 s)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(path))
            slow.append(client)
        time.sleep(0.3)
        for _ in range(3):
            surplus = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                surplus.connect(str(path))
            except OSError:  # the server is gone (its socket file removed)
                surplus.close()
                break
            time.sleep(0.1)  # the 503 is in its receive buffer now, unread
            surplus.close()  # closing with unread data resets the connection
        time.sleep(0.5)
        for client in slow:
            client.close()
        time.sleep(0.5)
        _still_serving(server, path)
