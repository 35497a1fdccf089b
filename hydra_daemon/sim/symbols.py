"""Resolve requested symbols (parent, raw_symbol, instrument_id, ALL_SYMBOLS) to listed instruments (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from hydra_daemon.sim.instruments import Instrument

ALL_SYMBOLS = "ALL_SYMBOLS"
SUPPORTED_STYPES = ("parent", "raw_symbol", "instrument_id")


def resolve(instruments: Iterable[Instrument], stype_in: str, symbols: Iterable[str]) -> list[tuple[str, Instrument]]:
    """(input symbol, instrument) pairs in listing order; unknown symbols resolve to nothing."""
    if stype_in not in SUPPORTED_STYPES:
        raise ValueError(f"unsupported stype_in {stype_in!r}; the simulated venue supports {SUPPORTED_STYPES}")
    wanted = [s.strip() for s in symbols if s.strip()]
    pairs: list[tuple[str, Instrument]] = []
    for inst in instruments:
        for symbol in wanted:
            if symbol == ALL_SYMBOLS or _matches(inst, stype_in, symbol):
                pairs.append((inst.raw_symbol if symbol == ALL_SYMBOLS else symbol, inst))
                break
    return pairs


def _matches(inst: Instrument, stype_in: str, symbol: str) -> bool:
    if stype_in == "parent":
        return inst.parent == symbol
    if stype_in == "raw_symbol":
        return inst.raw_symbol == symbol
    return symbol.isdigit() and int(symbol) == inst.instrument_id
