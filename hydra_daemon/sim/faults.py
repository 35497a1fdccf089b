"""Run-time switchable faults of the simulated venue (state only; the gateway and HTTP routes consult it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SessionAction(StrEnum):
    """One-shot actions applied to every open Live session."""

    CLOSE = "close"  # graceful FIN
    RESET = "reset"  # RST (SO_LINGER 0)
    ERROR = "error"  # ErrorMsg, then close
    CORRUPT = "corrupt"  # garbage bytes in the DBN stream
    SHORT_RECORD = "short_record"  # an MBP-1 record header declaring 16 bytes (databento_dbn panics on it)


@dataclass
class FaultState:
    """Persistent fault switches. Live: stall = nothing at all (no heartbeats); pause = heartbeats only;
    slow_bytes_per_s > 0 throttles every session; auth_failure rejects every login; down_until_wall refuses
    connections until that monotonic instant. Historical: the next `http_fail_count` requests (-1 = all) answer
    `http_status`; `http_delay_s` delays every answer (client timeouts); the next `undefined_time_responses`
    get_range answers holding records have their first record's ts_event undefined (2**64 - 1)."""

    stall: bool = False
    pause: bool = False
    slow_bytes_per_s: float = 0.0
    auth_failure: bool = False
    http_status: int = 0
    http_fail_count: int = 0
    http_delay_s: float = 0.0
    undefined_time_responses: int = 0

    def take_http_failure(self) -> int | None:
        """The status to fail the current Historical request with, consuming one failure; None = answer normally."""
        if not self.http_status or self.http_fail_count == 0:
            return None
        if self.http_fail_count > 0:
            self.http_fail_count -= 1
        return self.http_status

    def clear(self) -> None:
        self.stall = self.pause = self.auth_failure = False
        self.slow_bytes_per_s = 0.0
        self.http_status = self.http_fail_count = 0
        self.http_delay_s = 0.0
        self.undefined_time_responses = 0
