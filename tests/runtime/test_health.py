"""Health socket: one JSON answer per connection, mode 0660, stale sockets replaced, live ones refused, no secrets."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hydra_daemon.ingest import IngestPipeline, Problem
from hydra_daemon.redaction import clear_secrets, register_secret, register_uri_secrets
from hydra_daemon.runtime.health import (
    DaemonState,
    HealthSocketError,
    health_document,
    open_health_socket,
    overall_status,
    serve_health,
)
from hydra_daemon.runtime.health_client import health_command, query_health
from hydra_daemon.runtime.supervisor import Supervisor

KEY = "db-HealthKey0123456789"
S3_URI = "s3://minio:capture?access=AKIAHEALTHACCESS&secret=HealthS3Secret42&port=9000"


class IdlePipeline(IngestPipeline[list[int]]):
    """A source that is up ("streaming") and quiet."""

    async def fetch(self) -> AsyncIterator[list[int]]:
        self.stats.state = "streaming"
        await anyio.sleep_forever()
        yield []

    def validate(self, batch: list[int]) -> tuple[list[int], list[Problem]]:
        return batch, []

    async def persist(self, clean: list[int]) -> int:
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
    return tmp_path / "run" / "health.sock"


async def test_answers_json_with_mode_0660_then_removes_the_socket(sock_path: Path, capsys: Any) -> None:
    answer = {"status": "ok", "daemon": "hydra-daemon"}
    async with anyio.create_task_group() as group:
        group.start_soon(serve_health, await open_health_socket(sock_path), sock_path, lambda: answer)
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o660
        assert await anyio.to_thread.run_sync(query_health, sock_path) == answer
        assert await anyio.to_thread.run_sync(_raw_query_without_request, sock_path) == answer
        assert await anyio.to_thread.run_sync(health_command, sock_path) == 0
        answer["status"] = "degraded"
        assert await anyio.to_thread.run_sync(health_command, sock_path) == 1
        group.cancel_scope.cancel()
    printed = capsys.readouterr().out
    first = printed[printed.index("{\n") : printed.index("\n}\n") + 2]
    assert json.loads(first) == {"status": "ok", "daemon": "hydra-daemon"}
    assert not sock_path.exists()


def _raw_query_without_request(path: Path) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        data = b""
        while chunk := client.recv(4096):
            data += chunk
    result: dict[str, Any] = json.loads(data)
    return result


async def test_stale_socket_is_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock_path))
    assert stat.S_ISSOCK(sock_path.lstat().st_mode)
    async with anyio.create_task_group() as group:
        group.start_soon(serve_health, await open_health_socket(sock_path), sock_path, lambda: {"status": "ok"})
        assert await anyio.to_thread.run_sync(query_health, sock_path) == {"status": "ok"}
        group.cancel_scope.cancel()


async def test_socket_of_a_live_daemon_is_refused(sock_path: Path) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(serve_health, await open_health_socket(sock_path), sock_path, lambda: {"status": "ok"})
        with pytest.raises(HealthSocketError, match="another running daemon"):
            await open_health_socket(sock_path)
        assert await anyio.to_thread.run_sync(query_health, sock_path) == {"status": "ok"}
        group.cancel_scope.cancel()


async def test_regular_file_in_the_way_is_refused(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    sock_path.write_text("not a socket")
    with pytest.raises(HealthSocketError, match="is not a socket"):
        await open_health_socket(sock_path)
    assert sock_path.read_text() == "not a socket"


def test_unreachable_daemon_exits_1_with_a_hint(sock_path: Path, capsys: Any) -> None:
    assert health_command(sock_path) == 1
    assert "is the daemon running" in capsys.readouterr().err


async def test_document_has_stats_restarts_and_no_secrets() -> None:
    supervisor = Supervisor([("futures", lambda: IdlePipeline(markets=("HE",), schema="ohlcv-1d"))])
    record = supervisor.records["futures"]
    state = DaemonState.now(S3_URI, stall_after_s=600.0)
    async with anyio.create_task_group() as group:
        group.start_soon(supervisor.run)
        with anyio.fail_after(30):
            while not record.started():
                await anyio.sleep(0.01)
        assert record.current is not None
        record.current.stats.last_error = f"upstream said: bad key {KEY}"
        record.restarts = 2
        record.last_failure = "ConnectionError: reset"
        state.ready = True
        document = health_document(supervisor, state)
        group.cancel_scope.cancel()
    text = json.dumps(document)
    for secret in (KEY, "AKIAHEALTHACCESS", "HealthS3Secret42"):
        assert secret not in text
    assert document["store"] == "s3://minio:capture?access=***&secret=***&port=9000"
    assert document["status"] == "ok"
    assert document["version"] == "0.1.0"
    futures = document["pipelines"]["futures"]
    assert futures["state"] == "streaming"
    assert futures["supervisor_state"] == "running"
    assert futures["restarts"] == 2
    assert futures["last_failure"] == "ConnectionError: reset"
    assert futures["last_error"] == "upstream said: bad key ***"
    assert {"records", "batches", "rejects", "reconnects", "lag_s", "last_commit_at"} <= set(futures)


def _pipelines(*states: str) -> dict[str, dict[str, Any]]:
    return {f"p{i}": {"supervisor_state": s} for i, s in enumerate(states)}


@pytest.mark.parametrize(
    ("pipelines", "jobs", "ready", "stalled", "stopping", "expected"),
    [
        (_pipelines("running", "running"), {}, True, False, False, "ok"),
        (_pipelines("running", "backoff"), {}, True, False, False, "degraded"),
        (_pipelines("running"), {}, False, False, False, "degraded"),
        (_pipelines("running"), {"flush": {"last_ok": False}}, True, False, False, "degraded"),
        (_pipelines("backoff", "starting"), {}, True, False, False, "failing"),
        (_pipelines("running"), {}, True, True, False, "failing"),
        (_pipelines("running"), {}, True, False, True, "failing"),
        ({}, {}, True, False, False, "failing"),
    ],
)
def test_overall_status(
    pipelines: dict[str, dict[str, Any]],
    jobs: dict[str, dict[str, Any]],
    ready: bool,
    stalled: bool,
    stopping: bool,
    expected: str,
) -> None:
    assert overall_status(pipelines, jobs, ready=ready, stalled=stalled, stopping=stopping) == expected
