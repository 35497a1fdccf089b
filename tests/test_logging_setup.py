"""Log output is JSON lines (or console text) and never contains a registered secret, even in tracebacks."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from hydra_daemon.logging_setup import configure_logging, writes_to_journal
from hydra_daemon.redaction import MASK, clear_secrets, register_secret

KEY = "db-LogTestKey0123456789"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    clear_secrets()
    register_secret(KEY)
    out = io.StringIO()
    hooks = (sys.excepthook, threading.excepthook, warnings.showwarning)
    yield out
    sys.excepthook, threading.excepthook, warnings.showwarning = hooks
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


def test_journal_lines_carry_the_syslog_priority_of_their_level(stream: io.StringIO) -> None:
    configure_logging(json=True, journal=True, stream=stream, level=logging.DEBUG)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    logging.getLogger("databento").critical("c")
    lines = stream.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert [json.loads(line[3:])["event"] for line in lines] == ["d", "i", "w", "e", "c"]


def test_journal_is_detected_from_journal_stream_naming_our_stderr(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w") as err, (tmp_path / "other").open("w") as other:
        info = os.fstat(err.fileno())
        environ = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert writes_to_journal(err, environ)
        assert not writes_to_journal(other, environ), "a stream systemd did not name (e.g. redirected) is not it"
        assert not writes_to_journal(err, {})
        assert not writes_to_journal(err, {"JOURNAL_STREAM": "garbage"})
    assert not writes_to_journal(io.StringIO(), environ)


def test_python_warnings_become_one_json_event(stream: io.StringIO) -> None:
    with warnings.catch_warnings():  # pytest records warnings inside its own catch_warnings: install ours inside
        configure_logging(json=True, stream=stream)
        warnings.simplefilter("always")
        warnings.warn(f"old API, key {KEY}", DeprecationWarning, stacklevel=1)
    (record,) = (json.loads(line) for line in stream.getvalue().splitlines())
    assert record["event"] == "python_warning"
    assert record["category"] == "DeprecationWarning"
    assert record["message"] == f"old API, key {MASK}"
    assert record["where"].startswith(__file__)
    assert record["level"] == "warning"


def test_an_uncaught_exception_in_a_thread_is_one_json_event(stream: io.StringIO) -> None:
    configure_logging(json=True, stream=stream)
    worker = threading.Thread(target=_fail_with_key, name="worker-1")
    worker.start()
    worker.join()
    (record,) = (json.loads(line) for line in stream.getvalue().splitlines())
    assert record["event"] == "uncaught_exception"
    assert record["thread"] == "worker-1"
    assert f"ConnectionError: gateway rejected key {MASK}" in record["exception"]
