"""Starting and stopping a Live session never blocks the event loop: not while the launcher still imports the client,
not while the decoder thread finishes what it was doing when the session is stopped."""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from hydra_daemon.databento import live_stream
from hydra_daemon.databento.decode import DecodedBatch
from hydra_daemon.databento.launcher import Launcher
from hydra_daemon.databento.live_stream import LiveSettings, LiveStream, StreamSpec
from hydra_daemon.databento.process import LiveProcess
from hydra_daemon.databento.stream_decoder import StreamDecoder
from hydra_daemon.ingest import PipelineStats
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.venue import VenueThread
from tests.databento.test_live_process import _alive
from tests.helpers import WAIT_S, wait_until


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_first_connect_waits_for_the_launcher_off_the_event_loop() -> None:
    previous = Launcher._shared
    Launcher._shared = None  # a fresh launcher: its first fork waits until it has imported the client
    settings = LiveSettings(ApiKey("db-test-key-0000"), gateway="127.0.0.1", port=_closed_port())
    stream = LiveStream(settings, StreamSpec(("ohlcv-1m",), {"HE.FUT": "HE"}), lambda _: {}, PipelineStats())
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


async def test_closing_a_session_leaves_the_event_loop_free_while_the_decoder_thread_finishes(
    venue: VenueThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop (here a shutdown's cancellation) lands while the decoder thread is busy in `on_decoded` (a slow disk
    under the quarantine, a long decode): the loop keeps turning while the close waits for that thread, and the close
    ends only once the thread has exited; then the child is stopped."""
    info = venue.info
    settings = LiveSettings(
        ApiKey(info.api_key), dataset=info.dataset, gateway=info.live_host, port=info.live_port, heartbeat_interval_s=1
    )
    stream = LiveStream(settings, StreamSpec(("ohlcv-1m",), {"HE.FUT": "HE"}), lambda _: {}, PipelineStats())
    armed, held, release = threading.Event(), threading.Event(), threading.Event()
    decoders: list[StreamDecoder] = []
    children: list[LiveProcess] = []
    decoded, start_child = stream._decoded, stream._start_child

    class Recorded(StreamDecoder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            decoders.append(self)

    def slow_decoded(batch: DecodedBatch) -> None:  # on the decoder thread: held once armed
        if armed.is_set() and not held.is_set():
            held.set()
            release.wait(WAIT_S)
        decoded(batch)

    async def recorded_child(replay: Mapping[str, int]) -> LiveProcess:
        children.append(await start_child(replay))
        return children[-1]

    monkeypatch.setattr(live_stream, "StreamDecoder", Recorded)
    stream._decoded = slow_decoded  # type: ignore[method-assign]
    stream._start_child = recorded_child  # type: ignore[method-assign]
    at_close: dict[str, bool] = {}

    async def heartbeat() -> None:
        ticks = 0
        while True:
            await anyio.sleep(0.01)
            ticks += decoders[0]._stopped.is_set()
            if ticks == 5:
                release.set()  # the decoder thread finishes only if the loop turns while the close waits for it

    async def consume(scope: anyio.CancelScope) -> None:
        with scope:
            async with aclosing(stream.batches()) as batches:
                async for item in batches:
                    if isinstance(item, DecodedBatch):
                        armed.set()
        at_close["loop_turned"] = release.is_set()
        at_close["thread_alive"] = decoders[0]._thread.is_alive()

    try:
        async with anyio.create_task_group() as group:
            consumer = anyio.CancelScope()
            group.start_soon(consume, consumer)
            assert await anyio.to_thread.run_sync(held.wait, WAIT_S), "the decoder thread never got busy"
            group.start_soon(heartbeat)
            consumer.cancel()  # as a SIGTERM or a pipeline restart would
            with anyio.fail_after(WAIT_S):
                while not at_close:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    finally:
        release.set()
    assert at_close == {"loop_turned": True, "thread_alive": False}, at_close
    wait_until(lambda: not _alive(children[0].pid), "the stopped child to exit")
