"""Corrupt DBN records are kept for inspection in `<state_dir>/quarantine/dbn.jsonl` (bounded), never stored."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import structlog

from hydra_daemon.databento.decode import CorruptRecord

MAX_QUARANTINE_BYTES = 16 * 1024 * 1024
"""The file stops growing here (a stream corrupt for hours must not fill the disk); later records are only logged
and counted."""

log = structlog.get_logger()


def dbn_quarantine_path(state_dir: Path) -> Path:
    """Where corrupt DBN records go: `<state_dir>/quarantine/dbn.jsonl`."""
    return state_dir / "quarantine" / "dbn.jsonl"


class DbnQuarantine:
    """Append-only JSON lines, one per corrupt record: when, where from, why, the header and the raw bytes (hex).
    `path=None` keeps nothing but the log line. Thread-safe (the stream decoder thread and gap fills both add)."""

    def __init__(self, path: Path | None, max_bytes: int = MAX_QUARANTINE_BYTES) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._full_logged = False

    def add(self, record: CorruptRecord, source: str) -> None:
        """Keep `record` (from `source`: "live" or "historical ...") and log one line saying what to do."""
        log.error(
            "dbn_record_quarantined",
            source=source,
            reason=record.reason,
            rtype=record.rtype,
            length=record.length,
            path=str(self.path) if self.path else None,
            action="nothing is stored from it; the session is resumed from the committed watermark. If this repeats, "
            "check the databento-dbn version against the gateway's DBN version",
        )
        if self.path is None:
            return
        line = json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "source": source,
                "reason": record.reason,
                "rtype": record.rtype,
                "length": record.length,
                "offset": record.offset,
                "raw_hex": record.raw.hex(),
            }
        )
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                size = self.path.stat().st_size if self.path.exists() else 0
                if size + len(line) + 1 > self._max_bytes:
                    if not self._full_logged:
                        log.error("dbn_quarantine_full", path=str(self.path), max_bytes=self._max_bytes)
                        self._full_logged = True
                    return
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            except OSError as exc:  # quarantine is best effort: never let it stop capture
                log.error("dbn_quarantine_unwritable", path=str(self.path), error=str(exc))
