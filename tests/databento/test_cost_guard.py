"""The Historical cost guard with the real `databento.Historical` client against the simulated venue's metadata
endpoints (a deterministic price per byte), and a live gap fill it refuses."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import databento as db
import pytest
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.config import parse_config
from hydra_daemon.databento.cost_guard import CostGuard, CostRefused, HistoricalRequest, SpendLedger
from hydra_daemon.databento.historical_client import historical_client
from hydra_daemon.databento.historical_fill import HistoricalSource
from hydra_daemon.futures.pipeline import FuturesIngestPipeline
from hydra_daemon.ingest import PipelineStats
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.historical import USD_PER_BYTE
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from tests.helpers import eventually, fast_config, running, wait_until

DATASET = "GLBX.MDP3"
NS_PER_S = 1_000_000_000


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return fast_config(seed=4)


@pytest.fixture(scope="module", autouse=True)
def ten_sim_minutes(venue: VenueThread) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    wait_until(lambda: venue.call(lambda v: v.model.now_ns) > start + 600 * NS_PER_S, "10 sim minutes")


@pytest.fixture(scope="module")
def client(venue: VenueThread) -> db.Historical:
    return historical_client(venue.info.api_key, venue.info.historical_url)


def _minute_bars(venue: VenueThread) -> HistoricalRequest:
    """Minute bars up to 2 sim minutes ago: every bar of that range is published (a bar appears at its end), so the
    range's content — and price — no longer changes."""
    start = venue.call(lambda v: v.model.start_ns)
    return HistoricalRequest(
        DATASET, "HE.FUT", "ohlcv-1m", start, venue.call(lambda v: v.model.now_ns) - 120 * NS_PER_S
    )


def _range_bytes(client: db.Historical, request: HistoricalRequest) -> list[bytes]:
    store = client.timeseries.get_range(
        DATASET, request.start_ns, request.end_ns, [request.symbols], request.schema, stype_in="parent"
    )
    return [bytes(record) for record in store]


def test_metadata_endpoints_price_exactly_what_get_range_returns(venue: VenueThread, client: db.Historical) -> None:
    request = _minute_bars(venue)
    records = _range_bytes(client, request)
    assert records, "the venue has minute bars to price"
    size = sum(len(r) for r in records)
    fields = {"start": request.start_ns, "end": request.end_ns, "symbols": "HE.FUT", "stype_in": "parent"}
    assert client.metadata.get_record_count(DATASET, schema="ohlcv-1m", **fields) == len(records)
    assert client.metadata.get_billable_size(DATASET, schema="ohlcv-1m", **fields) == size
    assert client.metadata.get_cost(DATASET, schema="ohlcv-1m", **fields) == pytest.approx(size * USD_PER_BYTE)


def test_the_client_logs_the_endpoint_it_really_uses(venue: VenueThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="databento")
    with structlog.testing.capture_logs() as logs:
        historical_client(venue.info.api_key, venue.info.historical_url)
    assert [e["endpoint"] for e in logs if e["event"] == "historical_client_ready"] == [venue.info.historical_url]
    said = [r.getMessage() for r in caplog.records if r.name.startswith("databento")]
    assert not [m for m in said if "hist.databento.com" in m], "databento's own line names the production gateway"


def test_a_request_within_the_limit_is_made_and_accounted(
    venue: VenueThread, client: db.Historical, tmp_path: Path
) -> None:
    stats = PipelineStats()
    guard = CostGuard(1_000.0, tmp_path, stats)
    request = _minute_bars(venue)
    quote = guard.authorize(client, request)
    assert quote.records > 0 and quote.cost_usd > 0
    assert stats.historical_cost_usd == pytest.approx(quote.cost_usd)
    assert stats.historical_refusals == 0 and stats.degraded_reason is None
    ledger = json.loads((tmp_path / "historical_spend.json").read_text())
    assert ledger == {"day": datetime.now(UTC).date().isoformat(), "spent_usd": pytest.approx(quote.cost_usd)}


def test_a_request_above_the_limit_is_refused_before_it_is_made(
    venue: VenueThread, client: db.Historical, tmp_path: Path
) -> None:
    request = _minute_bars(venue)
    price = CostGuard(1_000.0).quote(client, request).cost_usd
    stats = PipelineStats()
    guard = CostGuard(price / 2, tmp_path, stats)
    source = HistoricalSource(DATASET, ApiKey(venue.info.api_key), guard, venue.info.historical_url)
    with pytest.raises(CostRefused, match="above the per-request limit"):
        source.fetch(client, request.symbols, request.schema, request.start_ns, request.end_ns)
    assert stats.historical_refusals == 1
    assert stats.degraded_reason is not None and "max_historical_cost_usd" in stats.degraded_reason
    assert stats.historical_cost_usd == 0
    assert not (tmp_path / "historical_spend.json").exists()


