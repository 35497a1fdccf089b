"""Log output is JSON lines (or console text) and never contains a registered secret, even in tracebacks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from hydra_daemon.logging_setup import configure_logging
from hydra_daemon.redaction import MASK, clear_secrets, register_secret

KEY = "db-LogTestKey0123456789"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    clear_secrets()
    register_secret(KEY)
    out = io.StringIO()
    yield out
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "hydra-daemon"]:
        root.removeHandler(handler)
    structlog.reset_defaults()
    clear_secrets()


def _fail_with_key() -> None:
    raise ConnectionError(f"gateway rejected key {KEY}")


def test_json_lines_mask_the_key_in_message_fields_and_traceback(stream: io.StringIO) -> None:
    configure_logging(json=True, stream=stream)
    log = structlog.get_logger()
    try:
        _fail_with_key()
    except ConnectionError as exc:
        log.exception("connect_failed", error=str(exc), api_key=KEY, detail={"url": f"wss://x?key={KEY}"})
    log.info(f"plain message mentioning {KEY}", password="hunter2hunter2")
    text = stream.getvalue()
    assert KEY not in text
    assert "hunter2hunter2" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["event"] == "connect_failed"
    assert first["api_key"] == MASK
    assert first["error"] == f"gateway rejected key {MASK}"
    assert f"ConnectionError: gateway rejected key {MASK}" in first["exception"]
    assert "_fail_with_key" in first["exception"]
    assert first["level"] == "error"
    assert first["timestamp"].endswith("Z")
    assert second["event"] == f"plain message mentioning {MASK}"


def test_stdlib_loggers_of_libraries_are_masked_too(stream: io.StringIO) -> None:
    configure_logging(json=True, stream=stream)
    try:
        _fail_with_key()
    except ConnectionError:
        logging.getLogger("databento.live").exception("session for %s failed", KEY)
    record = json.loads(stream.getvalue())
    assert KEY not in stream.getvalue()
    assert record["logger"] == "databento.live"
    assert record["event"] == f"session for {MASK} failed"
    assert MASK in record["exception"]


def test_objects_rendered_late_cannot_leak_the_key(stream: io.StringIO) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return f"Opaque({KEY})"

    configure_logging(json=True, stream=stream)
    structlog.get_logger().info("opaque", thing=Opaque())
    assert KEY not in stream.getvalue()
    assert json.loads(stream.getvalue())["thing"] == f"Opaque({MASK})"


def test_console_rendering_masks_the_key(stream: io.StringIO) -> None:
    configure_logging(json=False, stream=stream)
    try:
        _fail_with_key()
    except ConnectionError:
        structlog.get_logger().exception("connect_failed", token=KEY)
    text = stream.getvalue()
    assert "connect_failed" in text
    assert KEY not in text
    assert MASK in text


def test_reconfiguring_does_not_duplicate_output(stream: io.StringIO) -> None:
    configure_logging(json=True, stream=stream)
    configure_logging(json=True, stream=stream)
    structlog.get_logger().info("once")
    assert len(stream.getvalue().splitlines()) == 1
