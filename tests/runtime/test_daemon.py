"""The daemon as a real subprocess (tests/runtime/runtime_app.py → run_daemon): systemd notify, watchdog, health socket,
restarts, signals and secrets, observed from outside exactly as systemd and an operator would."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hydra_daemon.config import parse_config
from hydra_daemon.ingest import IngestPipeline, PipelineState, Problem
from hydra_daemon.runtime.daemon import run_daemon
from hydra_daemon.runtime.health import HealthSocketError
from hydra_daemon.runtime.health_client import query_health
from tests.helpers import flood_of_idle_clients

APP = Path(__file__).with_name("runtime_app.py")
API_KEY = "db-SubprocessKey0123456789"
S3_ACCESS = "AKIADAEMONTESTACCESS"
S3_SECRET = "DaemonTestS3SecretValue"
SECRETS = (API_KEY, S3_ACCESS, S3_SECRET)
PATIENCE_S = 90.0


class Daemon:
    """One runtime_app process plus the notify socket it reports to and its stderr log."""

    def __init__(self, tmp_path: Path, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        self.workdir = tmp_path
        self.health_socket = tmp_path / "run" / "health.sock"
        self.health_socket.parent.mkdir(exist_ok=True)
        config = tmp_path / "config.toml"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.metrics_port = int(probe.getsockname()[1])
        config.write_text(
            f'state_dir = "{tmp_path / "state"}"\n'
            f'health_socket = "{self.health_socket}"\n'
            "[storage]\n"
            f'arctic_uri = "s3://127.0.0.1:capture?access={S3_ACCESS}&secret={S3_SECRET}&port=9"\n'
            "[health]\n"
            f'metrics_listen = "127.0.0.1:{self.metrics_port}"\n'
            "[[markets]]\n"
            'name = "HE"\nfutures_root = "HE"\noptions_root = "HE"\ncftc_code = "054642"\n'
        )
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = f"hydra-test-{uuid.uuid4().hex}"
        self.notify.bind("\0" + name)
        self.datagrams: list[str] = []
        self.stderr_path = tmp_path / "stderr.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        env |= {"NOTIFY_SOCKET": "@" + name, "DATABENTO_API_KEY": API_KEY, **(extra_env or {})}
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(APP), str(config), str(tmp_path), *args], env=env, stderr=err
            )

    def receive(self, timeout_s: float) -> str | None:
        """Next datagram (also kept in `datagrams`), or None after `timeout_s`."""
        self.notify.settimeout(timeout_s)
        try:
            message = self.notify.recv(65536).decode()
        except TimeoutError:
            return None
        self.datagrams.append(message)
        return message

    def drain(self) -> list[str]:
        """Every datagram already queued."""
        got = []
        while (message := self.receive(0.001)) is not None:
            got.append(message)
        return got

    def wait_datagram(self, predicate: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            self._fail_if_exited()
            message = self.receive(0.5)
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no matching datagram; got {self.datagrams[-5:]}")

    def logs(self) -> list[dict[str, Any]]:
        text = self.stderr_path.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines()]

    def wait_logs(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            self._fail_if_exited()
            logs = self.logs()
            if predicate(logs):
                return logs
            time.sleep(0.05)
        raise AssertionError(f"log condition not met; last events {[e['event'] for e in self.logs()[-5:]]}")

    def wait_health(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            self._fail_if_exited()
            answer = query_health(self.health_socket)
            if predicate(answer):
                return answer
            time.sleep(0.05)
        raise AssertionError(f"health condition not met: {answer}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        rc = self.proc.wait(PATIENCE_S)
        self.drain()
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()

    def _fail_if_exited(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.stderr_path.read_text()[-2000:]}")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def _start(args: list[str], extra_env: dict[str, str] | None = None) -> Daemon:
        daemons.append(Daemon(tmp_path, args, extra_env))
        return daemons[-1]

    yield _start
    for daemon in daemons:
        daemon.close()


def stored(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().splitlines() if not line.startswith("#")]


def test_lifecycle_restarts_health_signals_and_secrets(start: Callable[..., Daemon]) -> None:
    daemon = start(["--counter", "futures", "--flaky", "options", "--backoff", "0.05", "--ready-timeout", "5"])
    daemon.wait_datagram(lambda m: "READY=1" in m.splitlines())

    first = daemon.wait_health(lambda h: h["pipelines"]["futures"]["records"] > 0)
    answer = daemon.wait_health(
        lambda h: (
            h["pipelines"]["options"]["restarts"] >= 3
            and h["pipelines"]["futures"]["records"] > first["pipelines"]["futures"]["records"]
        )
    )
    futures, options = answer["pipelines"]["futures"], answer["pipelines"]["options"]
    assert futures["supervisor_state"] == "running"
    assert futures["restarts"] == 0
    assert options["last_failure"] == "ConnectionError: venue dropped session for key ***"
    assert answer["pid"] == daemon.proc.pid
    assert answer["ready"] is True
    assert answer["store"] == "s3://127.0.0.1:capture?access=***&secret=***&port=9"
    assert answer["status"] == "degraded", "options keeps crashing and restarting"
    assert answer["pipelines"]["futures"]["status"] == "ok"
    assert answer["pipelines"]["options"]["status"] in ("degraded", "failed")
    assert not any(secret in json.dumps(answer) for secret in SECRETS)

    scraped = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    restarts = {s.labels["pipeline"]: s.value for s in families["hydra_pipeline_restarts"].samples}
    assert restarts["options"] >= 3 and restarts["futures"] == 0
    assert httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/health", timeout=10).json()["pid"] == daemon.proc.pid
    assert not any(secret in scraped.text for secret in SECRETS)
    daemon.drain()  # STATUS= updates piled up meanwhile; a full notify buffer would drop STOPPING=1

    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_logs(lambda logs: any(e["event"] == "sighup_ignored" for e in logs))
    assert daemon.wait_health(lambda h: True)["pid"] == daemon.proc.pid

    assert daemon.stop(signal.SIGTERM) == 0

    lines = [m.splitlines() for m in daemon.datagrams]
    ready_at = [i for i, m in enumerate(lines) if "READY=1" in m]
    stopping_at = [i for i, m in enumerate(lines) if "STOPPING=1" in m]
    assert len(ready_at) == 1
    assert len(stopping_at) == 1 and stopping_at[0] > ready_at[0]
    assert not any("WATCHDOG=1" in m for m in lines), "no WATCHDOG_USEC, no pings"
    assert not daemon.health_socket.exists()

    assert (daemon.workdir / "futures.out").read_text().endswith("# closed\n"), "shutdown let the pipeline flush"
    for name in ("futures", "options"):
        values = stored(daemon.workdir / f"{name}.out")
        assert values == list(range(len(values))), f"{name}: every value stored exactly once across restarts"

    logs = daemon.logs()
    stderr = daemon.stderr_path.read_text()
    assert not any(secret in stderr for secret in SECRETS)
    restarts = [e for e in logs if e["event"] == "pipeline_restarting"]
    assert {e["pipeline"] for e in restarts} == {"options"}
    delays = [e["retry_in_s"] for e in restarts[:3]]
    assert delays == sorted(delays) and delays[0] < delays[-1], "exponential backoff between quick failures"
    failure = next(e for e in logs if e["event"] == "pipeline_failed")
    assert failure["error"] == "ConnectionError: venue dropped session for key ***"
    assert "ConnectionError: venue dropped session for key ***" in failure["exception"]
    assert logs[-1]["event"] == "daemon_stopped"


def test_ready_after_sources_start_and_watchdog_stops_when_wedged(start: Callable[..., Daemon]) -> None:
    daemon = start(
        ["--wedge", "futures", "--wedge-after", "3", "--stall-after", "1.0", "--ready-timeout", "60"],
        {"WATCHDOG_USEC": "200000"},
    )
    ready = daemon.wait_datagram(lambda m: "READY=1" in m.splitlines())
    assert "futures: running" in ready and "running 0 rec" not in ready, "READY only after a real batch"
    daemon.wait_datagram(lambda m: m == "WATCHDOG=1")

    daemon.wait_logs(lambda logs: any(e["event"] == "watchdog_withheld" for e in logs))
    daemon.drain()
    pings_before_stall = sum(m == "WATCHDOG=1" for m in daemon.datagrams)
    seen = len(daemon.datagrams)
    daemon.wait_logs(lambda logs: sum(e["event"] == "watchdog_withheld" for e in logs) >= 4)
    daemon.drain()
    assert pings_before_stall >= 1
    assert "WATCHDOG=1" not in daemon.datagrams[seen:], "a wedged daemon gets no watchdog pings"

    answer = query_health(daemon.health_socket)
    assert answer["status"] == "failed"
    assert answer["reasons"][0].startswith("pipeline futures wedged: no progress for ")
    assert answer["pipelines"]["futures"]["batches"] == 3
    assert answer["pipelines"]["futures"]["progress_age_s"] > 1.0

    assert daemon.stop(signal.SIGINT) == 0
    assert any("STOPPING=1" in m.splitlines() for m in daemon.datagrams)
    logs = daemon.logs()
    assert not any(e["event"] == "ready_timeout" for e in logs)
    withheld = [e for e in logs if e["event"] == "watchdog_withheld"]
    assert all(e["progress_age_s"] > 1.0 and e["stall_after_s"] == 1.0 for e in withheld)


class LeaseLost(RuntimeError):
    """Stands for the store's LeaseLostError."""


