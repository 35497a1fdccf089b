"""Plain request/response values shared by the simulated venue's HTTP routes (Databento Historical, CFTC files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class HttpRequest:
    """One parsed HTTP request: method, path (no query), query and form fields, headers (lower-case names)."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpResponse:
    """A complete response; the server adds Content-Length. `delay_s` lets a fault stall before answering."""

    status: int
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Route(Protocol):
    """A group of endpoints: answers the requests it owns and returns None for the rest."""

    def respond(self, request: HttpRequest) -> HttpResponse | None: ...
