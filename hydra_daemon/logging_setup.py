"""structlog → stderr: JSON lines (journald) or console rendering on a TTY, with secrets redacted.

Both structlog and stdlib `logging` records (databento, arcticdb, httpx…) go through one handler whose chain
formats exceptions to text, masks registered secrets and secret-named keys, renders, and masks the rendered line
once more (objects rendered late by the renderer cannot smuggle a secret out).
"""

from __future__ import annotations

import logging
import sys
from typing import IO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from hydra_daemon.redaction import redact_text, redact_value

_HANDLER_NAME = "hydra-daemon"


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask registered secrets and secret-named keys anywhere in the event dict."""
    redacted: EventDict = redact_value(event_dict)
    return redacted


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """ProcessorFormatter whose final text is redacted once more."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(*, json: bool | None = None, level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stderr): JSON unless `json` is False or stderr is a TTY."""
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    formatter = _RedactingFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
