"""Health socket: HTTP/1.1 (GET /health, /metrics; 400/404/405/413/431/503), bounded clients, mode 0660, stale sockets
replaced, live ones refused, the document and metrics from one snapshot on the data clock, no secrets."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hydra_daemon.cme_sessions import CHICAGO, MarketSchedule
from hydra_daemon.ingest import IngestPipeline, PipelineState, Problem
from hydra_daemon.redaction import clear_secrets, register_secret, register_uri_secrets
from hydra_daemon.runtime import http_server
from hydra_daemon.runtime.assessment import Status, Verdict
from hydra_daemon.runtime.health import (
    DaemonState,
    HealthSnapshot,
    HealthSocketError,
    health_document,
    health_routes,
    open_health_socket,
    pipeline_health,
    serve_health,
    take_snapshot,
)
from hydra_daemon.runtime.health_client import fetch, health_command, query_health
from hydra_daemon.runtime.http_server import Response, Route, text
from hydra_daemon.runtime.metrics import metrics_registry, render
from hydra_daemon.runtime.supervisor import PipelineRecord, Supervisor, SupervisorState
from hydra_daemon.store.usage import StoreUsage

KEY = "db-HealthKey0123456789"
S3_URI = "s3://minio:capture?access=AKIAHEALTHACCESS&secret=HealthS3Secret42&port=9000"
TUESDAY_NOON = datetime(2026, 3, 10, 17, tzinfo=UTC)


def chicago(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO).astimezone(UTC)  # type: ignore[misc]


class FixedClock:
    """A data clock standing still at `at` (tests move it by hand)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def now_ns(self) -> int:
        return int(self.at.timestamp()) * 1_000_000_000

    async def sleep_until(self, instant: datetime) -> None:
        await anyio.sleep_forever()


class QuotesPipeline(IngestPipeline[list[int]]):
    """A source that is up ("streaming"), stores `burst` records of each market once, then stays quiet."""

    burst = 3

    async def fetch(self) -> AsyncIterator[list[int]]:
        self.stats.state = PipelineState.STREAMING
        yield list(range(self.burst))
        await anyio.sleep_forever()

    def validate(self, batch: list[int]) -> tuple[list[int], list[Problem]]:
        return batch, []

    async def persist(self, clean: list[int]) -> int:
        for market in self.markets:
            self.stats.market(market)  # each market has a progress entry, as after a delivery
        return len(clean)


class MarketQuotes(IngestPipeline[list[tuple[str, datetime]]]):
    """A source that is up and stores the records (market, time) sent to it, keeping each market's progress as the
    live-capture pipelines do."""

    def __init__(self, markets: tuple[str, ...], schema: str) -> None:
        super().__init__(markets=markets, schema=schema)
        self.send, self._receive = anyio.create_memory_object_stream[list[tuple[str, datetime]]](10)

    async def fetch(self) -> AsyncIterator[list[tuple[str, datetime]]]:
        self.stats.state = PipelineState.STREAMING
        async for batch in self._receive:
            yield batch

    def validate(self, batch: list[tuple[str, datetime]]) -> tuple[list[tuple[str, datetime]], list[Problem]]:
        return batch, []

    async def persist(self, clean: list[tuple[str, datetime]]) -> int:
        for market, at in clean:
            self.stats.market(market).advance(pd.DatetimeIndex([at]), self.schema.split(",")[0])
        return len(clean)


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    clear_secrets()
    register_secret(KEY)
    register_uri_secrets(S3_URI)
    yield
    clear_secrets()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    return tmp_path / "run" / "health.sock"


