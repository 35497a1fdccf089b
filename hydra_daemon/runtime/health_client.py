"""Client of the health socket, for `hydra-daemon health`: HTTP/1.1 over the Unix socket with the standard library
only (fast to start). Exit codes follow the Nagios convention: 0 ok (or closed), 1 degraded, 2 failed or no answer.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = Path("/run/hydra-daemon/health.sock")
EXIT_CODES = {"ok": 0, "closed": 0, "degraded": 1, "failed": 2}
NO_ANSWER = 2


class _UnixConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is the Unix socket at `path`."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(self.timeout)
        try:
            client.connect(str(self._path))
        except OSError:
            client.close()
            raise
        self.sock = client


def fetch(path: Path, target: str, *, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """GET `target` from the daemon at `path`: (HTTP status, body)."""
    connection = _UnixConnection(path, timeout_s)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def query_health(path: Path = DEFAULT_SOCKET, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Blocking client: the daemon's health document (answered with 200 or 503 alike)."""
    status, body = fetch(path, "/health", timeout_s=timeout_s)
    if status not in (200, 503):
        raise ValueError(f"unexpected HTTP {status} from {path}: {body[:200]!r}")
    answer = json.loads(body)
    if not isinstance(answer, dict):
        raise ValueError(f"not a health document from {path} (JSON {type(answer).__name__}): {body[:200]!r}")
    return answer


def health_command(path: Path = DEFAULT_SOCKET) -> int:
    """`hydra-daemon health`: print the status document; exit 0 ok/closed, 1 degraded, 2 failed or no answer."""
    try:
        answer = query_health(path)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(
            f"hydra-daemon health: no answer from {path}: {exc} (is the daemon running? is --socket right?)",
            file=sys.stderr,
        )
        return NO_ANSWER
    print(json.dumps(answer, indent=2, sort_keys=True))
    return EXIT_CODES.get(str(answer.get("status")), NO_ANSWER)
