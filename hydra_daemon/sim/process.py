"""Run the simulated venue as a subprocess (`python -m hydra_daemon.sim --json ...`) and talk to it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import IO

import httpx

from hydra_daemon.sim.venue import VenueInfo

STARTUP_TIMEOUT_S = 90.0  # cold imports (pandas, databento) are slow on a loaded 2-core machine


class VenueProcessError(RuntimeError):
    """The venue subprocess failed to start or to accept a control request."""


class VenueProcess:
    """`with VenueProcess(["--speed", "600"]) as venue:` -> `venue.info` (ports, URLs, key); `venue.fault(name, value)`.

    `args` are `hydra-daemon sim` options (ports default to 0 here). Stops with SIGTERM (then SIGKILL after 10 s).
    """

    def __init__(self, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.env = env
        self._process: subprocess.Popen[str] | None = None
        self._info: VenueInfo | None = None

    @property
    def info(self) -> VenueInfo:
        if self._info is None:
            raise VenueProcessError("venue process not started")
        return self._info

    @property
    def pid(self) -> int:
        if self._process is None:
            raise VenueProcessError("venue process not started")
        return self._process.pid

    def start(self) -> VenueInfo:
        ports = [] if "--live-port" in self.args else ["--live-port", "0"]
        ports += [] if "--http-port" in self.args else ["--http-port", "0"]
        command = [sys.executable, "-m", "hydra_daemon.sim", "--json", *ports, *self.args]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, env={**os.environ, **(self.env or {})}
        )
        assert self._process.stdout is not None
        line = _first_line(self._process.stdout, STARTUP_TIMEOUT_S)
        if line is None:
            self.stop()
            raise VenueProcessError(f"venue process printed no JSON line within {STARTUP_TIMEOUT_S}s: {command}")
        threading.Thread(target=_drain, args=(self._process.stdout,), daemon=True).start()
        self._info = VenueInfo(**json.loads(line))
        return self._info

    def fault(self, name: str, value: str = "") -> None:
        """Apply a fault through `POST /sim/faults`."""
        response = httpx.post(f"{self.info.historical_url}/sim/faults", data={"name": name, "value": value})
        if response.status_code != 200:
            raise VenueProcessError(f"fault {name}={value!r} rejected: {response.status_code} {response.text}")

    def stop(self) -> int:
        """SIGTERM, wait; the exit code (SIGKILL after 10 s)."""
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def __enter__(self) -> VenueProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _first_line(stream: IO[str], timeout: float) -> str | None:
    lines: queue.Queue[str] = queue.Queue(maxsize=1)
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        return None
    return line if line.strip() else None


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass
