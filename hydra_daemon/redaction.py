"""Secret redaction: registered secret values and secret-named keys become ``***`` in anything we emit.

Register every secret once at startup (`register_secret`, `register_uri_secrets`); logging, health answers and
supervisor error records all pass through `redact_text` / `redact_value`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from hydra_daemon.store.uri import S3Location, parse_uri

MASK = "***"
_SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(key|apikey|secret|password|passwd|token|auth|authorization|credentials?)$", re.I
)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: str) -> None:
    """Mask `value` (and its stripped form) wherever it appears from now on."""
    global _secrets
    candidates = {v for v in (value, value.strip()) if v}
    with _lock:
        # Longest first, so a secret that contains another is masked whole.
        _secrets = tuple(sorted(set(_secrets) | candidates, key=len, reverse=True))


def register_uri_secrets(uri: str) -> None:
    """Register the access and secret keys an S3 store URI carries (LMDB URIs carry none)."""
    location = parse_uri(uri)
    if isinstance(location, S3Location):
        for value in (location.access, location.secret):
            if value:
                register_secret(value)


def clear_secrets() -> None:
    """Forget every registered secret (tests start from a clean registry)."""
    global _secrets
    with _lock:
        _secrets = ()


def is_secret_key(name: str) -> bool:
    """True for mapping keys whose value is a secret by name: key, api_key, secret, password, auth, token…"""
    return bool(_SECRET_KEY.search(name))


def redact_text(text: str) -> str:
    """`text` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """Copy of `value` with secrets masked in strings, exceptions and under secret-named mapping keys.

    Other objects are returned as they are: whoever renders them to text must pass the text through `redact_text`.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and is_secret_key(k) and v is not None else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value
