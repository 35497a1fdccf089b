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

**Partitions.** The event-rate schemas (`PARTITIONED_SCHEMAS`: ``mbp-1`` quotes and ``trades``, whose rows follow
market activity: ~12 million quotes a day per market) are stored as one symbol per UTC day of the index,
``<MARKET>.<schema>.<YYYY-MM-DD>`` — ``partition_symbol("HE.mbp-1", date(2026, 12, 1))`` → ``HE.mbp-1.2026-12-01``.
The logical symbol ``HE.mbp-1`` (the *stream*) is what `Reader.records`, the lake (one dataset per stream,
hive-partitioned by the same days) and the writer address; its rows are the concatenation of its partitions in day
order. Why: every ArcticDB append writes an index listing every data segment of its symbol, so one symbol per market
made a quote append, and the daily compaction, cost more with every day of history; a day partition holds at most a
day of segments (~116 of 100k rows), is compacted once after its day, and is never written again (the writer only
appends at or after its watermark, which lives in the newest partition). A store written before partitioning holds
the whole ``HE.mbp-1``: it stays readable as the stream's oldest part, and capture continues into day partitions.
Bars, ``definition``, ``statistics``, chains, COT and features stay one symbol each: they grow slowly, and a backtest
reads their whole history at once.

**The COT panel.** ``cot-panel`` (`COT_PANEL`, in ``cot``; no dot, so it is never a ``<MARKET>.<suffix>`` name and
never a market) is derived, not captured: every market's ``<MARKET>.cot`` rows in one table with a market number
column, its version metadata naming each market symbol and the version it was built from (`store.cot_panel`). It
exists because ArcticDB costs about 1 ms per symbol read, so 50 markets cannot be read in one call's budget; a
reader uses a market's rows from it only while that market's symbol is still at the recorded version. Listings of
markets and the Parquet lake leave it out.

Every symbol index is a UTC ``DatetimeIndex``: the record's event time for market data, the ingestion time
(``ingested_at``) for bitemporal tables.
"""

from __future__ import annotations

import functools
import re
from datetime import date

from hydra_daemon.errors import UserError

FUTURES = "futures"
OPTIONS = "options"
COT = "cot"
FEATURES = "features"
LIBRARIES: tuple[str, ...] = (FUTURES, OPTIONS, COT, FEATURES)
COT_PANEL = "cot-panel"
"""Every market's COT revisions in one symbol of ``cot`` (see the module docstring)."""

_MARKET = re.compile(r"[A-Za-z0-9_]{1,32}")
_SCHEMA = re.compile(r"[a-z0-9]{1,16}(-[a-z0-9]{1,16}){0,3}")
_FEATURE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SHOWN_CHARS = 40
PARTITIONED_SCHEMAS = frozenset({"mbp-1", "trades"})
"""Schemas stored one symbol per UTC day (see the module docstring)."""
_PARTITION = re.compile(r"(?P<stream>[A-Za-z0-9_]{1,32}\.[a-z0-9-]{1,80})\.(?P<day>\d{4}-\d{2}-\d{2})")


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


def market_of_cot(symbol: str) -> str | None:
    """The market of a ``<MARKET>.cot`` symbol; None for any other symbol (the panel among them)."""
    market, dot, suffix = symbol.partition(".")
    return market if dot and suffix == "cot" and _MARKET.fullmatch(market) else None


def feature_symbol(market: str, name: str) -> str:
    """Feature symbol, e.g. ``feature_symbol("HE", "atm_iv") == "HE.atm_iv"``."""
    return f"{_market(market)}.{_checked(_FEATURE, name, 'feature name', 'atm_iv')}"


def is_partitioned(stream: str) -> bool:
    """Whether the rows of symbol ``stream`` (``<MARKET>.<schema>``) are stored in day partitions."""
    market, _, schema = stream.partition(".")
    return bool(market) and schema in PARTITIONED_SCHEMAS


def partition_symbol(stream: str, day: date) -> str:
    """The symbol holding ``stream``'s rows of UTC ``day``, e.g. ``HE.mbp-1.2026-12-01``."""
    if not is_partitioned(stream):
        raise ValueError(f"{stream!r} is not stored in day partitions (only {sorted(PARTITIONED_SCHEMAS)} are)")
    return f"{stream}.{day.isoformat()}"


@functools.lru_cache(maxsize=1 << 16)  # readers collapse every listed symbol on each call: ~2 µs each, uncached
def split_partition(symbol: str) -> tuple[str, date] | None:
    """(stream, day) of a partition symbol; None for any other symbol."""
    match = _PARTITION.fullmatch(symbol) if symbol.count(".") == 2 else None  # cheap for the other symbols
    if match is None or not is_partitioned(match["stream"]):
        return None
    try:
        return match["stream"], date.fromisoformat(match["day"])
    except ValueError:
        return None


def stream_of(symbol: str) -> str:
    """The logical symbol a stored symbol belongs to: the stream of a partition, else the symbol itself."""
    split = split_partition(symbol)
    return symbol if split is None else split[0]
