"""Storage faults against the real daemon subprocess (issue 10): the LMDB store made read-only, S3 answering errors
and dropping connections mid-append, the S3 writer lease lost. Each: health failed or degraded with the reason, a log
line saying what to do, capture resuming once the fault clears, and — audited against the venue's own ground truth
(`hydra_daemon.sim.audit`) — no stored row lost and none duplicated.

The venue runs in this process (so it and its ground truth outlive daemon restarts); each daemon is
`tests/runtime/venue_daemon.py --venue ...` on the venue's clock. Where resuming needs a fresh process (LMDB after a
failed commit; a lease another writer took), the daemon exits with status 1 by itself once the fault has cleared and
the test starts it again, as systemd's `Restart=on-failure` would.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hydra_daemon.config import MarketConfig
from hydra_daemon.sim.audit import audit_store
from hydra_daemon.sim.venue import VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.lease import LEASE_OBJECT, LeaseHolder
from tests.conftest import S3_ACCESS, S3_SECRET, MotoServer, S3Bucket
from tests.helpers import set_immutable, store_paths
from tests.runtime.test_health_venue import PATIENCE_S, WEDNESDAY, VenueDaemon
from tests.runtime.venue_daemon import external_venue, venue_config
from tests.s3_fault_proxy import Fault, ProxyProcess, Rule

HE = MarketConfig(name="HE", futures_root="HE", options_root="HE", cftc_code="054642")
REPLAY_S = 23 * 3600
S3_ATTEMPTS = 3
SHORT_S3_RETRIES = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": str(S3_ATTEMPTS)}
"""The AWS SDK's own settings, which ArcticDB's S3 client honours: at most 3 attempts with up to 1 and 2 s between
them (measured: ~2 s against the fault proxy), instead of the default 11 attempts over ~26 s, which ArcticDB runs one
library at a time. What the daemon does once the client gives up is the same; the suite waits seconds, not minutes."""


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[VenueThread]:
    """The venue, recording its ground truth to `tmp_path/truth.dbn`."""
    config = venue_config(datetime.fromisoformat(WEDNESDAY), REPLAY_S, tmp_path / "truth.dbn")
    with VenueThread(config) as running:
        yield running


class Daemons:
    """Daemon runs against one venue and one store, each in its own work directory (its log, socket, state)."""

    def __init__(self, root: Path, venue: VenueThread, uri: str) -> None:
        self.root, self.venue, self.uri = root, venue, uri
        self.runs: list[VenueDaemon] = []

    def start(self, env: dict[str, str] | None = None) -> VenueDaemon:
        workdir = self.root / f"run{len(self.runs) + 1}"
        workdir.mkdir()
        options = ["--venue", external_venue(self.venue), "--arctic-uri", self.uri, "--restart-max-s", "2"]
        self.runs.append(VenueDaemon(workdir, WEDNESDAY, options=options, env=env))
        return self.runs[-1]

    def close(self) -> None:
        for daemon in self.runs:
            daemon.close()


def records(answer: dict[str, Any]) -> dict[str, int]:
    return {name: p["records"] for name, p in answer["pipelines"].items()}


def newest(answer: dict[str, Any]) -> dict[str, datetime | None]:
    """Per pipeline, the newest stored record's time."""
    times = {name: p["last_record_time"] for name, p in answer["pipelines"].items()}
    return {name: None if t is None else datetime.fromisoformat(t) for name, t in times.items()}


def storing(after: dict[str, datetime | None] | None = None, more_than: dict[str, int] | None = None) -> Any:
    """Health predicate: ok, both pipelines stored records newer than `after` and more than `more_than` of them."""

    def check(answer: dict[str, Any]) -> bool:
        stored, times = records(answer), newest(answer)
        later = all((t := times[p]) is not None and (a is None or t > a) for p, a in (after or {}).items())
        more = all(stored[p] > n for p, n in (more_than or {}).items())
        return answer["status"] == "ok" and min(stored.values()) > 0 and later and more

    return check


def event(daemon: VenueDaemon, name: str) -> dict[str, Any]:
    found = [e for e in daemon.events() if e["event"] == name]
    assert found, f"no {name} line in {daemon.log}"
    return found[0]


def exits_by_itself(daemon: VenueDaemon) -> int:
    return daemon.proc.wait(PATIENCE_S)


