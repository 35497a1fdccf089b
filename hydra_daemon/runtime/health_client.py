"""Client of the health socket, for `hydra-daemon health`: imports only the standard library (fast to start)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = Path("/run/hydra-daemon/health.sock")


def query_health(path: Path = DEFAULT_SOCKET, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Blocking client: ask the daemon at `path` for its status document."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        client.connect(str(path))
        client.sendall(b"status\n")
        client.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    answer: dict[str, Any] = json.loads(b"".join(chunks))
    return answer


def health_command(path: Path = DEFAULT_SOCKET) -> int:
    """`hydra-daemon health`: print the status document; exit code 0 when status is ok, 1 otherwise."""
    try:
        answer = query_health(path)
    except (OSError, ValueError) as exc:
        print(
            f"hydra-daemon health: no answer from {path}: {exc} (is the daemon running? is --socket right?)",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0 if answer.get("status") == "ok" else 1
