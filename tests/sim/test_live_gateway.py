"""The real `databento.Live` client against the simulated LSG: auth, parent symbology, every schema, heartbeats."""

from __future__ import annotations

import databento as db
import pytest
from databento_dbn import (
    InstrumentDefMsg,
    MBP1Msg,
    OHLCVMsg,
    RType,
    StatMsg,
    StatType,
    SType,
    SymbolMappingMsg,
    SystemMsg,
    TradeMsg,
)

from hydra_daemon.sim.venue import VenueThread
from tests.helpers import Collector, live_client, wait_until

DATASET = "GLBX.MDP3"


def test_auth_success_gives_session_id(venue: VenueThread) -> None:
    client = live_client(venue)
    client.subscribe(DATASET, "trades", ["HE.FUT"], stype_in="parent")
    assert client.session_id is not None and client.session_id.isdigit()
    client.terminate()


def test_wrong_key_is_rejected(venue: VenueThread) -> None:
    info = venue.info
    client = db.Live(key="db-WrongKeyWrongKeyWrongKey12345", gateway=info.live_host, port=info.live_port)
    with pytest.raises(db.BentoError, match="Authentication failed"):
        client.subscribe(DATASET, "trades", ["HE.FUT"], stype_in="parent")


def test_wrong_dataset_is_rejected(venue: VenueThread) -> None:
    client = live_client(venue)
    with pytest.raises(db.BentoError, match="Unknown dataset"):
        client.subscribe("XNAS.ITCH", "trades", ["AAPL"])


def test_parent_subscription_maps_every_child_to_its_raw_symbol(venue: VenueThread) -> None:
    client = live_client(venue)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "definition", ["HE.OPT", "HE.FUT"], stype_in="parent")
    client.start()
    listed = venue.call(lambda v: {i.instrument_id: i for i in v.model.instruments})
    wait_until(lambda: len(sink.of(InstrumentDefMsg)) >= len(listed), "the definitions snapshot")
    client.stop()
    client.block_for_close()

    mappings = sink.of(SymbolMappingMsg)
    assert {m.instrument_id for m in mappings} == set(listed)
    for mapping in mappings:
        inst = listed[mapping.instrument_id]
        assert mapping.stype_out_symbol == inst.raw_symbol
        assert mapping.stype_in_symbol == ("HE.OPT" if inst.is_option else "HE.FUT")
    definitions = {d.instrument_id: d for d in sink.of(InstrumentDefMsg)}
    option = next(d for d in definitions.values() if d.instrument_class in ("C", "P"))
    future = definitions[option.underlying_id]
    assert option.raw_symbol.startswith(future.raw_symbol + " ")
    assert option.underlying == future.raw_symbol and future.instrument_class == "F"
    assert option.strike_price % option.min_price_increment == 0


def test_replay_decodes_every_schema(venue: VenueThread) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    wait_until(lambda: venue.call(lambda v: v.tape.end("ohlcv-1d")) > 0, "the first daily bar")
    client = live_client(venue)
    sink = Collector()
    client.add_callback(sink)
    for schema in ("mbp-1", "trades", "ohlcv-1m", "ohlcv-1d", "definition", "statistics"):
        client.subscribe(DATASET, schema, ["HE.FUT", "HE.OPT"], stype_in="parent", start=start)
    client.start()
    wait_until(lambda: sink.of(OHLCVMsg) and any(r.rtype == RType.OHLCV_1D for r in sink.of(OHLCVMsg)), "bars")
    client.stop()
    client.block_for_close()

    assert sink.of(MBP1Msg) and sink.of(TradeMsg) and sink.of(InstrumentDefMsg)
    stats = {s.stat_type for s in sink.of(StatMsg)}
    assert {StatType.SETTLEMENT_PRICE, StatType.OPEN_INTEREST} <= stats
    assert {b.rtype for b in sink.of(OHLCVMsg)} == {RType.OHLCV_1M, RType.OHLCV_1D}
    with_recv = [r for r in sink.records if isinstance(r, MBP1Msg | TradeMsg | StatMsg | InstrumentDefMsg)]
    assert min(r.ts_recv for r in with_recv) == start  # the replay starts exactly at `start`
    quote = sink.of(MBP1Msg)[-1]
    assert quote.levels[0].bid_px < quote.levels[0].ask_px


def test_idle_session_gets_heartbeats(venue: VenueThread) -> None:
    client = live_client(venue, heartbeat_interval_s=1)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "ohlcv-1d", ["HE.FUT"], stype_in="parent")  # no new daily bar for a long while
    client.start()
    wait_until(lambda: any(m.is_heartbeat() for m in sink.of(SystemMsg)), "a heartbeat")
    client.stop()
    client.block_for_close()


def test_unsupported_schema_is_an_error_message(venue: VenueThread) -> None:
    client = live_client(venue)
    client.subscribe(DATASET, "mbo", ["HE.FUT"], stype_in="parent")
    client.start()
    with pytest.raises(db.BentoError, match="unsupported schema 'mbo'"):
        client.block_for_close(timeout=30)


def test_raw_symbol_subscription_maps_with_raw_symbol_stype(venue: VenueThread) -> None:
    raw = venue.call(lambda v: v.model.instruments[0].raw_symbol)
    client = live_client(venue)
    sink = Collector()
    client.add_callback(sink)
    client.subscribe(DATASET, "definition", [raw])
    client.start()
    wait_until(lambda: sink.of(InstrumentDefMsg), "the definition")
    client.stop()
    client.block_for_close()
    [mapping] = sink.of(SymbolMappingMsg)
    assert (mapping.stype_in, mapping.stype_in_symbol, mapping.stype_out_symbol) == (SType.RAW_SYMBOL, raw, raw)
    assert {d.raw_symbol for d in sink.of(InstrumentDefMsg)} == {raw}


def test_many_concurrent_sessions_get_the_same_replay(venue: VenueThread) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    wait_until(lambda: venue.call(lambda v: v.tape.end("trades")) >= 30, "30 trades on the tape")
    clients, sinks = [], []
    for _ in range(6):
        client = live_client(venue)
        sink = Collector()
        client.add_callback(sink)
        client.subscribe(DATASET, "trades", ["HE.FUT", "HE.OPT"], stype_in="parent", start=start)
        client.start()
        clients.append(client)
        sinks.append(sink)
    wait_until(lambda: all(len(sink.of(TradeMsg)) >= 30 for sink in sinks), "30 replayed trades per session")
    for client in clients:
        client.stop()
        client.block_for_close()
    streams = [[bytes(t) for t in sink.of(TradeMsg)][:30] for sink in sinks]
    assert all(stream == streams[0] for stream in streams)