def audit(uri: str, venue: VenueThread) -> None:
    """Every market-data symbol equals the venue's ground truth up to its newest row: 0 missing, 0 duplicated."""
    record_path = venue.venue.config.record_path
    with Store.open(uri, writer=False, quiet=True) as store:
        lines = audit_store(store, venue.venue.model, record_path, [HE])
    symbols = {line.symbol for line in lines}
    assert {"futures/HE.ohlcv-1m", "options/HE.mbp-1", "options/HE.definition"} <= symbols, symbols
    assert all(line.stored > 0 for line in lines), lines
    assert [(line.symbol, line.missing, line.duplicated) for line in lines] == [(s.symbol, 0, 0) for s in lines]


@pytest.fixture
def lmdb_daemons(tmp_path: Path, venue: VenueThread) -> Iterator[Daemons]:
    runs = Daemons(tmp_path, venue, f"lmdb://{tmp_path / 'arctic'}?map_size=1GB")
    yield runs
    runs.close()


def test_read_only_store_fails_health_says_the_fix_and_capture_resumes_without_loss(
    lmdb_daemons: Daemons, tmp_path: Path
) -> None:
    daemons = lmdb_daemons
    first = daemons.start()
    before = records(first.wait_health(storing(), "storing"))
    store_dir = tmp_path / "arctic"
    paths = store_paths(store_dir)
    set_immutable(paths, True)
    try:
        failed = first.wait_health(
            lambda h: h["status"] == "failed" and any(r.startswith("store ") for r in h["reasons"]), "failed: read-only"
        )
        [reason] = [r for r in failed["reasons"] if r.startswith("store ")]  # the store's own; jobs fail too
        assert f"store {store_dir} is not writable" in reason and "Operation not permitted" in reason, reason
        assert "writable again" in reason and "exits with status 1" in reason, reason
        line = event(first, "storage_unwritable")
        assert line["level"] == "error" and f"make {store_dir} and the files under it writable" in line["hint"]
        stalled = first.wait_health(lambda h: h["status"] == "failed", "still answering")
        assert first.proc.poll() is None, "the daemon stays up and says why"
        assert all(records(stalled)[p] >= before[p] for p in before)
    finally:
        set_immutable(paths, False)
    assert exits_by_itself(first) == 1
    assert "writable again" in event(first, "store_fault_cleared")["cleared"]

    second = daemons.start()
    second.wait_health(storing(after=newest(stalled)), "storing newer records after the restart")
    assert second.stop() == 0
    audit(daemons.uri, daemons.venue)


def test_a_full_map_fails_health_with_the_fix_one_line_at_a_time(tmp_path: Path, venue: VenueThread) -> None:
    """Once the fault is recorded, every pipeline restart met it again, each logged with a full traceback, and the
    lake and maintenance jobs added one every 10-20 s (found by a review helper: ~13,000 tracebacks a day). Resuming
    with a larger map is `tests/store/test_space.py`'s; resuming the daemon after a fault, audited, the read-only
    test's. A commit the disk cuts short takes this same path once recorded (`test_space`: it is recorded, and the
    process survives)."""
    daemons = Daemons(tmp_path, venue, f"lmdb://{tmp_path / 'arctic'}?map_size=1MB")
    try:
        first = daemons.start()
        failed = first.wait_health(
            lambda h: h["status"] == "failed" and any("LMDB map full" in r for r in h["reasons"]), "failed: map full"
        )
        # The store's own reason; a job whose write met the full map also says so, once (below).
        [reason] = [r for r in failed["reasons"] if r.startswith("LMDB map full")]
        assert "grow map_size" in reason, reason
        assert event(first, "storage_full")["level"] == "error"
        time.sleep(4)  # pipelines restart into the stopped store; jobs come round
        assert first.proc.poll() is None, "the daemon stays up and says why"
        assert first.stop() == 0
        events = first.events()
        fault_at = next(i for i, e in enumerate(events) if e["event"] == "storage_full")
        later = events[fault_at:]
        assert [(e["event"], e.get("job") or e.get("pipeline")) for e in later if "exception" in e] == []
        failed_jobs = Counter(e["job"] for e in later if e["event"] == "job_failed")
        assert all(n == 1 for n in failed_jobs.values()), f"the jobs wait for the next process: {failed_jobs}"
        assert [e for e in later if e["event"] == "pipeline_failed"], "each restart still says why, in one line"
    finally:
        daemons.close()


def failing(answer: dict[str, Any], library: str) -> str | None:
    """The store's reason while writes to `library` fail and are retried, if it says so."""
    return next((r for r in answer["reasons"] if "failing" in r and f"writing {library}/" in r), None)


