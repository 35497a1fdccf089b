"""Each fault's client-visible behaviour with the real `databento.Live` client, plus Historical delays."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import databento as db
import databento.live.session
import httpx
import pytest
from databento_dbn import DBNDecoder, ErrorMsg, MBP1Msg, SystemMsg

from hydra_daemon.sim.venue import VenueThread
from tests.helpers import Collector, fast_config, live_client, wait_until

DATASET = "GLBX.MDP3"


@pytest.fixture(autouse=True)
def clear_faults(venue: VenueThread) -> Iterator[None]:
    yield
    venue.fault("clear")


def streaming(venue: VenueThread, **kwargs: object) -> tuple[db.Live, Collector]:
    client = live_client(venue, **kwargs)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "mbp-1", ["HE.FUT", "HE.OPT"], stype_in="parent")
    client.start()
    wait_until(lambda: sink.of(MBP1Msg), "first quotes")
    return client, sink


def test_graceful_close_ends_the_stream_without_error(venue: VenueThread) -> None:
    client, _ = streaming(venue, reconnect_policy="reconnect")
    venue.fault("close")
    client.block_for_close(timeout=30)  # returns normally: FIN is not an error, and no reconnect happens


def test_reset_is_an_error_without_reconnect_policy(venue: VenueThread) -> None:
    client, _ = streaming(venue)
    venue.fault("reset")
    with pytest.raises(db.BentoError):
        client.block_for_close(timeout=30)


def test_reset_with_reconnect_policy_reconnects_once(venue: VenueThread) -> None:
    gaps: list[tuple[object, object]] = []
    client = live_client(venue, reconnect_policy="reconnect")
    sink = Collector()
    client.add_callback(sink)
    client.add_reconnect_callback(lambda start, end: gaps.append((start, end)))
    client.subscribe(DATASET, "mbp-1", ["HE.FUT"], stype_in="parent")
    client.start()
    wait_until(lambda: sink.of(MBP1Msg), "first quotes")
    first_session = client.session_id
    venue.fault("reset")
    wait_until(lambda: gaps, "the reconnect callback")
    seen = len(sink.of(MBP1Msg))
    wait_until(lambda: len(sink.of(MBP1Msg)) > seen, "quotes after the reconnect")
    second_session = client.session_id
    client.stop()
    client.block_for_close(timeout=30)
    assert len(gaps) == 1
    # The venue numbers connections consecutively: the client's new session is the only connection since the reset.
    assert first_session is not None and second_session == str(int(first_session) + 1)
    gap_start, gap_end = gaps[0]
    assert gap_start <= gap_end  # type: ignore[operator]


def test_error_message_then_close_raises_with_the_gateway_text(venue: VenueThread) -> None:
    client, _ = streaming(venue)
    venue.fault("error")
    with pytest.raises(db.BentoError, match="Simulated gateway error"):
        client.block_for_close(timeout=30)


def test_corrupt_bytes_end_the_session_with_a_decode_error(
    venue: VenueThread, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = streaming(venue)
    venue.fault("corrupt")
    client.block_for_close(timeout=30)  # databento 0.88 closes its transport itself, so the close looks clean...
    assert "error decoding DBN record" in caplog.text  # ...and only its log tells why


def test_auth_failure_fault_rejects_logins(venue: VenueThread) -> None:
    venue.fault("auth_failure", "1")
    with pytest.raises(db.BentoError, match="Authentication failed"):
        live_client(venue).subscribe(DATASET, "trades", ["HE.FUT"], stype_in="parent")


def test_gateway_down_refuses_then_comes_back(venue: VenueThread) -> None:
    client, _ = streaming(venue)
    venue.fault("down", "3")
    with pytest.raises(db.BentoError):
        client.block_for_close(timeout=30)
    with pytest.raises(db.BentoError, match="failed"):
        live_client(venue).subscribe(DATASET, "trades", ["HE.FUT"], stype_in="parent")

    def can_log_in() -> bool:
        try:
            live_client(venue).subscribe(DATASET, "trades", ["HE.FUT"], stype_in="parent")
        except db.BentoError:
            return False
        return True

    wait_until(can_log_in, "the gateway to accept connections again")


def test_pause_sends_heartbeats_only_then_resumes(venue: VenueThread) -> None:
    venue.fault("pause", "1")
    client = live_client(venue, heartbeat_interval_s=1)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "mbp-1", ["HE.FUT", "HE.OPT"], stype_in="parent")
    client.start()
    wait_until(lambda: len([m for m in sink.of(SystemMsg) if m.is_heartbeat()]) >= 2, "two heartbeats")
    assert not sink.of(MBP1Msg)
    venue.fault("pause", "0")
    wait_until(lambda: sink.of(MBP1Msg), "quotes after the pause")
    client.stop()
    client.block_for_close(timeout=30)


def test_stall_trips_the_client_heartbeat_watchdog(venue: VenueThread, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client gives up after heartbeat_interval_s + this margin of silence (10 s in databento; the gateway's
    # heartbeats, every second here, never leave a gap that long while it is not stalled).
    monkeypatch.setattr(databento.live.session, "CLIENT_TIMEOUT_MARGIN_SECONDS", 2)
    client, _ = streaming(venue, heartbeat_interval_s=1)
    venue.fault("stall", "1")
    with pytest.raises(db.BentoError, match="Gateway timeout"):
        client.block_for_close(timeout=60)
    client.terminate()


def test_slow_sending_still_delivers_in_order(venue: VenueThread) -> None:
    venue.fault("slow", "8000")
    client, sink = streaming(venue)
    wait_until(lambda: len(sink.of(MBP1Msg)) >= 25, "25 throttled quotes")
    client.stop()
    client.block_for_close(timeout=30)
    stamps = [q.ts_recv for q in sink.of(MBP1Msg)]
    assert stamps == sorted(stamps)


def test_a_client_that_never_reads_does_not_grow_venue_memory() -> None:
    with VenueThread(fast_config(seed=5, base_rate=3000.0)) as venue:
        never_read(venue)


def raw_session(venue: VenueThread) -> socket.socket:
    """A hand-rolled LSG client with a tiny receive window, subscribed to a replay of HE.OPT quotes."""
    info = venue.info
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small receive window
    sock.connect((info.live_host, info.live_port))
    greeting = b""
    while greeting.count(b"\n") < 2:
        greeting += sock.recv(1024)
    challenge = greeting.decode().split("cram=")[1].strip()
    digest = hashlib.sha256(f"{challenge}|{info.api_key}".encode()).hexdigest()
    sock.sendall(f"auth={digest}-{info.api_key[-5:]}|dataset={DATASET}|encoding=dbn|ts_out=0\n".encode())
    assert sock.recv(1024).startswith(b"success=1")
    start = venue.call(lambda v: v.model.start_ns)
    sock.sendall(f"schema=mbp-1|stype_in=parent|symbols=HE.OPT|start={start}\nstart_session=0\n".encode())
    return sock


def never_read(venue: VenueThread) -> None:
    with raw_session(venue):

        def buffered() -> int:
            return venue.call(lambda v: v.gateway.write_buffer_bytes() if v.gateway else -1)

        wait_until(lambda: buffered() > 0, "the kernel buffers to fill and the venue to queue")
        tape_before = venue.call(lambda v: v.tape.end("mbp-1"))
        wait_until(lambda: venue.call(lambda v: v.tape.end("mbp-1")) > tape_before + 5000, "5000 more quotes")
        assert 0 < buffered() < 200_000  # the transport's high-water mark + one batch, not the growing tape


def test_historical_delay_makes_clients_time_out(venue: VenueThread) -> None:
    venue.fault("http_delay", "5")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{venue.info.historical_url}/v0/timeseries.get_range", auth=(venue.info.api_key, ""), timeout=0.5)


def test_control_endpoint_rejects_unknown_faults(venue: VenueThread) -> None:
    response = httpx.post(f"{venue.info.historical_url}/sim/faults", data={"name": "meteor"})
    assert response.status_code == 422 and "unknown fault" in response.json()["detail"]


def test_a_session_overtaken_by_history_pruning_gets_an_error_not_a_silent_gap() -> None:
    with VenueThread(fast_config(seed=6, base_rate=3000.0, history_s=30.0)) as venue, raw_session(venue) as sock:
        wait_until(lambda: venue.call(lambda v: v.tape.base("mbp-1")) > 6_000, "history pruning past the reader")
        decoder = DBNDecoder()
        records: list[object] = []
        while chunk := sock.recv(65536):
            records.extend(decoder.write_and_decode(chunk))
        assert isinstance(records[-1], ErrorMsg) and "Skipped records after slow reading" in records[-1].err
