"""The simulated Databento venue: market engine + Live gateway + HTTP (Historical, CFTC, fault control).

In-process (async):   `async with Venue(VenueConfig(...)) as venue: ...`
In-process (thread):  `with VenueThread(VenueConfig(...)) as venue: ...` (own loop thread; for sync tests)
Subprocess:           `hydra_daemon.sim.process.VenueProcess` (runs `python -m hydra_daemon.sim --json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from databento_dbn import OHLCVMsg, RType

from hydra_daemon.sim.cftc_files import SimulatedCotFiles
from hydra_daemon.sim.cftc_server import ONE_GIB, CftcFiles
from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.config import DATASET, DEFAULT_API_KEY, PUBLISHER_ID, MarketConfig
from hydra_daemon.sim.control import FaultControl
from hydra_daemon.sim.faults import FaultState, SessionAction
from hydra_daemon.sim.feed import MarketFeed
from hydra_daemon.sim.historical import HistoricalApi
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.sim.http_types import Route
from hydra_daemon.sim.instruments import Instrument
from hydra_daemon.sim.live_gateway import LiveGateway
from hydra_daemon.sim.market import NS_PER_MINUTE, NS_PER_S, Emission, MarketModel, OptionTruth
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
        self._cftc: CftcFiles | None = None
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
        self._cftc = CftcFiles(SimulatedCotFiles(cfg.market.seed), self.clock)
        routes: list[Route] = [FaultControl(self), HistoricalApi(self.feed, cfg.api_keys, self.faults), self._cftc]
        self.http = HttpServer(cfg.host, cfg.http_port, routes, threaded=[self._cftc])
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
    def cftc(self) -> Any:  # a CftcFiles; Any keeps callers' untyped use of `.files.record(...)` values checking
        """The simulated cftc.gov route (CftcFiles): `.files` (SimulatedCotFiles, `.revise(...)`) and fault methods."""
        assert self._cftc is not None, "venue not started"
        return self._cftc

    @property
    def info(self) -> VenueInfo:
        assert self.gateway is not None and self.http is not None, "venue not started"
        base = f"http://{self.config.host}:{self.http.port}"
        return VenueInfo(self.config.host, self.gateway.port, base, base, DATASET, self.config.api_keys[0])

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

    def inject_invalid_bar(self, raw_symbol: str = "") -> int:
        """Put an OHLCV-1m bar with high < low for future `raw_symbol` (default: the first listed) on the tape, at
        the newest bar minute; returns its ts_event. Live sessions and Historical serve it; the ground-truth
        recording does not hold it (a correct consumer rejects it)."""
        assert self.feed is not None, "venue not started"
        future = self._future(raw_symbol)
        ts_event = self.tape.last_key("ohlcv-1m")
        if ts_event is None:
            ts_event = self.model.start_ns // NS_PER_MINUTE * NS_PER_MINUTE
        price = round(future.product.base_price * 1e9)
        low, high = price + 10**9, price - 10**9
        bar = OHLCVMsg(int(RType(0x21)), PUBLISHER_ID, future.instrument_id, ts_event, price, high, low, price, 3)
        # published at the model's horizon: the tape's publication order (Live replay bisects it) stays sorted
        emission = Emission("ohlcv-1m", ts_event, future.instrument_id, bytes(bar), emitted_ns=self.model.now_ns)
        self.tape.append([emission])
        self.feed.wake()
        return ts_event

    def _future(self, raw_symbol: str) -> Instrument:
        futures = [i for i in self.model.instruments if i.kind == "F"]
        if not raw_symbol:
            return futures[0]
        for future in futures:
            if future.raw_symbol == raw_symbol:
                return future
        raise ValueError(f"no listed future {raw_symbol!r}; choose one of {[f.raw_symbol for f in futures]}")

    def apply_fault(self, name: str, value: str = "") -> None:
        """One entry point for the HTTP control route and CLI flags: `name` as in FAULT_NAMES, `value` its argument.

        Raises ValueError naming the fault and its expected value when either is wrong."""
        fault = _FAULTS.get(name)
        if fault is None:
            raise ValueError(f"unknown fault {name!r}; choose one of {sorted(_FAULTS)}")
        handler, usage = fault
        try:
            handler(self, value)
        except ValueError as exc:
            raise ValueError(f"fault {name}={value!r}: {exc} (expected {name}{usage})") from None


def _flag(value: str) -> bool:
    return value.lower() not in ("0", "false", "off", "no")


def _set(attr: str, convert: Callable[[str], Any]) -> Callable[[Venue, str], None]:
    def handler(venue: Venue, value: str) -> None:
        setattr(venue.faults, attr, convert(value))

    return handler


def _http_fail(venue: Venue, value: str) -> None:
    status, _, count = value.partition(":")
    if not 400 <= int(status) <= 599:
        raise ValueError(f"STATUS must be a 4xx/5xx code, got {status}")
    venue.faults.http_status = int(status)
    venue.faults.http_fail_count = int(count) if count else -1


def _down(venue: Venue, value: str) -> None:
    seconds = float(value or "5")
    asyncio.get_running_loop().create_task(venue.gateway_down(seconds))


def _sessions(action: SessionAction) -> Callable[[Venue, str], None]:
    def handler(venue: Venue, _: str) -> None:
        venue.act_on_sessions(action)

    return handler


def _cftc(venue: Venue) -> CftcFiles:
    route: CftcFiles = venue.cftc
    return route


def _clear(venue: Venue, _: str) -> None:
    venue.faults.clear()
    _cftc(venue).clear_faults()


def _times(text: str) -> int | None:
    """A fault's optional COUNT: "" = until cleared."""
    return int(text) if text else None


