"""structlog → stderr: one JSON object per line (journald), `<N>`-prefixed under systemd, console text on a TTY.

Everything a process writes to stderr goes through one handler: structlog events, stdlib `logging` records of
libraries (databento, httpx…), Python `warnings` (pandas deprecations…) and uncaught exceptions in any thread. Its
chain formats exceptions to text, masks registered secrets and secret-named keys, renders, and masks the rendered
line once more (objects rendered late by the renderer cannot smuggle a secret out). ArcticDB's native logger, which
writes plain text straight to file descriptor 2, is switched off outside a TTY: ArcticDB reports failures as Python
exceptions, which are logged here (set `ARCTICDB_all_loglevel` to see its own log while debugging).

Under systemd (`$JOURNAL_STREAM` names our stderr) each line starts with its syslog priority (`<3>` error, `<4>`
warning, `<6>` info…), which journald strips and records (`SyslogLevelPrefix=yes`), so `journalctl -p warning` works.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from hydra_daemon.redaction import redact_text, redact_value

_HANDLER_NAME = "hydra-daemon"

SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
"""Python level → syslog priority (sd-daemon(3) prefixes); levels in between take the next more severe one."""

_ARCTICDB_LOG_ENV = "ARCTICDB_all_loglevel"


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a `logging` level number (custom levels round toward more severe)."""
    for level in sorted(SYSLOG_PRIORITY):
        if levelno <= level:
            return SYSLOG_PRIORITY[level]
    return SYSLOG_PRIORITY[logging.CRITICAL]


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask registered secrets and secret-named keys anywhere in the event dict."""
    redacted: EventDict = redact_value(event_dict)
    return redacted


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """ProcessorFormatter whose final text is redacted once more and, for journald, prefixed with `<priority>`."""

    def __init__(self, *, journal: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = redact_text(super().format(record))
        return f"<{syslog_priority(record.levelno)}>{text}" if self._journal else text


def writes_to_journal(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd named in `$JOURNAL_STREAM` ("<device>:<inode>")."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):  # not a real file (StringIO), or a malformed variable
        return False


def configure_logging(
    *,
    json: bool | None = None,
    journal: bool | None = None,
    level: int = logging.INFO,
    stream: IO[str] | None = None,
) -> None:
    """Route structlog, stdlib logging, warnings and uncaught exceptions to `stream` (stderr).

    JSON lines unless `json` is False or (by default) the stream is a TTY; `<N>` syslog prefixes when `journal`
    (by default: when the stream is systemd's journal stream).
    """
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    in_journal = writes_to_journal(out) if journal is None else journal
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_formatter(as_json, in_journal and as_json))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _capture_warnings()
    _capture_uncaught()
    if as_json:
        _silence_arcticdb_native_log()


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _formatter(as_json: bool, journal: bool) -> _RedactingFormatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    return _RedactingFormatter(
        journal=journal,
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )


def _capture_warnings() -> None:
    """Python warnings become one `python_warning` event each (what, category, where) instead of raw text."""
    # ArcticDB builds frames through a pandas internal that pandas deprecates, on every read: not ours to fix, and
    # one warning per read would bury real ones.
    warnings.filterwarnings("ignore", message="Passing a BlockManagerUnconsolidated", category=DeprecationWarning)
    warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    structlog.get_logger("py.warnings").warning(
        "python_warning", message=str(message), category=category.__name__, where=f"{filename}:{lineno}"
    )


def _capture_uncaught() -> None:
    """An exception nobody caught (main thread or any other) is one `uncaught_exception` error event."""

    def main_hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        structlog.get_logger().error("uncaught_exception", exc_info=(kind, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        thread = args.thread.name if args.thread is not None else None
        structlog.get_logger().error("uncaught_exception", thread=thread, exc_info=exc_info)

    sys.excepthook = main_hook
    threading.excepthook = thread_hook


def _silence_arcticdb_native_log() -> None:
    """Switch off ArcticDB's plain-text stderr logger unless the operator asked for it (`ARCTICDB_all_loglevel`)."""
    if _ARCTICDB_LOG_ENV in os.environ:
        return
    if "arcticdb" not in sys.modules:
        os.environ[_ARCTICDB_LOG_ENV] = "off"  # read once, when ArcticDB is imported (also by our children)
        return
    from arcticdb.config import set_log_level

    set_log_level("OFF")
