"""The real `databento.Historical` client against the simulated Historical API."""

from __future__ import annotations

import databento as db
import pytest
import requests
from databento_dbn import InstrumentDefMsg, Schema, TradeMsg

from hydra_daemon.databento.historical_client import historical_client
from hydra_daemon.sim.market import NS_PER_DAY, SCHEMAS
from hydra_daemon.sim.venue import VenueThread
from tests.helpers import wait_until

DATASET = "GLBX.MDP3"


@pytest.fixture(scope="module", autouse=True)
def first_daily_bar(venue: VenueThread) -> None:
    """Slices of every schema are compared: wait until the venue has emitted a daily bar too."""
    wait_until(lambda: venue.call(lambda v: v.tape.end("ohlcv-1d")) > 0, "the first daily bar")


def available_end(venue: VenueThread) -> int:
    return venue.call(lambda v: v.model.now_ns)


@pytest.fixture(scope="module")
def client(venue: VenueThread) -> db.Historical:
    return historical_client(venue.info.api_key, venue.info.historical_url)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_get_range_returns_the_tape_slice_of_each_schema(
    venue: VenueThread, client: db.Historical, schema: str
) -> None:
    start = venue.call(lambda v: v.model.start_ns) - NS_PER_DAY  # daily bars are stamped at their day's open
    end = venue.call(lambda v: v.model.now_ns)
    store = client.timeseries.get_range(DATASET, start, end, ["HE.FUT", "HE.OPT"], schema, stype_in="parent")
    expected = venue.call(lambda v: [e.data for e in v.tape.slice(schema, start, end)])
    assert expected, f"the venue produced no {schema} records to compare"
    assert store.metadata.schema == Schema(schema)
    assert [bytes(r) for r in store] == expected
    mapped = {int(i["symbol"]) for intervals in store.metadata.mappings.values() for i in intervals}
    assert {r.instrument_id for r in store} <= mapped


def test_end_is_exclusive_and_symbols_filter(venue: VenueThread, client: db.Historical) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    trades = venue.call(lambda v: v.tape.slice("trades", start, v.model.now_ns))
    boundary = trades[len(trades) // 2].key_ns
    store = client.timeseries.get_range(DATASET, start, boundary, "HE.FUT", "trades", stype_in="parent")
    futures = venue.call(lambda v: {i.instrument_id for i in v.model.instruments if i.kind == "F"})
    records = [r for r in store if isinstance(r, TradeMsg)]
    assert records and all(r.ts_recv < boundary for r in records)
    assert {r.instrument_id for r in records} <= futures
    assert len(records) == sum(1 for t in trades if t.key_ns < boundary and t.instrument_id in futures)


def test_raw_symbol_definitions_and_dataframe(venue: VenueThread, client: db.Historical) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    raw = venue.call(lambda v: v.model.instruments[1].raw_symbol)
    store = client.timeseries.get_range(DATASET, start, available_end(venue), [raw], "definition")
    definitions = [r for r in store if isinstance(r, InstrumentDefMsg)]
    assert definitions and {d.raw_symbol for d in definitions} == {raw}
    assert set(store.to_df()["symbol"]) == {raw}


def test_wrong_key_gets_401(venue: VenueThread) -> None:
    bad = historical_client("db-NotTheRightKeyNotTheRightKey9", venue.info.historical_url)
    with pytest.raises(db.BentoClientError) as failure:
        bad.timeseries.get_range(DATASET, venue.call(lambda v: v.model.start_ns), available_end(venue), "HE.FUT",
                                 "trades", stype_in="parent")  # fmt: skip
    assert failure.value.http_status == 401 and "Authentication failed" in str(failure.value)


def test_end_after_available_data_is_422(venue: VenueThread, client: db.Historical) -> None:
    with pytest.raises(db.BentoClientError) as failure:
        client.timeseries.get_range(DATASET, venue.call(lambda v: v.model.start_ns), venue.now_ns() + 10**15,
                                    "HE.FUT", "trades", stype_in="parent")  # fmt: skip
    assert failure.value.http_status == 422 and "available data end" in str(failure.value)


@pytest.mark.parametrize(("status", "error"), [(500, db.BentoServerError), (503, db.BentoServerError),
                                               (429, db.BentoClientError)])  # fmt: skip
def test_injected_http_failure_then_recovery(
    venue: VenueThread, client: db.Historical, status: int, error: type[Exception]
) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    venue.fault("http_fail", f"{status}:1")
    with pytest.raises(error) as failure:
        client.timeseries.get_range(DATASET, start, available_end(venue), "HE.FUT", "trades", stype_in="parent")
    assert failure.value.http_status == status  # type: ignore[attr-defined]
    assert f"Simulated venue fault: HTTP {status}." in str(failure.value)  # the JSON `detail` is the message
    store = client.timeseries.get_range(DATASET, start, available_end(venue), "HE.FUT", "trades", stype_in="parent")
    assert list(store)


def test_without_base_url_requests_go_to_databento(monkeypatch: pytest.MonkeyPatch) -> None:
    """The internet is mocked at the HTTP adapter: record where each request would go, then refuse it."""
    sent: list[str] = []

    def offline(adapter: object, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        sent.append(str(request.url))
        raise requests.ConnectionError("offline test")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", offline)
    client = historical_client("db-SomeKeySomeKeySomeKeySomeKey1")
    with pytest.raises(requests.ConnectionError):
        client.timeseries.get_range(DATASET, "2026-11-02", "2026-11-03", "HE.FUT", "trades", stype_in="parent")
    with pytest.raises(requests.ConnectionError):
        client.metadata.get_cost(DATASET, "2026-11-02", "2026-11-03", symbols="HE.FUT", stype_in="parent")
    assert [url.split("?")[0] for url in sent] == [
        "https://hist.databento.com/v0/timeseries.get_range",
        "https://hist.databento.com/v0/metadata.get_cost",
    ]
