"""Starting a Live child session never blocks the event loop, even while the launcher still imports the client."""

from __future__ import annotations

import socket

import anyio

from hydra_daemon.databento.launcher import Launcher
from hydra_daemon.databento.live_stream import LiveSettings, LiveStream, StreamSpec
from hydra_daemon.ingest import PipelineStats
from hydra_daemon.secrets import ApiKey


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_first_connect_waits_for_the_launcher_off_the_event_loop() -> None:
    previous = Launcher._shared
    Launcher._shared = None  # a fresh launcher: its first fork waits until it has imported the client
    settings = LiveSettings(ApiKey("db-test-key-0000"), gateway="127.0.0.1", port=_closed_port())
    stream = LiveStream(settings, StreamSpec(("ohlcv-1m",), {"HE.FUT": "HE"}), lambda _: None, PipelineStats())
    ticks = 0
    done = anyio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.01)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            child = await stream._start_child({"ohlcv-1m": 0})
            done.set()
        child.stop()
        assert ticks >= 10, f"the event loop turned {ticks} times while the child started (blocked on the fork)"
    finally:
        Launcher._shared = previous