def _cftc_fail(venue: Venue, value: str) -> None:
    status, _, count = value.partition(":")
    _cftc(venue).fail_status(int(status or "503"), _times(count))


def _cftc_slow(venue: Venue, value: str) -> None:
    seconds, _, count = value.partition(":")
    _cftc(venue).slow(float(seconds), _times(count))


def _cftc_zip_bomb(venue: Venue, value: str) -> None:
    size, _, count = value.partition(":")
    _cftc(venue).serve_zip_bomb(int(size) if size else ONE_GIB, _times(count))


def _cftc_wrong_member(venue: Venue, value: str) -> None:
    member, _, count = value.partition(":")
    _cftc(venue).wrong_member(member or "annual.txt", _times(count))


def _cftc_times(switch: Callable[[CftcFiles, int | None], None]) -> Callable[[Venue, str], None]:
    def handler(venue: Venue, value: str) -> None:
        switch(_cftc(venue), _times(value))

    return handler


def _cftc_revision(venue: Venue, value: str) -> None:
    """Publish now (sim time) a correction of one released week: CONTRACTS managed-money longs (Old crop) become
    non-reportable longs, so every accounting identity keeps holding."""
    code, _, rest = value.partition(":")
    as_of_text, _, contracts_text = rest.partition(":")
    as_of = date.fromisoformat(as_of_text)
    contracts = int(contracts_text or "100")
    assert venue.clock is not None, "venue not started"
    try:
        _cftc(venue).files.reclassify_managed_money(code, as_of, contracts, venue.clock.now())
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def _invalid_bar(venue: Venue, value: str) -> None:
    venue.inject_invalid_bar(value)


# name -> (handler, how its value is written after the name); `command.py`'s docstring documents each one.
_FAULTS: dict[str, tuple[Callable[[Venue, str], None], str]] = {
    "close": (_sessions(SessionAction.CLOSE), ""),
    "reset": (_sessions(SessionAction.RESET), ""),
    "error": (_sessions(SessionAction.ERROR), ""),
    "corrupt": (_sessions(SessionAction.CORRUPT), ""),
    "short_record": (_sessions(SessionAction.SHORT_RECORD), ""),
    "stall": (_set("stall", _flag), "=1|0"),
    "pause": (_set("pause", _flag), "=1|0"),
    "slow": (_set("slow_bytes_per_s", lambda s: float(s or "0")), "=BYTES_PER_S (0 = off)"),
    "auth_failure": (_set("auth_failure", _flag), "=1|0"),
    "down": (_down, "=SECONDS"),
    "invalid_bar": (_invalid_bar, "[=FUTURE_RAW_SYMBOL]"),
    "http_fail": (_http_fail, "=STATUS[:COUNT]"),
    "http_delay": (_set("http_delay_s", lambda s: float(s or "0")), "=SECONDS (0 = off)"),
    "cftc_fail": (_cftc_fail, "=STATUS[:COUNT]"),
    "cftc_slow": (_cftc_slow, "=SECONDS[:COUNT]"),
    "cftc_truncated": (_cftc_times(CftcFiles.truncate_zip), "[=COUNT]"),
    "cftc_corrupt": (_cftc_times(CftcFiles.corrupt_zip), "[=COUNT]"),
    "cftc_zip_bomb": (_cftc_zip_bomb, "[=BYTES[:COUNT]]"),
    "cftc_wrong_member": (_cftc_wrong_member, "[=MEMBER[:COUNT]]"),
    "cftc_html": (_cftc_times(CftcFiles.html_instead), "[=COUNT]"),
    "cftc_revision": (_cftc_revision, "=CODE:YYYY-MM-DD[:CONTRACTS]"),
    "clear": (_clear, ""),
}
FAULT_NAMES = tuple(sorted(_FAULTS))


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