def raw_exchange(path: Path, request: bytes, *, read: bool = True) -> bytes:
    """Send `request` bytes as is and read until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(request)
        data = b""
        while read and (chunk := client.recv(65536)):
            data += chunk
    return data


def fixed_routes(answer: dict[str, Any]) -> dict[str, Route]:
    def health() -> Response:
        code = 200 if answer["status"] in ("ok", "closed") else 503
        return Response(code, json.dumps(answer).encode(), "application/json")

    return {"/health": health, "/metrics": lambda: text(200, "hydra_up 1")}


async def test_http_routes_status_codes_and_mode_0660_then_the_socket_is_removed(sock_path: Path, capsys: Any) -> None:
    answer = {"status": "ok", "daemon": "hydra-daemon"}
    async with anyio.create_task_group() as group:
        group.start_soon(serve_health, await open_health_socket(sock_path), sock_path, fixed_routes(answer))
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o660
        assert await anyio.to_thread.run_sync(query_health, sock_path) == answer
        assert await anyio.to_thread.run_sync(health_command, sock_path) == 0
        answer["status"] = "closed"
        assert await anyio.to_thread.run_sync(health_command, sock_path) == 0
        answer["status"] = "degraded"
        assert await anyio.to_thread.run_sync(fetch, sock_path, "/health") == (503, json.dumps(answer).encode())
        assert await anyio.to_thread.run_sync(health_command, sock_path) == 1
        answer["status"] = "failed"
        assert await anyio.to_thread.run_sync(health_command, sock_path) == 2
        assert await anyio.to_thread.run_sync(fetch, sock_path, "/metrics?x=1") == (200, b"hydra_up 1\n")
        assert (await anyio.to_thread.run_sync(fetch, sock_path, "/nope"))[0] == 404

        post = await anyio.to_thread.run_sync(raw_exchange, sock_path, b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and b"Allow: GET, HEAD\r\n" in post
        head = await anyio.to_thread.run_sync(raw_exchange, sock_path, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        garbage = await anyio.to_thread.run_sync(raw_exchange, sock_path, b"status\n\n")
        assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        assert (await anyio.to_thread.run_sync(raw_exchange, sock_path, huge)).startswith(b"HTTP/1.1 431 ")
        body = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        assert (await anyio.to_thread.run_sync(raw_exchange, sock_path, body)).startswith(b"HTTP/1.1 413 ")
        group.cancel_scope.cancel()
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{\n") : printed.index("\n}\n") + 2]) == {
        "status": "ok",
        "daemon": "hydra-daemon",
    }
    assert not sock_path.exists()


async def test_slow_and_surplus_clients_are_cut_off_without_delaying_others(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_server, "CLIENT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(http_server, "MAX_CLIENTS", 2)
    async with anyio.create_task_group() as group:
        group.start_soon(serve_health, await open_health_socket(sock_path), sock_path, fixed_routes({"status": "ok"}))
        slow = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
        for client in slow:
            client.connect(str(sock_path))
            client.sendall(b"GET /hea")  # and nothing more: a slowloris
        await anyio.sleep(0.1)
        surplus = await anyio.to_thread.run_sync(raw_exchange, sock_path, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert surplus.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        began = time.monotonic()
        for client in slow:
            client.settimeout(10)
            assert await anyio.to_thread.run_sync(client.recv, 100) == b"", "dropped after the client timeout"
            client.close()
        assert time.monotonic() - began < 5
        assert await anyio.to_thread.run_sync(query_health, sock_path) == {"status": "ok"}
        group.cancel_scope.cancel()


async def test_stale_socket_is_replaced(sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock_path))
    async with anyio.create_task_group() as group:
        group.start_soon(serve_health, await open_health_socket(sock_path), sock_path, fixed_routes({"status": "ok"}))
        assert await anyio.to_thread.run_sync(query_health, sock_path) == {"status": "ok"}
        group.cancel_scope.cancel()


async def test_socket_of_a_live_daemon_is_refused(sock_path: Path) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(serve_health, await open_health_socket(sock_path), sock_path, fixed_routes({"status": "ok"}))
        with pytest.raises(HealthSocketError, match="another running daemon"):
            await open_health_socket(sock_path)
        assert await anyio.to_thread.run_sync(query_health, sock_path) == {"status": "ok"}
        group.cancel_scope.cancel()


async def test_regular_file_or_missing_directory_is_refused(sock_path: Path) -> None:
    sock_path.write_text("not a socket")
    with pytest.raises(HealthSocketError, match="is not a socket"):
        await open_health_socket(sock_path)
    assert sock_path.read_text() == "not a socket"
    missing = sock_path.parent / "absent" / "health.sock"
    with pytest.raises(HealthSocketError, match="does not exist; create it"):
        await open_health_socket(missing)
    assert not missing.parent.exists()


def test_unreachable_daemon_exits_2_with_a_hint(sock_path: Path, capsys: Any) -> None:
    assert health_command(sock_path) == 2
    assert "is the daemon running" in capsys.readouterr().err


async def test_document_and_metrics_tell_the_same_story_without_secrets() -> None:
    clock = FixedClock(TUESDAY_NOON)
    supervisor = Supervisor([("options", lambda: QuotesPipeline(markets=("HE", "LE"), schema="mbp-1,definition"))])
    usage = StoreUsage(size_bytes=850, map_size_bytes=1000, versions_pruned=7)
    state = DaemonState(S3_URI, 600.0, clock, store_usage=lambda: usage)
    record = supervisor.records["options"]
    async with anyio.create_task_group() as group:
        group.start_soon(supervisor.run)
        with anyio.fail_after(30):
            while record.current is None or record.current.stats.records < 3:
                await anyio.sleep(0.01)
        await state.refresh_usage()
        take_snapshot(supervisor, state)  # the tracker sees the burst now, on the data clock
        state.ready = True
        record.current.stats.last_error = f"upstream said: bad key {KEY}"
        record.current.stats.last_record_time = TUESDAY_NOON - timedelta(seconds=2)
        for market in ("HE", "LE"):
            record.current.stats.market(market).advance(
                pd.DatetimeIndex([TUESDAY_NOON - timedelta(seconds=2)]), "mbp-1"
            )
        record.current.stats.historical_cost_usd = 1.25
        record.current.stats.persist_seconds.observe(0.003)
        fresh = health_document(take_snapshot(supervisor, state), supervisor, state)
        clock.at = TUESDAY_NOON + timedelta(seconds=901)
        routes = health_routes(
            supervisor, state, lambda: render(metrics_registry(supervisor, lambda: take_snapshot(supervisor, state)))
        )
        stale = routes["/health"]()
        exposition = routes["/metrics"]().body.decode()
        usage = StoreUsage(size_bytes=850, map_size_bytes=1000, lease_held=False, problem="disk full: ENOSPC")
        await state.refresh_usage()
        lost = take_snapshot(supervisor, state)
        group.cancel_scope.cancel()

    assert fresh["status"] == "degraded", "the map is 85 % full"
    assert fresh["reasons"] == ["store map 85% full (degraded from 80%)"]
    options = fresh["pipelines"]["options"]
    assert options["status"] == "ok" and options["reasons"] == []
    assert options["last_delivery"] == TUESDAY_NOON.isoformat()
    assert options["lag_s"] == 2.0
    assert options["last_error"] == "upstream said: bad key ***"
    assert fresh["store"] == "s3://minio:capture?access=***&secret=***&port=9000"
    assert fresh["data_clock"] == TUESDAY_NOON.isoformat()
    assert fresh["version"] == "0.1.0"
    for secret in (KEY, "AKIAHEALTHACCESS", "HealthS3Secret42"):
        assert secret not in json.dumps(fresh) + stale.body.decode() + exposition

    assert stale.status == 503
    later = json.loads(stale.body)["pipelines"]["options"]
    assert later["status"] == "degraded"
    assert later["reasons"] == [
        "HE: no data for 901 s of open market (expected within 900 s)",
        "LE: no data for 901 s of open market (expected within 900 s)",
    ]
    assert later["markets"]["LE"] == {
        "status": "degraded",
        "reasons": ["no data for 901 s of open market (expected within 900 s)"],
        "last_delivery": TUESDAY_NOON.isoformat(),
        "last_record_time": (TUESDAY_NOON - timedelta(seconds=2)).isoformat(),
        "schema_record_times": {"mbp-1": (TUESDAY_NOON - timedelta(seconds=2)).isoformat()},
        "open_lag_s": 903.0,
        "lag_limit_s": 900.0,
    }

    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    labels = {"pipeline": "options", "market": "HE,LE", "schema": "mbp-1,definition"}

    def value(name: str, sample: str | None = None, **extra: str) -> float:
        wanted = {**labels, **extra} if families[name].samples[0].labels else {}
        for s in families[name].samples:
            if s.name == (sample or name) and s.labels == wanted:
                return float(s.value)
        raise AssertionError(f"no {sample or name} {wanted} in {families[name].samples}")

    assert value("hydra_records", "hydra_records_total") == 3
    assert value("hydra_historical_cost_usd", "hydra_historical_cost_usd_total") == 1.25
    assert value("hydra_pipeline_status") == 1
    assert value("hydra_status") == 1
    assert value("hydra_lag_seconds") == 903
    for market in ("HE", "LE"):
        open_lag, limit = (value(name, market=market) for name in ("hydra_open_lag_seconds", "hydra_lag_limit_seconds"))
        assert (open_lag, limit) == (903, 900), "Tuesday: all open"
    assert value("hydra_last_delivery_timestamp_seconds") == TUESDAY_NOON.timestamp()
    assert value("hydra_persist_seconds", "hydra_persist_seconds_count") == 2
    assert value("hydra_persist_seconds", "hydra_persist_seconds_bucket", le="0.005") >= 1
    assert value("hydra_store_map_used_ratio") == 0.85
    assert lost.status.value == "failed" and lost.store.reasons == ("disk full: ENOSPC", "writer lease lost")
    assert value("hydra_versions_pruned", "hydra_versions_pruned_total") == 7
    assert value("hydra_data_clock_timestamp_seconds") == clock.at.timestamp()


async def test_each_market_of_a_pipeline_is_judged_by_its_own_hours_and_deliveries() -> None:
    """One session captures HE (08:30-13:05 Chicago) and CL (the whole Globex session). At 11:20 HE has been silent
    for 20 open minutes while CL delivers: degraded, naming HE. Both deliver at 13:04; at 15:00 HE is closed and CL
    delivers: ok. A pipeline
    of HE alone, silent since 13:04, is closed at 15:00."""
    clock = FixedClock(chicago(2026, 3, 10, 11))
    supervisor = Supervisor(
        [
            ("options", lambda: MarketQuotes(("HE", "CL"), "mbp-1,definition")),
            ("he", lambda: MarketQuotes(("HE",), "mbp-1,definition")),
        ]
    )
    state = DaemonState(S3_URI, 600.0, clock, market_hours={"HE": MarketSchedule.parse("08:30-13:05")})
    state.ready = True
    both, he = supervisor.records["options"], supervisor.records["he"]

    async def deliver(record: PipelineRecord, *markets: str) -> HealthSnapshot:
        pipeline = record.current
        assert isinstance(pipeline, MarketQuotes)
        stored = pipeline.stats.records + len(markets)
        await pipeline.send.send([(market, clock.at) for market in markets])
        with anyio.fail_after(30):
            while pipeline.stats.records < stored:
                await anyio.sleep(0.01)
        return take_snapshot(supervisor, state)  # the delivery is seen now, on the data clock

    async with anyio.create_task_group() as group:
        group.start_soon(supervisor.run)
        with anyio.fail_after(30):
            while both.current is None or he.current is None:
                await anyio.sleep(0.01)
        await deliver(both, "HE", "CL")
        clock.at = chicago(2026, 3, 10, 11, 20)
        silent = await deliver(both, "CL")
        clock.at = chicago(2026, 3, 10, 13, 4)
        await deliver(both, "HE", "CL")
        await deliver(he, "HE")
        clock.at = chicago(2026, 3, 10, 15)
        closed = await deliver(both, "CL")
        document = health_document(silent, supervisor, state)
        group.cancel_scope.cancel()

    options = silent.pipelines["options"]
    assert options.verdict.reasons == ("HE: no data for 1200 s of open market (expected within 900 s)",)
    assert silent.status.value == "degraded"
    assert {m: d.verdict.status.value for m, d in options.per_market.items()} == {"HE": "degraded", "CL": "ok"}
    assert (options.per_market["HE"].open_lag_s, options.per_market["CL"].open_lag_s) == (1200, 0)
    assert document["pipelines"]["options"]["markets"]["CL"]["status"] == "ok"
    assert document["pipelines"]["options"]["reasons"] == [options.verdict.reasons[0]]
    assert closed.pipelines["options"].verdict == Verdict(Status.OK), "HE silent outside its hours"
    assert closed.pipelines["options"].per_market["HE"].verdict.status.value == "closed"
    assert closed.pipelines["he"].verdict.reasons == (
        "HE: market closed; trades 08:30-13:05 America/Chicago on Globex trading days, "
        "reopens 2026-03-11T13:30:00+00:00",
    )
    assert closed.status.value == "ok"


def test_a_restarted_pipeline_replaying_a_silent_market_does_not_make_it_fresh() -> None:
    """HE's last bar is from 11:00 while CL keeps delivering. At 11:10 the pipeline restarts; its new instance
    replays HE's 11:00 bar (the replay overlap before HE's watermark). That is no delivery: at 11:16:30 HE has been
    silent 990 s of open market (beyond the 960 s ohlcv-1m allows), so health is degraded, not ok."""
    clock = FixedClock(chicago(2026, 3, 10, 11))
    state = DaemonState(S3_URI, 600.0, clock)
    state.ready = True
    record = PipelineRecord("futures", lambda: MarketQuotes(("HE", "CL"), "ohlcv-1m"), SupervisorState.RUNNING)

    def instance(*records: tuple[str, datetime]) -> MarketQuotes:
        pipeline = MarketQuotes(("HE", "CL"), "ohlcv-1m")
        pipeline.stats.state = PipelineState.STREAMING
        for market, at in records:
            pipeline.stats.market(market).advance(pd.DatetimeIndex([at]), "ohlcv-1m")
        return pipeline

    last_he = chicago(2026, 3, 10, 11)
    record.current = instance(("HE", last_he), ("CL", last_he))
    pipeline_health(record, state, clock.now())
    clock.at = chicago(2026, 3, 10, 11, 10)
    record.current = instance(("HE", last_he), ("CL", clock.at))  # the restart's replay
    pipeline_health(record, state, clock.now())
    clock.at = chicago(2026, 3, 10, 11, 16, 30)
    record.current.stats.market("CL").advance(pd.DatetimeIndex([clock.at]), "ohlcv-1m")
    verdict = pipeline_health(record, state, clock.now()).verdict
    assert verdict == Verdict(Status.DEGRADED, ("HE: no data for 990 s of open market (expected within 960 s)",))


def test_daily_bars_that_stop_while_minute_bars_flow_are_degraded_across_a_restart() -> None:
    """Daily bars are held to their own cadence, and what was seen of them outlives a pipeline restart: the new
    instance replays minute bars only, and judged from its own start the missing daily bar looked due much later."""
    clock = FixedClock(chicago(2026, 3, 11, 12))  # Wednesday
    state = DaemonState(S3_URI, 600.0, clock)
    state.ready = True
    schemas = "ohlcv-1d,ohlcv-1m,definition"
    record = PipelineRecord("futures", lambda: MarketQuotes(("CL",), schemas), SupervisorState.RUNNING)

    def instance(**newest: datetime) -> MarketQuotes:
        pipeline = MarketQuotes(("CL",), schemas)
        pipeline.stats.state = PipelineState.STREAMING
        for schema, at in newest.items():
            pipeline.stats.market("CL").advance(pd.DatetimeIndex([at]), schema.replace("_", "-"))
        return pipeline

    tuesday_bar = datetime(2026, 3, 10, tzinfo=UTC)
    record.current = instance(ohlcv_1d=tuesday_bar, ohlcv_1m=clock.at)
    first = pipeline_health(record, state, clock.now())
    assert first.verdict == Verdict(Status.OK)
    assert first.per_market["CL"].as_dict()["schema_record_times"] == {
        "ohlcv-1d": "2026-03-10T00:00:00+00:00",
        "ohlcv-1m": "2026-03-11T17:00:00+00:00",
    }
    clock.at = chicago(2026, 3, 11, 13)
    record.current = instance(ohlcv_1m=clock.at)  # restarted: minute bars flow, Wednesday's daily bar never comes
    assert pipeline_health(record, state, clock.now()).verdict == Verdict(Status.OK)
    clock.at = chicago(2026, 3, 12, 12)  # Thursday: Wednesday's bar was due at 00:00 UTC
    record.current.stats.market("CL").advance(pd.DatetimeIndex([clock.at]), "ohlcv-1m")
    verdict = pipeline_health(record, state, clock.now()).verdict
    assert verdict.status is Status.DEGRADED
    [reason] = verdict.reasons
    assert reason.startswith("CL: ohlcv-1d: newest record ") and reason.endswith("(limit 173700 s)"), reason
