"""The listed instruments of the simulated venue (futures curve + options chains) and their GLBX definitions (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from databento_dbn import (
    FIXED_PRICE_SCALE,
    InstrumentClass,
    InstrumentDefMsg,
    MatchAlgorithm,
    SecurityUpdateAction,
    UserDefinedInstrument,
)

from hydra_daemon.sim.config import PUBLISHER_ID, MarketConfig, ProductSpec

MONTH_CODES = "FGHJKMNQUVXZ"
_EXPIRY_BDAY = 10  # futures expire on the 10th business day of the contract month (livestock rule, used for all)
_EXPIRY_HOUR_UTC = 17
_MIN_DAYS_TO_EXPIRY = 20


def fixed_price(value: float) -> int:
    """Exchange price -> DBN fixed-point int (1e-9 units)."""
    return round(value * FIXED_PRICE_SCALE)


@dataclass(frozen=True)
class Instrument:
    """One listed future or option. `kind` is "F", "C" or "P"."""

    instrument_id: int
    raw_symbol: str
    product: ProductSpec
    kind: str
    expiration_ns: int
    maturity: date  # first day of the contract month
    strike: float | None = None
    underlying: Instrument | None = None

    @property
    def is_option(self) -> bool:
        return self.kind != "F"

    @property
    def parent(self) -> str:
        return self.product.option_parent if self.is_option else self.product.future_parent


def _business_day(month: date, n: int) -> date:
    day = month
    count = 0
    while True:
        if day.weekday() < 5:
            count += 1
            if count == n:
                return day
        day += timedelta(days=1)


def _minus_bdays(day: date, n: int) -> date:
    while n > 0:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def _ns(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()) * 1_000_000_000


def _listed_months(product: ProductSpec, start: datetime) -> list[date]:
    months: list[date] = []
    year, month = start.year, start.month
    while len(months) < product.listed_futures:
        if MONTH_CODES[month - 1] in product.months:
            first = date(year, month, 1)
            expiry = _business_day(first, _EXPIRY_BDAY)
            if expiry - start.date() >= timedelta(days=_MIN_DAYS_TO_EXPIRY):
                months.append(first)
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return months


def option_symbol(product: ProductSpec, future_symbol_suffix: str, kind: str, strike: float) -> str:
    """CME-style option raw symbol, e.g. "HEJ7 C0900" (strike 90 with a 0.1 symbol unit)."""
    return f"{product.option_root}{future_symbol_suffix} {kind}{round(strike / product.strike_symbol_unit):04d}"


def initial_forward(product: ProductSpec, curve_index: int) -> float:
    """Starting price of the `curve_index`-th listed future (a mild contango)."""
    return product.base_price * (1.0 + 0.01 * curve_index)


def build_instruments(config: MarketConfig) -> list[Instrument]:
    """All instruments listed at `config.start`, ids stable for `config.seed` (futures first, then their options)."""
    rng = random.Random(f"{config.seed}-instrument-ids")
    next_id = 10_000 + rng.randrange(0, 400_000)
    instruments: list[Instrument] = []
    for product in config.products:
        for index, month in enumerate(_listed_months(product, config.start)):
            suffix = f"{MONTH_CODES[month.month - 1]}{month.year % 10}"
            expiry_day = _business_day(month, _EXPIRY_BDAY)
            future = Instrument(
                instrument_id=next_id,
                raw_symbol=f"{product.future_root}{suffix}",
                product=product,
                kind="F",
                expiration_ns=_ns(expiry_day, _EXPIRY_HOUR_UTC),
                maturity=month,
            )
            next_id += 1
            instruments.append(future)
            if index >= product.optioned_futures:
                continue
            option_expiry = _ns(_minus_bdays(expiry_day, product.option_expiry_lead_bdays), _EXPIRY_HOUR_UTC)
            atm = round(initial_forward(product, index) / product.strike_interval)
            for step in range(-product.strikes_each_side, product.strikes_each_side + 1):
                strike = round((atm + step) * product.strike_interval, 6)
                for kind in ("C", "P"):
                    instruments.append(
                        Instrument(
                            instrument_id=next_id,
                            raw_symbol=option_symbol(product, suffix, kind, strike),
                            product=product,
                            kind=kind,
                            expiration_ns=option_expiry,
                            maturity=month,
                            strike=strike,
                            underlying=future,
                        )
                    )
                    next_id += 1
    return instruments


def definition_record(instrument: Instrument, ts_ns: int, activation_ns: int) -> InstrumentDefMsg:
    """The GLBX-style InstrumentDefMsg for `instrument`, as published at `ts_ns`."""
    product = instrument.product
    underlying = instrument.underlying
    instrument_class = InstrumentClass(instrument.kind)  # "F", "C", "P" are the DBN codes
    return InstrumentDefMsg(
        publisher_id=PUBLISHER_ID,
        instrument_id=instrument.instrument_id,
        ts_event=ts_ns,
        ts_recv=ts_ns,
        min_price_increment=fixed_price(product.tick),
        display_factor=fixed_price(product.display_factor),
        raw_symbol=instrument.raw_symbol,
        asset=product.option_root if instrument.is_option else product.future_root,
        security_type="OOF" if instrument.is_option else "FUT",
        instrument_class=instrument_class,
        security_update_action=SecurityUpdateAction("A"),
        expiration=instrument.expiration_ns,
        activation=activation_ns,
        unit_of_measure_qty=fixed_price(product.unit_of_measure_qty),
        min_price_increment_amount=fixed_price(product.tick * product.unit_of_measure_qty / 100.0),
        strike_price=fixed_price(instrument.strike) if instrument.strike is not None else 2**63 - 1,
        underlying_id=underlying.instrument_id if underlying else 0,
        market_depth=10,
        min_trade_vol=1,
        max_trade_vol=2000,
        maturity_year=instrument.maturity.year,
        maturity_month=instrument.maturity.month,
        currency="USD",
        group=product.option_root if instrument.is_option else product.future_root,
        exchange="XCME",
        cfi=("OCAFPS" if instrument.kind == "C" else "OPAFPS") if instrument.is_option else "FCAPSX",
        unit_of_measure=product.unit_of_measure,
        underlying=underlying.raw_symbol if underlying else "",
        strike_price_currency="USD" if instrument.is_option else "",
        match_algorithm=MatchAlgorithm("F"),
        user_defined_instrument=UserDefinedInstrument("N"),
    )
