"""The API key loads from a systemd credential or the environment and never shows in repr/str/pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from hydra_daemon.config import DatabentoConfig
from hydra_daemon.secrets import ApiKey, SecretError, load_api_key

KEY = "db-SECRETSECRETSECRET12345"


def test_credential_file_wins_over_environment(tmp_path: Path) -> None:
    (tmp_path / "databento_api_key").write_text(KEY + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "DATABENTO_API_KEY": "db-OTHEROTHEROTHER"}
    assert load_api_key(DatabentoConfig(), env).reveal() == KEY


def test_environment_variable_is_used_without_credentials() -> None:
    assert load_api_key(DatabentoConfig(), {"DATABENTO_API_KEY": KEY}).reveal() == KEY


def test_missing_key_says_where_to_put_it() -> None:
    with pytest.raises(SecretError, match=r"\$DATABENTO_API_KEY.*LoadCredential=databento_api_key"):
        load_api_key(DatabentoConfig(), {})


def test_key_is_redacted_everywhere() -> None:
    key = ApiKey(KEY)
    assert KEY not in repr(key)
    assert KEY not in str(key)
    assert KEY not in f"{key}"
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_malformed_key_error_does_not_echo_it() -> None:
    with pytest.raises(SecretError) as info:
        ApiKey("db 1234 5678")
    assert "1234" not in str(info.value)
