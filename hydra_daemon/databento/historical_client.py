"""Build `databento.Historical` clients, optionally pointed at a plain-HTTP base URL (the simulated venue).

`databento.Historical(gateway=...)` always rewrites the scheme to https, so a loopback `http://` venue cannot be
reached through `gateway`. With `base_url=None` this returns exactly `databento.Historical(key)` (production);
with `base_url="http://127.0.0.1:PORT"` it re-targets the timeseries endpoint (the only one get_range uses) at it.
The daemon calls this helper with its `historical_url` setting, so tests and production share one code path.
"""

from __future__ import annotations

import databento


def historical_client(key: str, base_url: str | None = None) -> databento.Historical:
    """A Historical client; `base_url` (e.g. "http://127.0.0.1:8080") overrides Databento's endpoint."""
    client = databento.Historical(key)
    if base_url is not None:
        root = base_url.rstrip("/")
        if not root.startswith(("http://", "https://")):
            raise ValueError(f"historical base_url must start with http:// or https://, got {base_url!r}")
        client.timeseries._base_url = f"{root}/v0/timeseries"
        client.metadata._base_url = f"{root}/v0/metadata"
        client.symbology._base_url = f"{root}/v0/symbology"
        client.batch._base_url = f"{root}/v0/batch"
    return client
