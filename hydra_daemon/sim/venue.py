"""The simulated Databento venue: market engine + Live gateway + HTTP (Historical, CFTC, fault control).

In-process (async):   `async with Venue(VenueConfig(...)) as venue: ...`
In-process (thread):  `with VenueThread(VenueConfig(...)) as venue: ...` (own loop thread; for sync tests)
Subprocess:           `hydra_daemon.sim.process.VenueProcess` (runs `python -m hydra_daemon.sim --json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.config import DATASET, DEFAULT_API_KEY, MarketConfig
from hydra_daemon.sim.control import FaultControl
from hydra_daemon.sim.faults import FaultState, SessionAction
from hydra_daemon.sim.feed import MarketFeed
from hydra_daemon.sim.historical import HistoricalApi
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.sim.http_types import Route
from hydra_daemon.sim.live_gateway import LiveGateway
from hydra_daemon.sim.market import NS_PER_S, MarketModel, OptionTruth
from hydra_daemon.sim.recorder import Recorder
from hydra_daemon.sim.tape import Tape

T = TypeVar("T")


@dataclass(frozen=True)
class VenueConfig:
    """Venue settings. Ports 0 = pick free ports. Windows are in SIM seconds: Live `start=` replay reaches back at most
    `replay_window_s`; Historical serves the last `history_s` (the tape costs ~250 B per record in memory).
    `record_path`: ground-truth DBN file."""

    market: MarketConfig = field(default_factory=MarketConfig)
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    host: str = "127.0.0.1"
    live_port: int = 0
    http_port: int = 0
    replay_window_s: float = 86_400.0
    history_s: float = 2 * 86_400.0
    record_path: Path | None = None


@dataclass(frozen=True)
class VenueInfo:
    """What a client needs to connect (the `--json` line of `hydra-daemon sim`)."""

    live_host: str
    live_port: int
    historical_url: str
    cftc_url: str
    dataset: str
    api_key: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "live_host": self.live_host,
            "live_port": self.live_port,
            "historical_url": self.historical_url,
            "cftc_url": self.cftc_url,
            "dataset": self.dataset,
            "api_key": self.api_key,
        }


class Venue:
    """The whole venue on the running event loop. Fault methods are plain calls (use from the venue's loop)."""

    def __init__(self, config: VenueConfig | None = None) -> None:
        self.config = config or VenueConfig()
        self.faults = FaultState()
        self.model = MarketModel(self.config.market)
        self.tape = Tape(int(self.config.history_s * NS_PER_S))
        self.clock: SimClock | None = None
        self.feed: MarketFeed | None = None
        self.gateway: LiveGateway | None = None
        self.http: HttpServer | None = None
        self.cftc: Any = None  # hydra_daemon.sim.cftc_server.CftcFiles when mounted (its own fault methods)
        self._recorder: Recorder | None = None
        self._engine: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.config
        self.clock = SimClock(start=cfg.market.start, speed=cfg.market.speed)
        if cfg.record_path is not None:
            self._recorder = Recorder(cfg.record_path, self.model.start_ns)
        self.feed = MarketFeed(self.model, self.clock, self.tape, self._recorder)
        self.feed.step()
        self.gateway = LiveGateway(
            self.feed, cfg.api_keys, self.faults, cfg.host, cfg.live_port, int(cfg.replay_window_s * NS_PER_S)
        )
        await self.gateway.start()
        self.cftc = _cftc_route(self.clock, cfg.market.seed)
        routes: list[Route] = [FaultControl(self), HistoricalApi(self.feed, cfg.api_keys, self.faults)]
        if self.cftc is not None:
            routes.append(self.cftc)
        self.http = HttpServer(cfg.host, cfg.http_port, routes, threaded=[self.cftc] if self.cftc else [])
        await self.http.start()
        self._engine = asyncio.create_task(self.feed.run())

    async def stop(self) -> None:
        if self._engine is not None:
            self._engine.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._engine
        if self.gateway is not None:
            await self.gateway.stop()
        if self.http is not None:
            await self.http.stop()
        if self._recorder is not None:
            self._recorder.close()

    async def __aenter__(self) -> Venue:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def info(self) -> VenueInfo:
        assert self.gateway is not None and self.http is not None, "venue not started"
        base = f"http://{self.config.host}:{self.http.port}"
        cftc = base if self.cftc is not None else ""
        return VenueInfo(self.config.host, self.gateway.port, base, cftc, DATASET, self.config.api_keys[0])

    def option_truth(self, instrument_id: int, ts_recv: int) -> OptionTruth | None:
        """The Black-76 inputs behind the option quote (instrument_id, ts_recv), while it is retained in the tape."""
        entries = self.tape.slice("mbp-1", ts_recv, ts_recv + 1)
        for entry in entries:
            if entry.instrument_id == instrument_id and entry.truth is not None:
                return entry.truth
        return None

    # --- faults ------------------------------------------------------------------------------------------------

    def act_on_sessions(self, action: SessionAction) -> int:
        """close / reset / error / corrupt every open Live session; returns how many were hit."""
        assert self.gateway is not None
        return self.gateway.apply(action)

    async def gateway_down(self, seconds: float) -> None:
        """Reset all Live sessions and refuse new connections for `seconds` wall seconds."""
        assert self.gateway is not None
        await self.gateway.go_down(seconds)

    def apply_fault(self, name: str, value: str = "") -> None:
        """One entry point for the HTTP control route and CLI flags: `name` as in FAULT_NAMES, `value` its argument."""
        handler = _FAULTS.get(name)
        if handler is None:
            raise ValueError(f"unknown fault {name!r}; choose one of {sorted(_FAULTS)}")
        handler(self, value)


def _flag(value: str) -> bool:
    return value.lower() not in ("0", "false", "off", "no")


def _set(attr: str, convert: Callable[[str], Any]) -> Callable[[Venue, str], None]:
    def handler(venue: Venue, value: str) -> None:
        setattr(venue.faults, attr, convert(value))

    return handler


def _http_fail(venue: Venue, value: str) -> None:
    status, _, count = value.partition(":")
    venue.faults.http_status = int(status)
    venue.faults.http_fail_count = int(count) if count else -1


def _down(venue: Venue, value: str) -> None:
    asyncio.get_running_loop().create_task(venue.gateway_down(float(value or "5")))


def _sessions(action: SessionAction) -> Callable[[Venue, str], None]:
    def handler(venue: Venue, _: str) -> None:
        venue.act_on_sessions(action)

    return handler


_FAULTS: dict[str, Callable[[Venue, str], None]] = {
    "close": _sessions(SessionAction.CLOSE),
    "reset": _sessions(SessionAction.RESET),
    "error": _sessions(SessionAction.ERROR),
    "corrupt": _sessions(SessionAction.CORRUPT),
    "stall": _set("stall", _flag),
    "pause": _set("pause", _flag),
    "slow": _set("slow_bytes_per_s", lambda s: float(s or "0")),
    "auth_failure": _set("auth_failure", _flag),
    "down": _down,
    "http_fail": _http_fail,
    "http_delay": _set("http_delay_s", lambda s: float(s or "0")),
    "clear": lambda v, _: v.faults.clear(),
}
FAULT_NAMES = tuple(sorted(_FAULTS))


def _cftc_route(clock: SimClock, seed: int) -> Any:
    """The CFTC files route (`hydra_daemon.sim.cftc_server.CftcFiles`) when that module is present, else None."""
    try:
        server = importlib.import_module("hydra_daemon.sim.cftc_server")
        files = importlib.import_module("hydra_daemon.sim.cftc_files")
    except ImportError:
        return None
    return server.CftcFiles(files.SimulatedCotFiles(seed), clock)


class VenueThread:
    """A `Venue` on its own event-loop thread, for synchronous tests and the demo.

    `with VenueThread(config) as venue:` starts it; `venue.call(fn)` runs `fn(venue.venue)` on the venue loop;
    `venue.fault(name, value)` applies a fault thread-safely.
    """

    def __init__(self, config: VenueConfig | None = None) -> None:
        self.venue = Venue(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sim-venue", daemon=True)

    def start(self) -> VenueThread:
        self._thread.start()
        self._run(self.venue.start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self.venue.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> VenueThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def call(self, fn: Callable[[Venue], T]) -> T:
        """Run `fn(venue)` on the venue loop and return its result."""

        async def run() -> T:
            return fn(self.venue)

        return self._run(run())

    def fault(self, name: str, value: str = "") -> None:
        """Apply a fault by name (see `FAULT_NAMES`), thread-safely."""
        self.call(lambda v: v.apply_fault(name, value))

    @property
    def info(self) -> VenueInfo:
        return self.call(lambda v: v.info)

    def option_truth(self, instrument_id: int, ts_recv: int) -> OptionTruth | None:
        return self.call(lambda v: v.option_truth(instrument_id, ts_recv))

    def now_ns(self) -> int:
        """Current simulation time."""
        return self.call(lambda v: v.clock.now_ns() if v.clock else 0)


__all__ = ["FAULT_NAMES", "Venue", "VenueConfig", "VenueInfo", "VenueThread"]