class LosingPipeline(IngestPipeline[list[int]]):
    """Streams one batch, then finds its writer lease gone."""

    async def fetch(self) -> AsyncIterator[list[int]]:
        self.stats.state = PipelineState.STREAMING
        yield [1]
        raise LeaseLost("writer lease taken over by host-b")

    def validate(self, batch: list[int]) -> tuple[list[int], list[Problem]]:
        return batch, []

    async def persist(self, clean: list[int]) -> int:
        return len(clean)


async def test_fatal_error_exits_1_after_stopping_cleanly(tmp_path: Path) -> None:
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "health_socket": str(tmp_path / "run" / "health.sock"),
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    config.health_socket.parent.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.setblocking(False)
        rc = await run_daemon(
            config,
            [("futures", lambda: LosingPipeline(markets=("HE",), schema="ohlcv-1d"))],
            fatal=(LeaseLost,),
            environ={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
        )
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(notify.recv(65536).decode())
    assert rc == 1
    assert any("STOPPING=1" in m.splitlines() for m in messages)
    assert not config.health_socket.exists()


class QuietAfterOneBatch(IngestPipeline[list[int]]):
    """Streams one batch, then stays up and quiet (a market after its close)."""

    async def fetch(self) -> AsyncIterator[list[int]]:
        self.stats.state = PipelineState.STREAMING
        yield [1]
        await anyio.sleep_forever()

    def validate(self, batch: list[int]) -> tuple[list[int], list[Problem]]:
        return batch, []

    async def persist(self, clean: list[int]) -> int:
        return len(clean)


class StoppedClock:
    """The data clock at one instant."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def now_ns(self) -> int:
        return int(self.at.timestamp()) * 1_000_000_000

    async def sleep_until(self, instant: datetime) -> None:
        await anyio.sleep_forever()


async def test_health_judges_a_market_by_the_hours_its_config_gives(tmp_path: Path) -> None:
    """[[markets]] hours reach health: at 14:00 Chicago on a Tuesday (Globex open) HE, trading 08:30-13:05, is
    closed until 08:30 the next day."""
    hours = {"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642", "hours": "08:30-13:05"}
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "health_socket": str(tmp_path / "run" / "health.sock"),
            "markets": [hours],
        }
    )
    config.health_socket.parent.mkdir()
    clock = StoppedClock(datetime(2026, 3, 10, 19, tzinfo=UTC))
    pipelines = [("options", lambda: QuietAfterOneBatch(markets=("HE",), schema="mbp-1,definition"))]
    answer: dict[str, Any] = {}
    async with anyio.create_task_group() as group:
        group.start_soon(partial(run_daemon, config, pipelines, environ={}, clock=clock))
        with anyio.fail_after(30):
            while not answer.get("ready") or answer["pipelines"]["options"]["records"] < 1:
                await anyio.sleep(0.05)
                with contextlib.suppress(OSError):
                    answer = await anyio.to_thread.run_sync(query_health, config.health_socket)
        group.cancel_scope.cancel()
    assert answer["status"] == "closed", answer
    assert answer["pipelines"]["options"]["reasons"] == [
        "HE: market closed; trades 08:30-13:05 America/Chicago on Globex trading days, "
        "reopens 2026-03-11T13:30:00+00:00"
    ]


def test_a_flood_of_metrics_clients_beyond_the_fd_limit_does_not_end_the_daemon(start: Callable[..., Daemon]) -> None:
    """`[health] metrics_listen` is a TCP port any local user reaches. Clients beyond the 16 served are still accepted
    (each gets its 503 within 0.5 s): enough of them at once exhaust the process's descriptors (systemd's default
    soft limit is 1024), accept() fails with EMFILE, and that error must not end the listener and the daemon."""

    daemon = start(["--counter", "futures", "--ready-timeout", "5"])
    daemon.wait_datagram(lambda m: "READY=1" in m.splitlines())
    pid = daemon.proc.pid
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 48, hard))
    flood_of_idle_clients(socket.AF_INET, ("127.0.0.1", daemon.metrics_port))
    assert daemon.proc.poll() is None, (
        f"daemon exited with {daemon.proc.returncode}: {daemon.stderr_path.read_text()[-1500:]}"
    )
    assert daemon.wait_health(lambda h: h["pipelines"]["futures"]["records"] > 0)["pid"] == pid


async def test_a_metrics_port_in_use_is_one_error_before_anything_starts(tmp_path: Path) -> None:
    """The TCP listener was opened inside the task group: a port in use surfaced as an ExceptionGroup, which the CLI
    printed as a traceback (found by a review helper)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = parse_config(
            {
                "state_dir": str(tmp_path / "state"),
                "health_socket": str(tmp_path / "health.sock"),
                "health": {"metrics_listen": f"127.0.0.1:{port}"},
                "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
            }
        )
        with pytest.raises(HealthSocketError, match=f"metrics_listen 127.0.0.1:{port}: cannot listen"):
            await run_daemon(config, [("futures", lambda: LosingPipeline(markets=("HE",), schema="ohlcv-1d"))])
    assert not (tmp_path / "health.sock").exists()
