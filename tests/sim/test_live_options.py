"""Live session options with the real client: zstd, ts_out, replay start, subscriptions on a running session."""

from __future__ import annotations

import pytest
from databento_dbn import (
    FIXED_PRICE_SCALE,
    UNDEF_TIMESTAMP,
    Compression,
    MBP1Msg,
    SymbolMappingMsg,
    SystemCode,
    SystemMsg,
    TradeMsg,
)
from vollib.black.implied_volatility import implied_volatility

from hydra_daemon.databento.historical_client import historical_client
from hydra_daemon.sim.venue import VenueThread
from tests.helpers import Collector, fast_config, live_client, wait_until

DATASET = "GLBX.MDP3"


def test_zstd_session_decodes(venue: VenueThread) -> None:
    client = live_client(venue, compression=Compression.ZSTD)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "mbp-1", ["HE.FUT"], stype_in="parent")
    client.start()
    wait_until(lambda: len(sink.of(MBP1Msg)) >= 20, "20 zstd-compressed quotes")
    client.stop()
    client.block_for_close()
    assert all(r.levels[0].bid_px < r.levels[0].ask_px for r in sink.of(MBP1Msg))


def test_ts_out_is_appended(venue: VenueThread) -> None:
    client = live_client(venue, ts_out=True)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "trades", ["HE.FUT", "HE.OPT"], stype_in="parent")
    client.start()
    wait_until(lambda: len(sink.of(TradeMsg)) >= 5, "5 trades")
    metadata = client.metadata  # the session's; cleared at close
    client.stop()
    client.block_for_close()
    assert metadata is not None and metadata.ts_out
    assert all(t.ts_recv <= t.ts_out != UNDEF_TIMESTAMP for t in sink.of(TradeMsg))  # undefined without ts_out


def test_replay_is_exactly_the_tape_from_start(venue: VenueThread) -> None:
    wait_until(lambda: venue.call(lambda v: v.tape.end("trades")) > 50, "50 trades on the tape")
    trades = venue.call(lambda v: v.tape.slice("trades", v.model.start_ns, v.model.now_ns))
    start = trades[len(trades) // 2].key_ns
    expected = [t.data for t in trades if t.key_ns >= start]
    client = live_client(venue)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "trades", ["HE.FUT", "HE.OPT"], stype_in="parent", start=start)
    client.start()
    wait_until(lambda: [m for m in sink.of(SystemMsg) if m.code == SystemCode.REPLAY_COMPLETED], "end of replay")
    client.stop()
    client.block_for_close()
    assert [bytes(t) for t in sink.of(TradeMsg)][: len(expected)] == expected
    done = next(i for i, r in enumerate(sink.records) if isinstance(r, SystemMsg))
    assert len([r for r in sink.records[:done] if isinstance(r, TradeMsg)]) >= len(expected)


def test_subscribe_on_a_running_session(venue: VenueThread) -> None:
    client = live_client(venue)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "trades", ["HE.FUT"], stype_in="parent")
    client.start()
    raw = venue.call(lambda v: next(i.raw_symbol for i in v.model.instruments if i.kind == "F"))
    client.subscribe(DATASET, "mbp-1", [raw])
    wait_until(lambda: sink.of(MBP1Msg), "quotes from the second subscription")
    client.stop()
    client.block_for_close()
    assert {m.stype_out_symbol for m in sink.of(SymbolMappingMsg) if m.stype_in_symbol == raw} == {raw}
    assert {q.instrument_id for q in sink.of(MBP1Msg)} == {m.instrument_id for m in sink.of(SymbolMappingMsg)
                                                            if m.stype_in_symbol == raw}  # fmt: skip


def test_option_quotes_carry_recoverable_venue_vols(venue: VenueThread) -> None:
    client = live_client(venue)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "mbp-1", ["HE.OPT"], stype_in="parent")
    client.start()
    wait_until(lambda: len(sink.of(MBP1Msg)) >= 20, "20 option quotes")
    client.stop()
    client.block_for_close()
    for quote in sink.of(MBP1Msg)[:20]:
        truth = venue.option_truth(quote.instrument_id, quote.ts_recv)
        assert truth is not None
        mid = (quote.levels[0].bid_px + quote.levels[0].ask_px) / 2 / FIXED_PRICE_SCALE
        flag = "c" if truth.is_call else "p"
        vol = implied_volatility(mid, truth.forward, truth.strike, truth.rate, truth.t_years, flag)
        assert vol == pytest.approx(truth.vol, abs=1e-6)


def test_replay_reaches_back_only_the_replay_window_historical_has_the_rest() -> None:
    with VenueThread(fast_config(replay_window_s=300.0)) as venue:  # 5 sim minutes = 0.5 wall seconds
        start = venue.call(lambda v: v.model.start_ns)
        wait_until(lambda: venue.call(lambda v: v.model.now_ns) > start + 900 * 10**9, "15 sim minutes")
        client = live_client(venue)
        sink = Collector()
        client.add_callback(sink)
        client.subscribe(DATASET, "trades", ["HE.FUT", "HE.OPT"], stype_in="parent", start=start)
        subscribed_at = venue.now_ns()
        client.start()
        wait_until(lambda: len(sink.of(TradeMsg)) >= 5, "replayed trades")
        client.stop()
        client.block_for_close()
        first = sink.of(TradeMsg)[0].ts_recv
        assert first >= subscribed_at - 300 * 10**9 - 60 * 10**9  # window (+ the session start latency)
        older = historical_client(venue.info.api_key, venue.info.historical_url).timeseries.get_range(
            DATASET, start, first, ["HE.FUT", "HE.OPT"], "trades", stype_in="parent"
        )
        assert len(list(older)) > 0  # the gap a daemon must fill from Historical