def test_the_daily_budget_survives_a_restart(venue: VenueThread, client: db.Historical, tmp_path: Path) -> None:
    request = _minute_bars(venue)
    price = CostGuard(1_000.0).quote(client, request).cost_usd
    CostGuard(price * 1.5, tmp_path).authorize(client, request)
    restarted = CostGuard(price * 1.5, tmp_path)  # a new process: today's spend comes from the ledger
    with pytest.raises(CostRefused, match="spent today"):
        restarted.authorize(client, request)
    tomorrow = datetime(2999, 1, 1, tzinfo=UTC).date()
    restarted.check(restarted.quote(client, request), today=tomorrow)  # a new UTC day starts from zero


def test_the_daily_check_and_the_charge_are_one_step(tmp_path: Path) -> None:
    """Two pipelines charging at once: the second sees the first's spend, so both cannot pass the daily limit."""
    ledger = SpendLedger(tmp_path / "historical_spend.json")
    day = datetime(2026, 11, 30, tzinfo=UTC).date()
    seen: list[float] = []

    def allow(spent: float) -> None:
        seen.append(spent)
        time.sleep(0.05)  # a slow check: without one lock around check and charge, the other thread gets in here
        if spent + 1.0 > 1.5:
            raise CostRefused("over the daily limit", 1.0)

    def charge() -> bool:
        try:
            ledger.charge(day, 1.0, allow)
        except CostRefused:
            return False
        return True

    with ThreadPoolExecutor(2) as pool:
        allowed = list(pool.map(lambda _: charge(), range(2)))
    assert sorted(allowed) == [False, True]
    assert seen == [0.0, 1.0]
    assert ledger.spent_today(day) == 1.0


def test_a_refused_chunk_ends_the_fill_and_records_the_gap(
    venue: VenueThread, client: db.Historical, tmp_path: Path
) -> None:
    request = _minute_bars(venue)
    stats = PipelineStats()
    guard = CostGuard(0.0, tmp_path, stats)
    source = HistoricalSource(DATASET, ApiKey(venue.info.api_key), guard, venue.info.historical_url)
    fetched = list(source.fetch_chunks(client, "HE.FUT", "ohlcv-1m", request.start_ns, request.end_ns))
    assert fetched == []
    (gap,) = [json.loads(line) for line in (tmp_path / "gaps" / "historical_refused.jsonl").read_text().splitlines()]
    assert (gap["symbols"], gap["schema"], gap["start_ns"], gap["end_ns"]) == (
        "HE.FUT",
        "ohlcv-1m",
        request.start_ns,
        request.end_ns,
    )
    assert "max_historical_cost_usd" in gap["reason"]
    assert stats.historical_refusals == 1


async def test_a_live_gap_fill_above_the_limit_is_refused_recorded_and_capture_goes_on(
    store: Store, tmp_path: Path
) -> None:
    with VenueThread(fast_config(seed=6, replay_window_s=900.0)) as venue:
        clock = venue.venue.clock
        assert clock is not None
        info = venue.info
        config = parse_config(
            {
                "state_dir": str(tmp_path),
                "storage": {"arctic_uri": store.uri, "flush_interval_s": 0.05},
                "databento": {
                    "live_gateway": info.live_host,
                    "live_port": info.live_port,
                    "historical_url": info.historical_url,
                    "futures_schemas": ["ohlcv-1m"],
                    "heartbeat_interval_s": 1,
                    "replay_window_s": 600,
                    "max_historical_cost_usd": 0.0,
                },
                "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
            }
        )

        def pipeline(store: Store) -> FuturesIngestPipeline:
            key = ApiKey(info.api_key)
            return FuturesIngestPipeline(config, store, key, clock=clock, backoff=Backoff(0.05, 0.4))

        def minute_mark(p: FuturesIngestPipeline) -> int:
            mark = p.watermark("HE", "ohlcv-1m")
            return -1 if mark is None else mark.ts_ns

        first = pipeline(store)
        async with running(first):
            await eventually(lambda: minute_mark(first) > 0, "the first minute bars")
        stopped_at = minute_mark(first)
        await eventually(lambda: clock.now_ns() > stopped_at + 1200 * NS_PER_S, "the venue to move 20 min on")
        second = pipeline(store)
        with structlog.testing.capture_logs() as logs:
            async with running(second):
                target = clock.now_ns() + 2 * 60 * NS_PER_S
                await eventually(lambda: minute_mark(second) >= target, "live minute bars after the refused fill")
        assert second.stats.historical_refusals >= 1
        fills = sum(1 for e in logs if e["event"] == "gap_fill_started")  # one market: one refusal ends a fill
        assert second.stats.gaps_filled == fills - second.stats.historical_refusals, "a refused fill is not filled"
        assert second.stats.historical_cost_usd == 0
        assert "max_historical_cost_usd" in (second.stats.degraded_reason or "")
        gaps = [json.loads(line) for line in (tmp_path / "gaps" / "historical_refused.jsonl").read_text().splitlines()]
        minute_gaps = [g for g in gaps if g["schema"] == "ohlcv-1m"]
        assert minute_gaps and minute_gaps[0]["start_ns"] <= stopped_at < minute_gaps[0]["end_ns"]