def test_s3_errors_and_a_lost_response_degrade_health_and_capture_resumes_without_loss(
    tmp_path: Path, venue: VenueThread, s3_bucket: S3Bucket, s3_proxy: ProxyProcess
) -> None:
    uri = f"s3://127.0.0.1:{s3_bucket.name}?access={S3_ACCESS}&secret={S3_SECRET}&port={s3_proxy.port}"
    data = f"/{s3_bucket.name}/"
    runs = Daemons(tmp_path, venue, uri)
    try:
        daemon = runs.start(SHORT_S3_RETRIES)
        before = daemon.wait_health(storing(), "storing")
        # An outage of the futures library: every write answered 500, 503 or SlowDown, past the S3 client's own
        # retries.
        s3_proxy.fault(Rule(Fault.ERRORS, ("PUT",), (data + "futures",)))
        outage = daemon.wait_health(lambda h: failing(h, "futures") is not None, "degraded: futures writes failing")
        # Then every options append commits and loses the response of its last write (the version reference), so it
        # fails after those retries although it took effect; every other request meets 500, 503 or SlowDown, which
        # ArcticDB's retries absorb.
        s3_proxy.fault(
            Rule(Fault.DROP_AFTER_FORWARD, ("PUT",), (data + "options", "/vref/")),
            Rule(Fault.FLAKY, (), (data + "options",)),
        )
        lost = daemon.wait_health(lambda h: failing(h, "options") is not None, "degraded: options append lost")
        s3_proxy.clear()
        for answer, library in ((outage, "futures"), (lost, "options")):
            assert answer["status"] == "degraded"
            reason = failing(answer, library)
            assert reason is not None and f"writes to store s3://127.0.0.1:{s3_bucket.name}" in reason, reason
            assert S3_SECRET not in reason
        assert any(code in (failing(outage, "futures") or "") for code in ("500", "503")), outage["reasons"]
        assert "Server returned nothing" in (failing(lost, "options") or ""), lost["reasons"]
        counts = s3_proxy.counts()
        assert min(counts.get(f, 0) for f in (Fault.ERROR_500, Fault.ERROR_503, Fault.SLOW_DOWN)) > 0, counts
        assert counts.get(Fault.DROP_AFTER_FORWARD, 0) >= S3_ATTEMPTS, counts

        daemon.wait_health(storing(after=newest(before), more_than=records(before)), "storing again")
        failures = [e for e in daemon.events() if e["event"] == "writer.flush_failed"]
        assert {e["library"] for e in failures} == {"futures", "options"}, failures
        assert all(s3_bucket.name in e["store"] and S3_SECRET not in e["store"] for e in failures)
        assert all("check the store's endpoint, bucket" in e["action"] for e in failures)
        assert any(e["event"] == "writer.failed_append_had_committed" for e in daemon.events()), "the lost response"
        assert daemon.stop() == 0
    finally:
        runs.close()
    audit(uri, venue)


def test_s3_lease_taken_over_stops_writes_fails_health_and_resumes_once_free(
    tmp_path: Path, venue: VenueThread, s3_bucket: S3Bucket, moto_server: MotoServer
) -> None:
    runs = Daemons(tmp_path, venue, s3_bucket.uri)
    try:
        first = runs.start()
        first.wait_health(storing(), "storing")
        intruder = LeaseHolder("host-b:4242:intruder", 4242, "host-b", time.time(), time.time() + 3600)
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=LEASE_OBJECT, Body=intruder.to_json())
        failed = first.wait_health(lambda h: h["status"] == "failed", "failed: lease taken over")
        [reason, *_] = failed["reasons"]
        assert "taken over by pid 4242 on host host-b" in reason and "Stop the other writer" in reason, reason
        assert "taken over by pid 4242 on host host-b" in event(first, "store.lease_lost")["error"]
        stopped = first.wait_health(lambda h: h["status"] == "failed", "still answering")
        assert first.proc.poll() is None, "the daemon stays up and says why"

        s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=LEASE_OBJECT)  # the other writer stopped
        assert exits_by_itself(first) == 1
        assert "lease" in event(first, "store_fault_cleared")["cleared"]

        second = runs.start()
        second.wait_health(storing(after=newest(stopped)), "storing newer records after the restart")
        assert second.stop() == 0
    finally:
        runs.close()
    audit(s3_bucket.uri, venue)
