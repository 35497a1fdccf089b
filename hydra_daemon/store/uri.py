"""Store URIs: ``lmdb:///abs/path?map_size=..`` (default, under the state dir) and ``s3[s]://host:bucket?..``.

The query parameters of S3 URIs are ArcticDB's (``access``, ``secret``, ``port``, ``region``, ``path_prefix``,
``aws_auth``, ``aws_profile``); ``s3s://`` means TLS. They are read as ArcticDB reads them: separated by ``&`` or
``;``, each value as written (no percent-decoding), so the credentials redacted and registered for masking are the
ones in use. Use :func:`redact_uri` before logging or raising: S3 URIs may carry credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAP_SIZE = "20GB"
_EXPECTED = "expected lmdb:///abs/path[?map_size=20GB] or s3://host:bucket?access=..&secret=..[&port=..]"
_S3 = re.compile(r"s3(?P<tls>s)?://(?P<host>[^:/?]+):(?P<bucket>[-_a-zA-Z0-9.]+)(?:\?(?P<query>.*))?")
_SECRET_PARAMS = ("access", "secret")
_SEPARATORS = re.compile(r"([;&])")
_USERINFO = re.compile(r"^([a-z0-9]+://)[^/?@]*@")


@dataclass(frozen=True)
class LmdbLocation:
    """An LMDB store directory."""

    path: Path


@dataclass(frozen=True)
class S3Location:
    """An S3 bucket (plus optional key prefix) holding a store."""

    host: str
    bucket: str
    tls: bool
    port: int | None
    region: str | None
    path_prefix: str
    access: str | None
    secret: str | None
    aws_profile: str | None

    @property
    def endpoint_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}" + (f":{self.port}" if self.port else "")


def default_lmdb_uri(state_dir: Path) -> str:
    """The default store: an LMDB directory ``<state_dir>/arctic``."""
    return f"lmdb://{Path(state_dir).resolve() / 'arctic'}?map_size={DEFAULT_MAP_SIZE}"


def validate_uri(uri: str) -> str:
    """Return ``uri`` if it names a supported store, else raise ``ValueError`` saying what is expected."""
    parse_uri(uri)
    return uri


def _shown(uri: str) -> str:
    """The URI for an error line: credentials redacted, cut to 80 characters (a line stays one readable line)."""
    text = repr(redact_uri(uri))
    return text if len(text) <= 80 else text[:77] + "..."


def parse_uri(uri: str) -> LmdbLocation | S3Location:
    """Parse a store URI into its location; ``ValueError`` if unsupported."""
    if uri.startswith("lmdb://"):
        path = uri.removeprefix("lmdb://").split("?", 1)[0]
        if not path.startswith("/") or path == "/":
            raise ValueError(f"unsupported store URI {_shown(uri)}: LMDB path must be absolute; {_EXPECTED}")
        return LmdbLocation(Path(path))
    match = _S3.fullmatch(uri)
    if match is None:
        raise ValueError(f"unsupported store URI {_shown(uri)}: {_EXPECTED}")
    query = dict(_parameters(match["query"] or ""))
    if "" in query:
        raise ValueError(f"unsupported store URI {_shown(uri)}: a query parameter without a name or '='; {_EXPECTED}")
    port = query.get("port")
    if port is not None and not port.isdigit():
        raise ValueError(f"unsupported store URI {_shown(uri)}: port must be a number; {_EXPECTED}")
    return S3Location(
        host=match["host"],
        bucket=match["bucket"],
        tls=match["tls"] is not None,
        port=int(port) if port else None,
        region=query.get("region"),
        path_prefix=query.get("path_prefix", "").strip("/"),
        access=query.get("access"),
        secret=query.get("secret"),
        aws_profile=query.get("aws_profile"),
    )


def _parameters(query: str) -> list[tuple[str, str]]:
    """(name, value) of each parameter as ArcticDB splits them; ("", text) for a part without ``=``."""
    parts = _SEPARATORS.split(query)[::2] if query else []
    return [(name, value) if sep else ("", part) for part in parts for name, sep, value in [part.partition("=")]]


def redact_uri(uri: str) -> str:
    """``uri`` with credentials replaced by ``***``: the values of ``access`` and ``secret`` (however separated) and
    any ``user:password@`` before the host (safe for logs, errors and health answers)."""
    base, sep, query = uri.partition("?")
    base = _USERINFO.sub(r"\1***@", base)
    if not sep:
        return base
    pieces = _SEPARATORS.split(query)
    for position in range(0, len(pieces), 2):
        name, equals, _ = pieces[position].partition("=")
        if equals and name in _SECRET_PARAMS:
            pieces[position] = f"{name}=***"
    return f"{base}?{''.join(pieces)}"
