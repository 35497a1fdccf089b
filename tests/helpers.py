"""Helpers for tests that drive the real Databento clients and our pipelines against the simulated venue.

Test code only: the package (production and `hydra_daemon.sim`) never imports this. Every wait polls a condition
under a generous timeout that guards against hangs; none is a timing assertion.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import anyio
import databento as db
import pandas as pd
import pytest

from hydra_daemon.sim.audit import RECORD_KEYS, canonical, read_truth, truth_frame
from hydra_daemon.sim.config import LEAN_HOGS, MarketConfig
from hydra_daemon.sim.venue import VenueConfig, VenueThread

# Monday 23:55 UTC: at speed 600 the first wall second crosses midnight, so minute bars, daily bars, settlements
# and the next day's definitions are all on the tape early.
FAST_START = datetime(2026, 11, 2, 23, 55, tzinfo=UTC)
WAIT_S = 60.0
"""How long a wait lasts before it fails: far beyond any healthy run, even on a loaded 2-core machine."""


def flood_of_idle_clients(family: socket.AddressFamily, address: str | tuple[str, int], most: int = 200) -> None:
    """Connect up to `most` clients that say nothing (a stuck monitoring agent, a flood) until a connect fails,
    hold them a second, close them all and give the server a second."""
    clients = []
    for _ in range(most):
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(2)
        try:
            client.connect(address)
        except OSError:
            client.close()
            break
        clients.append(client)
    time.sleep(1.0)
    for client in clients:
        client.close()
    time.sleep(1.0)


def system_tool(name: str, package: str) -> str:
    """The path of the system tool `name`: a test needing it is skipped where it is missing (the README's quick
    start needs only Python and pip), except in CI (`CI` set: `.ci/run` installs Debian's `package`)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} missing: apt-get install --no-install-recommends {package} (see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def fast_config(seed: int = 11, base_rate: float = 300.0, **overrides: Any) -> VenueConfig:
    """A venue on lean hogs running 10 sim minutes per wall second, `base_rate` events per wall second."""
    market = MarketConfig(seed=seed, products=(LEAN_HOGS,), start=FAST_START, speed=600.0, base_rate=base_rate)
    return VenueConfig(market=market, **overrides)


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll `condition` until truthy; raise AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.05)


async def eventually(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll `condition` (on the event loop) until truthy; raise AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.02)


class Runnable(Protocol):
    async def run(self) -> None: ...


R = TypeVar("R", bound=Runnable)


@asynccontextmanager
async def running(pipeline: R) -> AsyncIterator[R]:
    """Run `pipeline.run()` in a task group for the block; cancel it (as a shutdown would) on exit."""
    async with anyio.create_task_group() as group:
        group.start_soon(pipeline.run)
        yield pipeline
        group.cancel_scope.cancel()


def live_client(venue: VenueThread, **kwargs: Any) -> db.Live:
    """A real `databento.Live` pointed at the venue's gateway with its API key."""
    info = venue.info
    return db.Live(key=info.api_key, gateway=info.live_host, port=info.live_port, **kwargs)


class Collector:
    """Thread-safe record sink for `Live.add_callback`."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, record: Any) -> None:
        with self._lock:
            self.records.append(record)

    def of(self, kind: type) -> list[Any]:
        with self._lock:
            return [r for r in self.records if isinstance(r, kind)]


def futures_truth(venue: VenueThread, schemas: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The futures records the venue emitted (its `record_path` file) per schema, decoded by `databento.DBNStore`
    (not by the code under test), each with its raw symbol."""
    path = venue.venue.config.record_path
    assert path is not None, "the venue keeps no ground truth: start it with record_path"
    recorded = read_truth(path)
    futures = {i.instrument_id: i.raw_symbol for i in venue.venue.model.instruments if i.kind == "F"}
    frames = {schema: truth_frame(recorded, schema, frozenset(futures)) for schema in schemas}
    return {schema: frame.assign(symbol=frame["instrument_id"].map(futures)) for schema, frame in frames.items()}


def record_keys(frame: pd.DataFrame, schema: str) -> Counter[tuple[Any, ...]]:
    """A stored or ground-truth frame as a multiset of records: index time (UTC ns), identifying fields, symbol."""
    index = pd.DatetimeIndex(frame.index)
    ns = (index.tz_localize("UTC") if index.tz is None else index).asi8
    columns = [*RECORD_KEYS[schema], "symbol"]
    return Counter(zip(ns, *(canonical(frame[c]) for c in columns), strict=True))


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


def set_immutable(paths: list[Path], on: bool) -> None:
    """chattr ±i through the ioctl: root cannot be stopped by file modes, but the immutable flag stops every write,
    also through files LMDB holds open (it needs CAP_LINUX_IMMUTABLE, which root has)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            flags = struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
            flags = flags | _FS_IMMUTABLE_FL if on else flags & ~_FS_IMMUTABLE_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("l", flags))
        finally:
            os.close(fd)


def store_paths(store_dir: Path) -> list[Path]:
    """The store directory, each library's directory and LMDB data file: what `set_immutable` makes read-only. Not
    `lock.mdb`: LMDB writes its reader table through a shared mapping, and an immutable one kills the process with
    SIGBUS at the next write, which is not the fault these tests are about."""
    return [store_dir, *sorted(store_dir.glob("*/")), *sorted(store_dir.glob("*/data.mdb"))]


def load_script(path: Path) -> ModuleType:
    """Import the script at ``path`` (a benchmark: not a package module) as a module named after its file, registered
    in ``sys.modules`` first because its dataclasses look their module up while it loads."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/PID/task/*/children)."""
    tree = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            tree += process_tree(int(child))
    return tree
