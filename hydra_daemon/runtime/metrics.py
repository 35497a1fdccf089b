"""Prometheus metrics: one `CollectorRegistry` per daemon whose collector reads the live state at scrape time.

Nothing is double-booked: the counters are the pipelines' own `PipelineStats`, the statuses are the health
snapshot's verdicts, so `/metrics` and `/health` never disagree. Pipeline series carry the labels `pipeline`,
`market` (the pipeline's markets, comma-separated) and `schema` (its schemas, comma-separated); the open-market lag
and its limit are per market (`market` one market: health judges each market by its own hours), so series stay
pipelines × markets. A restarted
pipeline starts its counters again from 0, which Prometheus' `rate()`/`increase()` treat as a counter reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from hydra_daemon.latency import LatencyHistogram
from hydra_daemon.runtime.assessment import Status
from hydra_daemon.runtime.health import HealthSnapshot, daemon_version
from hydra_daemon.runtime.supervisor import Supervisor

LABELS = ["pipeline", "market", "schema"]
STATUS_VALUE = {Status.OK: 0, Status.CLOSED: 0, Status.DEGRADED: 1, Status.FAILED: 2}

_COUNTERS = (
    ("records", "records", "Records stored (after de-duplication)."),
    ("rejects", "rejects", "Records or rows rejected by validation (never stored)."),
    ("reconnects", "reconnects", "Reconnect attempts after a Live session ended."),
    ("fetch_failures", "fetch_failures", "Downloads of a polled source (COT) that failed after their retries."),
    ("gap_fills", "gaps_filled", "Historical gap fills completed."),
    ("gap_fill_records", "gap_fill_records", "Records received from Historical gap fills."),
    ("historical_requests_refused", "historical_refusals", "Historical requests refused by the cost guard."),
    ("batches", "batches", "Batches with rows processed."),
    ("idle_ticks", "idle_ticks", "Idle ticks: the Live session is up but the source is quiet."),
    ("corrupt_records", "corrupt_records", "Source records that could not be decoded (quarantined, never stored)."),
)


class DaemonCollector(Collector):
    """Yields every hydra metric from `snapshot()` and the supervisor, at scrape time."""

    def __init__(self, supervisor: Supervisor, snapshot: Callable[[], HealthSnapshot]) -> None:
        self._supervisor = supervisor
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        yield from _daemon_metrics(snapshot)
        yield from self._pipeline_metrics(snapshot)
        yield from _store_metrics(snapshot)

    def _pipeline_metrics(self, snapshot: HealthSnapshot) -> Iterator[Metric]:
        families = {name: CounterMetricFamily(f"hydra_{name}", text, labels=LABELS) for name, _, text in _COUNTERS}
        cost = CounterMetricFamily(
            "hydra_historical_cost_usd", "US dollars spent on Historical requests.", labels=LABELS
        )
        restarts = CounterMetricFamily("hydra_pipeline_restarts", "Supervisor restarts of the pipeline.", labels=LABELS)
        status = GaugeMetricFamily(
            "hydra_pipeline_status", "Pipeline health: 0 ok or closed, 1 degraded, 2 failed.", labels=LABELS
        )
        market_open = GaugeMetricFamily(
            "hydra_pipeline_closed", "1 while the pipeline's market is closed by its calendar (healthy).", labels=LABELS
        )
        lag = GaugeMetricFamily(
            "hydra_lag_seconds", "Data-clock seconds between now and the newest stored record.", labels=LABELS
        )
        open_lag = GaugeMetricFamily(
            "hydra_open_lag_seconds",
            "Open-market seconds (the market's trading hours, data clock) its newest record trails now, per market.",
            labels=LABELS,
        )
        lag_limit = GaugeMetricFamily(
            "hydra_lag_limit_seconds",
            "Open-market lag of a market beyond which health says lagging (degraded).",
            labels=LABELS,
        )
        since = GaugeMetricFamily(
            "hydra_last_delivery_timestamp_seconds", "Data-clock time records were last stored.", labels=LABELS
        )
        buffered = GaugeMetricFamily(
            "hydra_buffered_rows", "Rows buffered in the writer, not yet committed.", labels=LABELS
        )
        queue = GaugeMetricFamily("hydra_queue_depth", "Decoded batches waiting to be persisted.", labels=LABELS)
        cot = GaugeMetricFamily(
            "hydra_cot_last_release_seen_timestamp_seconds",
            "Scheduled release time of the newest COT week stored, of the market furthest behind.",
            labels=LABELS,
        )
        persist = HistogramMetricFamily("hydra_persist_seconds", "Time to persist one batch.", labels=LABELS)
        append = HistogramMetricFamily("hydra_append_seconds", "Time of one ArcticDB append (flush).", labels=LABELS)
        for name, record in self._supervisor.records.items():
            item = snapshot.pipelines[name]
            labels = [name, item.markets, item.schema]
            status.add_metric(labels, STATUS_VALUE[item.verdict.status])
            market_open.add_metric(labels, 1 if item.verdict.status is Status.CLOSED else 0)
            restarts.add_metric(labels, record.restarts)
            if item.last_delivery is not None:
                since.add_metric(labels, item.last_delivery.timestamp())
            if item.lag_s is not None:
                lag.add_metric(labels, item.lag_s)
            for market, detail in item.per_market.items():
                if detail.open_lag_s is not None:
                    open_lag.add_metric([name, market, item.schema], detail.open_lag_s)
                if detail.lag_limit_s is not None:
                    lag_limit.add_metric([name, market, item.schema], detail.lag_limit_s)
            stats = record.current.stats if record.current is not None else None
            if stats is None:
                continue
            for metric, attribute, _ in _COUNTERS:
                families[metric].add_metric(labels, getattr(stats, attribute))
            cost.add_metric(labels, stats.historical_cost_usd)
            buffered.add_metric(labels, stats.buffered_rows)
            queue.add_metric(labels, stats.queue_depth)
            if item.schema == "cot" and stats.last_record_time is not None:
                cot.add_metric(labels, stats.last_record_time.timestamp())
            _observe(persist, labels, stats.persist_seconds)
            if stats.append_seconds is not None:
                _observe(append, labels, stats.append_seconds)
        yield from (*families.values(), cost, restarts, status, market_open, lag, open_lag, lag_limit, since)
        yield from (buffered, queue, cot)
        yield from (persist, append)


def _observe(family: HistogramMetricFamily, labels: list[str], histogram: LatencyHistogram) -> None:
    family.add_metric(labels, histogram.cumulative(), histogram.total_s)


def _daemon_metrics(snapshot: HealthSnapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily("hydra_info", "Always 1; the version as a label.", labels=["version"])
    info.add_metric([daemon_version()], 1)
    status = GaugeMetricFamily("hydra_status", "Overall health: 0 ok or closed, 1 degraded, 2 failed.")
    status.add_metric([], STATUS_VALUE[snapshot.status])
    clock = GaugeMetricFamily("hydra_data_clock_timestamp_seconds", "The data clock's now (the venue's in tests).")
    clock.add_metric([], snapshot.now.timestamp())
    yield from (info, status, clock)


def _store_metrics(snapshot: HealthSnapshot) -> Iterator[Metric]:
    usage = snapshot.usage
    if usage is None:
        return
    lease = GaugeMetricFamily("hydra_lease_held", "1 while this daemon holds the store's writer lease.")
    lease.add_metric([], 1 if usage.lease_held else 0)
    pruned = CounterMetricFamily("hydra_versions_pruned", "Store versions removed by retention.")
    pruned.add_metric([], usage.versions_pruned)
    yield from (lease, pruned)
    if usage.size_bytes is not None:
        size = GaugeMetricFamily("hydra_store_size_bytes", "Bytes the store occupies.")
        size.add_metric([], usage.size_bytes)
        yield size
    if usage.map_size_bytes is not None:
        mapped = GaugeMetricFamily("hydra_store_map_size_bytes", "The LMDB map size.")
        mapped.add_metric([], usage.map_size_bytes)
        yield mapped
    if usage.map_fraction is not None:
        used = GaugeMetricFamily("hydra_store_map_used_ratio", "How full the LMDB map is (0..1).")
        used.add_metric([], usage.map_fraction)
        yield used


def metrics_registry(supervisor: Supervisor, snapshot: Callable[[], HealthSnapshot]) -> CollectorRegistry:
    """A fresh registry (this daemon's only) holding the daemon collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(supervisor, snapshot))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (version 0.0.4)."""
    return generate_latest(registry)
