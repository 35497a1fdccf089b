"""Configuration of the simulated Databento venue: which products it lists and how busy its market is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

DATASET = "GLBX.MDP3"
PUBLISHER_ID = 1  # GLBX.MDP3.GLBX
DEFAULT_API_KEY = "db-simVenueTestKey0000000000A1b2C"


@dataclass(frozen=True)
class ProductSpec:
    """A futures root and the options root listed on it (they may differ, e.g. CL futures with LO options)."""

    future_root: str
    option_root: str
    months: str  # CME month codes the exchange lists, e.g. "GJKMNQVZ" for lean hogs
    base_price: float  # initial front-month price in exchange units
    tick: float  # futures and options minimum price increment
    strike_interval: float
    strike_symbol_unit: float  # strike / unit = the 4-digit number in "HEJ7 C0900"
    atm_vol: float
    unit_of_measure: str
    unit_of_measure_qty: float
    display_factor: float
    listed_futures: int = 4
    optioned_futures: int = 3
    strikes_each_side: int = 6
    option_expiry_lead_bdays: int = 0  # options expire this many business days before their future

    @property
    def future_parent(self) -> str:
        return f"{self.future_root}.FUT"

    @property
    def option_parent(self) -> str:
        return f"{self.option_root}.OPT"


LEAN_HOGS = ProductSpec(
    future_root="HE",
    option_root="HE",
    months="GJKMNQVZ",
    base_price=90.0,
    tick=0.025,
    strike_interval=1.0,
    strike_symbol_unit=0.1,
    atm_vol=0.30,
    unit_of_measure="LBS",
    unit_of_measure_qty=40000.0,
    display_factor=0.01,
)

LIVE_CATTLE = ProductSpec(
    future_root="LE",
    option_root="LE",
    months="GJMQVZ",
    base_price=185.0,
    tick=0.025,
    strike_interval=1.0,
    strike_symbol_unit=0.1,
    atm_vol=0.18,
    unit_of_measure="LBS",
    unit_of_measure_qty=40000.0,
    display_factor=0.01,
)

CRUDE_OIL = ProductSpec(
    future_root="CL",
    option_root="LO",
    months="FGHJKMNQUVXZ",
    base_price=70.0,
    tick=0.01,
    strike_interval=0.5,
    strike_symbol_unit=0.01,
    atm_vol=0.35,
    unit_of_measure="BBL",
    unit_of_measure_qty=1000.0,
    display_factor=1.0,
    option_expiry_lead_bdays=1,
)

PRODUCTS = {p.future_root: p for p in (LEAN_HOGS, LIVE_CATTLE, CRUDE_OIL)}


def _default_start() -> datetime:
    return datetime(2026, 11, 2, 14, 30, tzinfo=UTC)  # a Monday, CME livestock open


@dataclass(frozen=True)
class MarketConfig:
    """Everything the pure market model needs; same config => same record stream, byte for byte.

    Rates are in WALL seconds (`base_rate` events per wall second at `speed`), so an accelerated clock shows more
    simulated days but not more messages. A burst multiplies the rate by `burst_multiplier` for `burst_duration_s`
    wall seconds out of every `burst_period_s` (0 = no bursts).
    """

    seed: int = 7
    products: tuple[ProductSpec, ...] = (LEAN_HOGS,)
    start: datetime = field(default_factory=_default_start)
    speed: float = 1.0
    base_rate: float = 50.0
    trade_probability: float = 0.15
    future_event_share: float = 0.3
    burst_multiplier: float = 1.0
    burst_duration_s: float = 0.0
    burst_period_s: float = 0.0
    rate: float = 0.045  # risk-free rate used by Black-76 discounting

    def __post_init__(self) -> None:
        offset = self.start.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError(f"MarketConfig.start must be UTC-aware, got {self.start!r}")
        if self.speed <= 0 or self.base_rate <= 0:
            raise ValueError("MarketConfig speed and base_rate must be > 0")
        if self.burst_multiplier < 1:
            raise ValueError(f"burst_multiplier must be >= 1, got {self.burst_multiplier}")
