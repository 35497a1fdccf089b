"""Library and symbol names of the hydra ArcticDB store — a stable, documented naming scheme.

Researchers and the Parquet lake address data by these names, so they never change once released.

Libraries (one per kind of data):

==========  ==============================================================
``futures``  futures market data from Databento, one symbol per (market, schema)
``options``  options market data and option chains
``cot``      CFTC Commitments-of-Traders reports (bitemporal tables)
``features`` derived features (bitemporal tables)
==========  ==============================================================

Symbols are ``<MARKET>.<suffix>``: ``MARKET`` is the root symbol of the CME product (``HE``, ``LE``, ``ZC``,
``6E``: letters, digits and ``_``, never a dot, at most 32), ``suffix`` is lower case (schemas and feature names are
bounded too; anything else is a `SymbolNameError`):

- ``data_symbol("HE", "ohlcv-1d")`` → ``HE.ohlcv-1d`` (any Databento schema name: ``ohlcv-1m``, ``mbp-1``,
  ``trades``, ``definition``, ``statistics``); stored in ``futures`` or ``options``;
- ``chain_symbol("HE")`` → ``HE.chain`` (the assembled option chain, in ``options``);
- ``cot_symbol("HE")`` → ``HE.cot`` (in ``cot``);
- ``feature_symbol("HE", "atm_iv")`` → ``HE.atm_iv`` (in ``features``; names are ``snake_case``).

Every symbol index is a UTC ``DatetimeIndex``: the record's event time for market data, the ingestion time
(``ingested_at``) for bitemporal tables.
"""

from __future__ import annotations

import re

from hydra_daemon.errors import UserError

FUTURES = "futures"
OPTIONS = "options"
COT = "cot"
FEATURES = "features"
LIBRARIES: tuple[str, ...] = (FUTURES, OPTIONS, COT, FEATURES)

_MARKET = re.compile(r"[A-Za-z0-9_]{1,32}")
_SCHEMA = re.compile(r"[a-z0-9]{1,16}(-[a-z0-9]{1,16}){0,3}")
_FEATURE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SHOWN_CHARS = 40


class SymbolNameError(UserError, ValueError):
    """A market, schema or feature name that cannot be part of a symbol (wrong characters, too long, not text)."""


def _checked(pattern: re.Pattern[str], value: str, what: str, example: str) -> str:
    """`value` if `pattern` matches it whole; names are bounded (ArcticDB fails on very long symbols)."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= _SHOWN_CHARS else repr(value)[: _SHOWN_CHARS - 3] + "..."
        raise SymbolNameError(f"invalid {what} {shown}: expected something like {example!r} ({pattern.pattern})")
    return value


def _market(market: str) -> str:
    return _checked(_MARKET, market, "market root", "HE")


def data_symbol(market: str, schema: str) -> str:
    """Market-data symbol, e.g. ``data_symbol("HE", "ohlcv-1d") == "HE.ohlcv-1d"``."""
    return f"{_market(market)}.{_checked(_SCHEMA, schema, 'Databento schema', 'ohlcv-1d')}"


def chain_symbol(market: str) -> str:
    """Option-chain symbol, e.g. ``"HE.chain"``."""
    return f"{_market(market)}.chain"


def cot_symbol(market: str) -> str:
    """COT report symbol, e.g. ``"HE.cot"``."""
    return f"{_market(market)}.cot"


def feature_symbol(market: str, name: str) -> str:
    """Feature symbol, e.g. ``feature_symbol("HE", "atm_iv") == "HE.atm_iv"``."""
    return f"{_market(market)}.{_checked(_FEATURE, name, 'feature name', 'atm_iv')}"
