"""Build `databento.Historical` clients, optionally pointed at a plain-HTTP base URL (the simulated venue).

`databento.Historical(gateway=...)` always rewrites the scheme to https, so a loopback `http://` venue cannot be
reached through `gateway`. With `base_url=None` this returns exactly `databento.Historical(key)` (production);
with `base_url="http://127.0.0.1:PORT"` it re-targets every endpoint group (timeseries, metadata — the cost
guard's `get_cost`/`get_record_count` —, symbology, batch) at it. The daemon calls this helper with its
`historical_url` setting, so tests and production share one code path.

The client logs `Initialized Historical(gateway=https://hist.databento.com)` before any re-targeting, which would
be false for the venue: that line is dropped and `historical_client_ready` names the endpoint actually used.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import databento
import requests
import structlog

from hydra_daemon.errors import UserError
from hydra_daemon.redaction import redact_text

log = structlog.get_logger()

_GROUPS = ("timeseries", "metadata", "symbology", "batch")


class _DropInitializedLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Initialized %s(gateway=")


logging.getLogger("databento.historical.client").addFilter(_DropInitializedLine())


def historical_client(key: str, base_url: str | None = None) -> databento.Historical:
    """A Historical client; `base_url` (e.g. "http://127.0.0.1:8080") overrides Databento's endpoint."""
    client = databento.Historical(key)
    if base_url is not None:
        root = base_url.rstrip("/")
        if not root.startswith(("http://", "https://")):
            raise ValueError(f"historical base_url must start with http:// or https://, got {base_url!r}")
        for group in _GROUPS:
            getattr(client, group)._base_url = f"{root}/v0/{group}"
        client._gateway = root
    log.info("historical_client_ready", endpoint=client.gateway)
    return client


class HistoricalError(UserError, RuntimeError):
    """Databento Historical refused or failed a request; the message says what to do (one line, key redacted).
    `http_status` is the answer's status (401/403: the key was refused)."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status

    @property
    def key_refused(self) -> bool:
        return self.http_status in (401, 403)

    @classmethod
    def from_http(cls, exc: databento.BentoHttpError) -> HistoricalError:
        status = exc.http_status
        detail = redact_text(" ".join(str(exc.message or "no detail").split()))
        if status in (401, 403):
            return cls(
                f"Databento Historical refused the API key (HTTP {status}: {detail}); check $DATABENTO_API_KEY "
                "or the databento_api_key credential",
                status,
            )
        if status is not None and 400 <= status < 500 and status != 429:
            return cls(f"Databento Historical rejected the request (HTTP {status}): {detail}", status)
        return cls(f"Databento Historical failed (HTTP {status}: {detail}); retry later", status)


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """Turn the client's `BentoHttpError`, and a network failure before any answer (unresolvable host, refused
    connection, timeout), into a one-line `HistoricalError` for the block."""
    try:
        yield
    except databento.BentoHttpError as exc:
        raise HistoricalError.from_http(exc) from None
    except requests.RequestException as exc:
        url = urlsplit(str(exc.request.url) if exc.request is not None and exc.request.url else "")
        where = f"{url.scheme}://{url.netloc}" if url.netloc else "the Historical API"
        raise HistoricalError(
            f"cannot reach Databento Historical at {where} ({type(exc).__name__}); check the network, or "
            "[databento] historical_url"
        ) from None
