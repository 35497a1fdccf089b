"""A Live session in a child process against the simulated venue: raw records arrive in order, failures come back
redacted, the key is never on a command line or in an environment, stopping ends the child."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from hydra_daemon.databento import live_stream
from hydra_daemon.databento.child import SessionRequest
from hydra_daemon.databento.decode import SymbolMap
from hydra_daemon.databento.historical_client import HistoricalError, historical_client, http_errors
from hydra_daemon.databento.launcher import Launcher
from hydra_daemon.databento.process import LiveAuthError, LiveProcess, LiveSessionError
from hydra_daemon.databento.stream_decoder import StreamDecoder
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from tests.helpers import fast_config, wait_until


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return fast_config(seed=3)


def request(venue: VenueThread, port: int | None = None) -> SessionRequest:
    info = venue.info
    return SessionRequest(
        info.dataset, info.live_host, port or info.live_port, 1, ("HE.FUT",), {"ohlcv-1m": 0, "definition": 0}
    )


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "(Z)" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:4]


def test_records_stream_from_the_child_and_stop_ends_it(venue: VenueThread) -> None:
    child = LiveProcess(venue.info.api_key, request(venue))
    try:
        assert child.wait_started(30) is not None
        decoder = StreamDecoder(child, SymbolMap({"HE.FUT": "HE"}))
        seen: dict[str, int] = {}
        try:
            wait_until(lambda: _collect(decoder, seen) >= 2, "minute bars and definitions from the child", 30)
        finally:
            decoder.close()
        assert seen["definition"] > 0 and seen["ohlcv-1m"] > 0
    finally:
        child.stop()
    wait_until(lambda: not _alive(child.pid), "the stopped child to exit", 10)


def _collect(decoder: StreamDecoder, seen: dict[str, int]) -> int:
    batch = decoder.get(0.1)
    for item in () if batch is None else batch.frames:
        seen[item.schema] = seen.get(item.schema, 0) + len(item.frame)
    return len(seen)


def test_the_key_is_in_no_command_line_or_environment(venue: VenueThread) -> None:
    key = venue.info.api_key
    child = LiveProcess(key, request(venue))
    try:
        child.wait_started(30)
        launcher = Launcher.shared().pid
        for pid in (child.pid, launcher):
            for part in ("cmdline", "environ"):
                assert key.encode() not in Path(f"/proc/{pid}/{part}").read_bytes(), f"{part} of {pid}"
    finally:
        child.stop()


def test_authentication_failure_is_told_apart_and_redacted(venue: VenueThread) -> None:
    venue.fault("auth_failure", "1")
    try:
        child = LiveProcess(venue.info.api_key, request(venue))
        with pytest.raises(LiveAuthError, match="Authentication failed") as failure:
            child.wait_started(30)
        child.stop()
    finally:
        venue.fault("auth_failure", "0")
    assert venue.info.api_key not in str(failure.value)


def test_refused_connection_is_reported(venue: VenueThread) -> None:
    child = LiveProcess(venue.info.api_key, request(venue, port=_closed_port()))
    with pytest.raises(LiveSessionError, match="Connection to") as failure:
        child.wait_started(30)
    child.stop()
    assert not isinstance(failure.value, LiveAuthError), "only a gateway's rejection is an authentication failure"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_refused_keys_are_told_apart_from_other_failures(venue: VenueThread) -> None:
    wrong = historical_client("db-NotTheVenuesKey00000", venue.info.historical_url)
    with pytest.raises(HistoricalError) as refused, http_errors():
        wrong.metadata.get_cost(dataset=venue.info.dataset, symbols=["HE.FUT"], schema="ohlcv-1d", start="2026-11-02")
    assert refused.value.key_refused and refused.value.http_status == 401
    assert live_stream._auth_refusal(refused.value) == "historical_auth_refused"
    assert live_stream._auth_refusal(LiveAuthError("Authentication failed.")) == "live_auth_refused"
    assert live_stream._auth_refusal(HistoricalError("busy", 503)) is None
    assert live_stream._auth_refusal(LiveSessionError("Connection reset")) is None


def test_a_killed_child_is_reported_as_a_failure_not_a_gateway_close(venue: VenueThread) -> None:
    """A child dying without a word (SIGKILL: the OOM killer, an operator) was reported as "the gateway closed the
    session", sending the operator to the venue instead of the host (found by a review helper)."""
    child = LiveProcess(venue.info.api_key, request(venue))
    try:
        child.wait_started(30)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while child.read(0.5) != b"":  # drain to the end of the stream
            assert time.monotonic() < deadline, "no end of stream after the kill"
        with pytest.raises(LiveSessionError, match=f"pid {child.pid}.* exited without reporting"):
            child.outcome()
    finally:
        child.stop()
