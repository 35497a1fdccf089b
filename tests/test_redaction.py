"""Secret masking: registered values and secret-named keys never survive `redact_text` / `redact_value`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.redaction import (
    MASK,
    clear_secrets,
    is_secret_key,
    redact_text,
    redact_value,
    register_secret,
    register_uri_secrets,
)

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=8, max_size=40)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@given(secret=TOKEN, before=st.text(max_size=30), after=st.text(max_size=30))
def test_registered_secret_never_survives_in_text(secret: str, before: str, after: str) -> None:
    clear_secrets()
    register_secret(secret)
    assert secret not in redact_text(before + secret + after + secret)


def test_secret_inside_nested_structures_and_exceptions_is_masked() -> None:
    register_secret("db-0123456789abcdef")
    value = {
        "event": "auth failed for db-0123456789abcdef",
        "nested": [("x", {"deep": "prefix-db-0123456789abcdef-suffix"})],
        "error": RuntimeError("key db-0123456789abcdef rejected"),
        "count": 3,
    }
    redacted = redact_value(value)
    assert "db-0123456789abcdef" not in repr(redacted)
    assert redacted["event"] == f"auth failed for {MASK}"
    assert redacted["error"] == f"RuntimeError: key {MASK} rejected"
    assert redacted["count"] == 3


@pytest.mark.parametrize("name", ["key", "api_key", "API_KEY", "secret", "aws_secret", "password", "auth", "token"])
def test_secret_named_keys_are_masked(name: str) -> None:
    assert is_secret_key(name)
    assert redact_value({name: "plain-looking-value"}) == {name: MASK}


@pytest.mark.parametrize("name", ["monkey", "keys_seen", "author", "records", "secretary_count"])
def test_ordinary_keys_are_kept(name: str) -> None:
    assert not is_secret_key(name)
    assert redact_value({name: "visible"}) == {name: "visible"}


def test_s3_uri_credentials_are_registered_but_lmdb_uri_has_none() -> None:
    register_uri_secrets("lmdb:///var/lib/hydra-daemon/arctic?map_size=20GB")
    assert redact_text("lmdb:///var/lib/hydra-daemon/arctic") == "lmdb:///var/lib/hydra-daemon/arctic"
    register_uri_secrets("s3://minio:capture?access=AKIAEXAMPLEID&secret=wJalrXUtnFEMI&port=9000")
    assert redact_text("id AKIAEXAMPLEID secret wJalrXUtnFEMI") == f"id {MASK} secret {MASK}"


def test_longer_secret_containing_a_shorter_one_is_masked_whole() -> None:
    register_secret("abcdefgh")
    register_secret("abcdefgh-longer")
    assert redact_text("x abcdefgh-longer y") == f"x {MASK} y"
