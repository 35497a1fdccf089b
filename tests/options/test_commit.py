"""OptionsSink on a real LMDB store, fed records decoded like the Live stream decodes them: what is stored,
what is logged, and the warm start after a restart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import databento_dbn as dbn
import pandas as pd
import pytest
import structlog

from hydra_daemon.config import Config, parse_config
from hydra_daemon.databento.decode import MarketFrame, SymbolMap, decode_records
from hydra_daemon.ingest import PipelineStats
from hydra_daemon.options import pipeline as pipeline_module
from hydra_daemon.options.book import stream_parents
from hydra_daemon.options.pipeline import OptionsSink
from hydra_daemon.sim.config import MarketConfig as SimMarketConfig
from hydra_daemon.sim.instruments import Instrument, build_instruments, definition_record, fixed_price
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.partitions import read_stream, stream_symbols
from hydra_daemon.store.symbols import OPTIONS, chain_symbol, data_symbol, partition_symbol
from hydra_daemon.store.uri import default_lmdb_uri
from hydra_daemon.store.writer import FlushError, StreamWriter

S = 1_000_000_000
T0 = pd.Timestamp("2026-11-26T15:00:00Z").value
INSTRUMENTS = build_instruments(SimMarketConfig())
FUTURE = next(i for i in INSTRUMENTS if i.kind == "F")
CALL, PUT = (
    next(i for i in INSTRUMENTS if i.underlying is FUTURE and i.kind == kind and i.strike == 90) for kind in "CP"
)


def make_config(state_dir: Path, persist_quotes: bool = True) -> Config:
    return parse_config(
        {
            "state_dir": str(state_dir),
            "storage": {"arctic_uri": default_lmdb_uri(state_dir)},
            "databento": {"persist_quotes": persist_quotes},
            "options": {"snapshot_interval_s": 60},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )


def sink(config: Config, store: Store, stats: PipelineStats | None = None) -> OptionsSink:
    return OptionsSink(config, store, StreamWriter(store, flush_interval_s=0.0), stats or PipelineStats())


def mapping(instrument: Instrument) -> dbn.SymbolMappingMsg:
    parent = instrument.parent
    return dbn.SymbolMappingMsg(
        1, instrument.instrument_id, T0, dbn.SType.PARENT, parent, dbn.SType.RAW_SYMBOL, instrument.raw_symbol, T0, T0
    )


def quote(instrument: Instrument, ts: int, bid: float, ask: float) -> dbn.MBP1Msg:
    level = dbn.BidAskPair(fixed_price(bid), fixed_price(ask), 3, 4)
    price = fixed_price(bid)
    return dbn.MBP1Msg(
        1, instrument.instrument_id, ts - 10, price, 3, dbn.Action.MODIFY, dbn.Side.BID, 0, ts, levels=level
    )


def open_interest(instrument: Instrument, ts: int, quantity: int) -> dbn.StatMsg:
    return dbn.StatMsg(
        publisher_id=1,
        instrument_id=instrument.instrument_id,
        ts_event=ts,
        ts_recv=ts,
        ts_ref=ts,
        price=dbn.UNDEF_PRICE,
        quantity=quantity,
        stat_type=dbn.StatType.OPEN_INTEREST,
        sequence=1,
        update_action=dbn.StatUpdateAction.NEW,
    )


def frames(records: list[Any]) -> tuple[MarketFrame, ...]:
    """Decoded as the Live stream decodes: markets from the SymbolMappingMsgs of the parent subscriptions."""
    symbols = SymbolMap(stream_parents(make_config(Path("/tmp")).markets))
    mappings = [mapping(i) for i in (FUTURE, CALL, PUT)]
    return decode_records([*mappings, *records], symbols).frames


def opening(ts: int) -> list[Any]:
    return [
        *(definition_record(i, ts, ts) for i in (FUTURE, CALL, PUT)),
        quote(FUTURE, ts + 1, 89.975, 90.025),
        quote(CALL, ts + 2, 4.0, 4.05),
        open_interest(CALL, ts + 3, 150),
    ]


def read(store: Store, symbol: str) -> pd.DataFrame:
    return read_stream(store.library(OPTIONS), symbol).data


def test_option_records_are_stored_and_futures_only_feed_the_chain(store: Store, tmp_path: Path) -> None:
    first = sink(make_config(tmp_path), store)
    stored = first.commit(frames([*opening(T0), quote(FUTURE, T0 + 61 * S, 90.0, 90.05)]))
    first.end_session()
    assert stored == 4  # 2 option definitions, 1 option quote, 1 statistic; no futures record
    definitions = read(store, data_symbol("HE", "definition"))
    assert sorted(definitions["raw_symbol"]) == sorted([CALL.raw_symbol, PUT.raw_symbol])
    assert list(read(store, data_symbol("HE", "mbp-1"))["instrument_id"]) == [CALL.instrument_id]
    quote_day = pd.Timestamp(T0 + 61 * S, tz="UTC").date()
    assert set(store.library(OPTIONS).list_symbols()) == {
        "HE.definition",
        partition_symbol("HE.mbp-1", quote_day),  # quotes: one symbol per UTC day
        "HE.statistics",
        "HE.chain",
    }
    chain = read(store, chain_symbol("HE"))
    assert sorted(set(pd.DatetimeIndex(chain.index).asi8)) == [T0 + 60 * S, T0 + 61 * S]
    call = chain[chain["instrument_id"] == CALL.instrument_id].iloc[0]
    assert (call["bid"], call["ask"], call["open_interest"], call["underlying_price"]) == (4.0, 4.05, 150, 90.0)
    assert call["iv_status"] == "ok"


def test_quotes_not_persisted_when_configured_off(store: Store, tmp_path: Path) -> None:
    first = sink(make_config(tmp_path, persist_quotes=False), store)
    first.commit(frames([*opening(T0), quote(FUTURE, T0 + 61 * S, 90.0, 90.05)]))
    first.end_session()
    assert not stream_symbols(store.library(OPTIONS), data_symbol("HE", "mbp-1"))
    assert first.resume_starts("mbp-1") == {"HE": T0 + 61 * S}  # replay quotes from the newest stored snapshot
    assert first.resume_starts("definition") == {"HE": T0}


def test_with_quotes_not_persisted_the_chain_rows_stored_are_counted(store: Store, tmp_path: Path) -> None:
    """What the options pipeline reports as stored (health's `last_delivery`) includes the chain rows: with quotes
    not persisted, a batch of quotes that stores a snapshot is a delivery, not silence."""
    first = sink(make_config(tmp_path, persist_quotes=False), store)
    first.commit(frames(opening(T0)))
    assert first.commit(frames([quote(CALL, T0 + 61 * S, 4.1, 4.15)])) == 0
    assert first.chain_rows == 2  # the snapshot at T0 + 60 s: call and put
    first.commit(frames([quote(CALL, T0 + 62 * S, 4.2, 4.25)]))
    assert first.chain_rows == 2  # no snapshot due


def test_problems_are_logged_once_per_instrument_rule_and_day(store: Store, tmp_path: Path) -> None:
    """Once a day, not once a process: the set of what was logged kept every instrument and rule for months."""
    stats = PipelineStats()
    first = sink(make_config(tmp_path), store, stats)
    crossed = [quote(PUT, T0 + 5, 3.0, 2.5)]
    with structlog.testing.capture_logs() as logs:
        first.commit(frames([*opening(T0), *crossed, quote(FUTURE, T0 + 61 * S, 90.0, 90.05)]))
        first.commit(frames([quote(FUTURE, T0 + 121 * S, 90.0, 90.05)]))
    problems = [e for e in logs if e["event"] == "option_chain_problem"]
    assert len(problems) == 1 and stats.rejects == 1
    assert problems[0]["what"] == "quote flagged crossed: ask 2.5 < bid 3.0 (kept, no IV)"
    assert problems[0]["where"] == f"{PUT.raw_symbol} at {pd.Timestamp(T0 + 60 * S, tz='UTC').isoformat()}"
    snapshots = [e for e in logs if e["event"] == "option_chain_snapshot"]
    assert [e["problems"] for e in snapshots] == [1, 1]
    assert [e["awaiting_definitions"] for e in snapshots] == [0, 0]
    next_day = T0 + 86_400 * S
    with structlog.testing.capture_logs() as logs:
        first.commit(frames([quote(FUTURE, next_day + 1, 90.0, 90.05), quote(FUTURE, next_day + 61 * S, 90.0, 90.05)]))
    assert [e["where"] for e in logs if e["event"] == "option_chain_problem"] == [
        f"{PUT.raw_symbol} at {pd.Timestamp(next_day + 60 * S, tz='UTC').isoformat()}"
    ]
    assert len(first._logged) == 1


def test_restart_restores_the_chain_from_the_store(store: Store, tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = sink(config, store)
    first.commit(frames([*opening(T0), quote(FUTURE, T0 + 61 * S, 90.0, 90.05)]))
    first.end_session()
    second = sink(config, store)
    assert second.restore(store) == 4
    reconnect = [definition_record(FUTURE, T0 + 130 * S, T0)]  # the gateway's definitions snapshot on connect
    live = [quote(FUTURE, T0 + 130 * S, 91.0, 91.05), quote(FUTURE, T0 + 185 * S, 91.0, 91.05)]
    second.commit(frames([*reconnect, *live]))
    second.end_session()
    chain = read(store, chain_symbol("HE"))
    times = pd.DatetimeIndex(chain.index).asi8
    assert sorted(set(times)) == [T0 + 60 * S, T0 + 61 * S, T0 + 180 * S, T0 + 185 * S]
    after = chain[(times == T0 + 180 * S) & (chain["instrument_id"] == CALL.instrument_id)].iloc[0]
    assert (after["bid"], after["ask"], after["open_interest"]) == (4.0, 4.05, 150)
    assert after["underlying_price"] == 91.025
    assert after["iv_status"] == "no_underlying" and math.isnan(after["implied_vol"])  # futures quotes are not stored


def test_a_session_ended_during_a_gap_fill_takes_no_snapshot_of_the_half_filled_chain(
    store: Store, tmp_path: Path
) -> None:
    """After a three-day outage Historical fills schema by schema, definitions first; stopped before the quotes'
    part, the session's close snapshotted at the newest fill record, with quotes three days stale, and that
    snapshot's mark ruled out the gap's own snapshots for good (found by a review helper)."""
    config = make_config(tmp_path)
    first = sink(config, store)
    first.commit(frames([*opening(T0), quote(CALL, T0 + 61 * S, 4.1, 4.15)]))
    first.end_session()  # snapshots at T0+60 and at the session's end, T0+61
    second = sink(config, store)
    second.restore(store)
    later = T0 + 3 * 86_400 * S
    second.commit(frames([definition_record(i, later, later) for i in (FUTURE, CALL)]), live=False)
    second.end_session()  # stopped before the mbp-1 part of the fill
    times = sorted(set(pd.DatetimeIndex(read(store, chain_symbol("HE")).index).asi8))
    assert times == [T0 + 60 * S, T0 + 61 * S]


def test_restore_reads_stored_quotes_an_hour_at_a_time_and_keeps_the_newest(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of stored quotes is ~10M rows a market: the warm start must not read them all at once."""
    config = make_config(tmp_path)
    first = sink(config, store)
    hours = [quote(CALL, T0 + h * 3600 * S + 10, 4.0 + h, 4.05 + h) for h in range(1, 5)]
    first.commit(frames([*opening(T0), *hours]))
    first.end_session()
    reads: list[int] = []
    real_read = pipeline_module.read_stream

    def counting_read(*args: Any, **kwargs: Any) -> Any:
        result = real_read(*args, **kwargs)
        if args[1] == data_symbol("HE", "mbp-1"):
            reads.append(len(result.data))
        return result

    monkeypatch.setattr(pipeline_module, "read_stream", counting_read)
    second = sink(config, store)
    assert second.restore(store) == 4 + len(hours)
    assert sum(reads) == 1 + len(hours) and max(reads) == 1  # one quote per hour stored: one per read
    assert second.book.chains["HE"].quotes[CALL.instrument_id].bid == 8.0


def test_quotes_and_statistics_before_their_definitions_reach_the_chain(store: Store, tmp_path: Path) -> None:
    first = sink(make_config(tmp_path), store)
    early = [quote(FUTURE, T0 + 1, 89.975, 90.025), quote(CALL, T0 + 2, 4.0, 4.05), open_interest(CALL, T0 + 3, 150)]
    first.commit(frames(early))
    assert first.book.chains["HE"].undefined_count == 2
    first.commit(frames([definition_record(i, T0 + 4, T0) for i in (FUTURE, CALL, PUT)]))
    first.commit(frames([quote(FUTURE, T0 + 61 * S, 90.0, 90.05)]))
    chain = read(store, chain_symbol("HE"))
    call = chain[chain["instrument_id"] == CALL.instrument_id].iloc[0]
    assert (call["bid"], call["ask"], call["open_interest"], call["iv_status"]) == (4.0, 4.05, 150, "ok")
    assert first.book.chains["HE"].undefined_count == 0


def test_evicting_quotes_that_wait_too_long_for_definitions_is_logged_once(store: Store, tmp_path: Path) -> None:
    first = sink(make_config(tmp_path), store)
    first.book.chains["HE"].max_undefined = 1
    with structlog.testing.capture_logs() as logs:
        first.commit(frames([quote(CALL, T0 + 1, 4.0, 4.05), quote(PUT, T0 + 2, 1.0, 1.05)]))
        first.commit(frames([quote(PUT, T0 + 61 * S, 1.0, 1.05), quote(PUT, T0 + 121 * S, 1.0, 1.05)]))
    assert [e["awaiting_definitions"] for e in logs if e["event"] == "option_chain_snapshot"] == [1, 1]
    evictions = [e for e in logs if e["event"] == "option_chain_evicted_undefined"]
    assert [e["instruments"] for e in evictions] == [1]
    assert first.book.chains["HE"].evicted_undefined == 1


def test_a_schema_with_nothing_stored_resumes_from_capture_start(store: Store, tmp_path: Path) -> None:
    first = sink(make_config(tmp_path), store)
    assert first.resume_starts("statistics") == {}  # fresh store: the whole replay window
    first.commit(frames([*(definition_record(i, T0, T0) for i in (FUTURE, CALL)), quote(CALL, T0 + 5 * S, 4.0, 4.05)]))
    first.end_session()
    assert first.resume_starts("mbp-1") == {"HE": T0 + 5 * S}
    assert first.resume_starts("statistics") == {"HE": T0}  # no statistic yet: from when capture began


class _ChainAppendFails:
    """A library whose next append of the chain symbol fails (what a store answering 503 does)."""

    def __init__(self, library: Any) -> None:
        self._library = library

    def __getattr__(self, name: str) -> Any:
        return getattr(self._library, name)

    def append(self, symbol: str, *args: Any, **kwargs: Any) -> Any:
        if symbol == chain_symbol("HE"):
            raise RuntimeError("S3 answered 503 SlowDown")
        return self._library.append(symbol, *args, **kwargs)


def test_a_snapshot_lost_with_its_failed_append_is_taken_again_after_the_restart(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records of a flush committed, the chain's append did not (S3 503 between the two, or kill -9): the warm
    start must not skip that boundary (found by a review helper: the snapshot was missing for good)."""
    config = make_config(tmp_path)  # snapshots every 60 s
    first = sink(config, store)
    first.commit(frames(opening(T0)))
    first.commit(frames([quote(CALL, T0 + 61 * S, 4.1, 4.15)]))  # the snapshot at T0+60 is stored
    library = store.library
    monkeypatch.setattr(store, "library", lambda name: _ChainAppendFails(library(name)))
    with pytest.raises(FlushError):  # the batch crossing T0+120: its records commit, the snapshot's append fails
        first.commit(frames([quote(CALL, T0 + 121 * S, 4.2, 4.25)]))
    monkeypatch.undo()

    # rebuilt from its factory: warm start from the store, then the Live replay (from the watermark minus 60 s)
    second = sink(config, store)
    second.restore(store)
    second.commit(frames([quote(CALL, T0 + 121 * S, 4.2, 4.25), quote(FUTURE, T0 + 185 * S, 90.0, 90.05)]))
    second.end_session()

    times = sorted(set(pd.DatetimeIndex(read(store, chain_symbol("HE")).index).asi8))
    assert T0 + 120 * S in times, [pd.Timestamp(t, tz="UTC") for t in times]
    at_boundary = read(store, chain_symbol("HE"))
    at_boundary = at_boundary[pd.DatetimeIndex(at_boundary.index).asi8 == T0 + 120 * S]
    call = at_boundary[at_boundary["instrument_id"] == CALL.instrument_id].iloc[0]
    assert (call["bid"], call["ask"]) == (4.1, 4.15)  # the snapshot holds only what came before its time
