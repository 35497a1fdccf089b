"""The Databento API key: loaded from a systemd credential or an environment variable, never printed."""

from __future__ import annotations

import os
from pathlib import Path

from hydra_daemon.config import DatabentoConfig
from hydra_daemon.errors import UserError


class SecretError(UserError, RuntimeError):
    """No usable API key was found; the message says where we looked (never the key)."""


class ApiKey:
    """An API key whose str/repr are redacted; call `reveal()` only where the client needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if len(value) < 8 or any(c.isspace() for c in value):
            raise SecretError("the Databento API key is malformed (expected one token, at least 8 characters)")
        self._value = value

    def reveal(self) -> str:
        """The raw key, for handing to the databento client."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("ApiKey cannot be pickled")


def load_api_key(config: DatabentoConfig, environ: dict[str, str] | None = None) -> ApiKey:
    """Key from `$CREDENTIALS_DIRECTORY/<credential_name>` (systemd LoadCredential) or `$<api_key_env>`."""
    env = os.environ if environ is None else environ
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        path = Path(cred_dir) / config.credential_name
        if path.is_file():
            return ApiKey(path.read_text(encoding="utf-8"))
    value = env.get(config.api_key_env)
    if value:
        return ApiKey(value)
    raise SecretError(
        f"no Databento API key: set ${config.api_key_env}, or give the unit "
        f"LoadCredential={config.credential_name}:/path/to/key"
    )
