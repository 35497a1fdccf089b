"""A loopback HTTP proxy between a store's S3 client and the moto server that injects S3 faults, switchable at run
time: answer 500, 503 or S3's `SlowDown` without forwarding, or forward a request and then drop the connection
before the response (the request took effect; the client never hears so: the "committed, response lost" case).

Test infrastructure only. It runs as its own process (`python tests/s3_fault_proxy.py UPSTREAM_PORT` prints its
port), like moto: ArcticDB holds the GIL during S3 calls, so a proxy thread in a process using ArcticDB deadlocks.
`ProxyProcess.fault(*rules)` sets the faults for matching requests from now on, `clear()` ends them, `counts()` says
how many requests each fault hit (so a test proves its fault reached the client at all); they talk to the proxy on
the control path `/__proxy__/` (not a valid bucket name, so never an S3 request).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_CONTROL = "/__proxy__/"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"})


class Fault(StrEnum):
    """What the proxy does to a matching request."""

    ERROR_500 = "500"
    ERROR_503 = "503"
    SLOW_DOWN = "slowdown"
    ERRORS = "errors"  # 500, 503 and SlowDown in turn: an outage
    FLAKY = "flaky"  # every other request answered 500, 503 or SlowDown in turn, the rest (and retries) forwarded
    DROP_AFTER_FORWARD = "drop"


_ERRORS = {
    Fault.ERROR_500: (500, "InternalError", "We encountered an internal error. Please try again."),
    Fault.ERROR_503: (503, "ServiceUnavailable", "Service is unable to handle request."),
    Fault.SLOW_DOWN: (503, "SlowDown", "Please reduce your request rate."),
}


_TURNS: dict[Fault, tuple[Fault | None, ...]] = {
    Fault.ERRORS: (Fault.ERROR_500, Fault.ERROR_503, Fault.SLOW_DOWN),
    Fault.FLAKY: (None, Fault.ERROR_500, None, Fault.ERROR_503, None, Fault.SLOW_DOWN),
}


@dataclass(frozen=True)
class Rule:
    """`fault` for requests whose method is in `methods` (all when empty) and whose path contains every string of
    `only` (e.g. a library's key prefix and ``/vref/``, ArcticDB's version reference: the last write of an append)."""

    fault: Fault
    methods: tuple[str, ...] = ()
    only: tuple[str, ...] = ()

    def matches(self, method: str, path: str) -> bool:
        return (not self.methods or method in self.methods) and all(s in path for s in self.only)

    def as_dict(self) -> dict[str, object]:
        return {"fault": self.fault.value, "methods": list(self.methods), "only": list(self.only)}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Rule:
        return cls(Fault(fields["fault"]), tuple(fields["methods"]), tuple(fields["only"]))


class FaultProxy:
    """`with FaultProxy(upstream_port) as proxy:` listens on 127.0.0.1:`proxy.port`, forwarding to the upstream."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.counts: Counter[Fault] = Counter()
        self._rules: list[Rule] = []
        self._flaked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def set_rules(self, rules: list[Rule]) -> None:
        """From now on, each request gets the fault of the first rule it matches (none: forwarded)."""
        with self._lock:
            self._rules = list(rules)

    def decide(self, method: str, path: str) -> Fault | None:
        """The fault for this request. A retry of a request FLAKY just failed is forwarded, so however requests
        interleave, a client retrying at least once absorbs every FLAKY error."""
        with self._lock:
            rule = next((r for r in self._rules if r.matches(method, path)), None)
            if rule is None:
                return None
            if rule.fault is Fault.FLAKY and (method, path) in self._flaked:
                self._flaked.discard((method, path))
                return None
            fault: Fault | None = rule.fault
            self.counts[rule.fault] += 1
            if rule.fault in _TURNS:
                turns = _TURNS[rule.fault]
                fault = turns[self.counts[rule.fault] % len(turns)]
                if fault is not None:
                    self.counts[fault] += 1
                    if rule.fault is Fault.FLAKY:
                        self._flaked.add((method, path))
            return fault

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client giving up on a connection (as S3 clients do after a dropped response) is not news."""


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered before the body is read

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads `counts`."""

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith(_CONTROL):
                self._control(body)
                return
            fault = proxy.decide(self.command, self.path)
            if fault in _ERRORS:
                self._error(*_ERRORS[fault])
                return
            status, reason, headers, payload = self._forward(body)
            if fault is Fault.DROP_AFTER_FORWARD:
                self.close_connection = True  # the upstream acted on it; the client hears nothing
                return
            self.send_response_only(status, reason)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                return response.status, response.reason, response.getheaders(), payload
            finally:
                upstream.close()

        def _control(self, body: bytes) -> None:
            if self.path == _CONTROL + "rules":
                proxy.set_rules([Rule.from_dict(r) for r in json.loads(body)])
            payload = json.dumps({f.value: n for f, n in proxy.counts.items()}).encode()
            self.send_response_only(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _error(self, status: int, code: str, message: str) -> None:
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<Resource>{self.path.split('?')[0]}</Resource><RequestId>hydra-fault</RequestId></Error>"
            ).encode()
            self.send_response_only(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    return Handler


class ProxyProcess:
    """The proxy in its own process, in front of the S3 server on `upstream_port`."""

    def __init__(self, upstream_port: int) -> None:
        command = [sys.executable, str(Path(__file__)), str(upstream_port)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def fault(self, *rules: Rule) -> None:
        """From now on, each request gets the fault of the first rule it matches; no rules: forward everything."""
        self._ask("rules", json.dumps([r.as_dict() for r in rules]).encode())

    def clear(self) -> None:
        """Forward everything again."""
        self.fault()

    def counts(self) -> dict[Fault, int]:
        """How many requests each fault has hit so far."""
        return {Fault(name): count for name, count in self._ask("counts", b"").items()}

    def close(self) -> None:
        self._process.terminate()
        self._process.wait()

    def _ask(self, what: str, body: bytes) -> dict[str, int]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", f"{_CONTROL}{what}", body=body)
            response = connection.getresponse()
            answer: dict[str, int] = json.loads(response.read())
            return answer
        finally:
            connection.close()


def main(argv: list[str]) -> None:
    with FaultProxy(int(argv[0])) as proxy:
        print(proxy.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
