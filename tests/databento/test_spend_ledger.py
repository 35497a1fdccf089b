"""The Historical spend ledger across processes and failed downloads: the daily limit holds when the daemon and a
backfill share the state directory, and an error answer (no data, not billed) does not use up the budget (found by a
review helper)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from hydra_daemon.databento.cost_guard import CostGuard, CostRefused, HistoricalRequest, SpendLedger
from hydra_daemon.databento.historical_client import HistoricalError, historical_client
from hydra_daemon.databento.historical_fill import HistoricalSource
from hydra_daemon.ingest import PipelineStats
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from tests.helpers import fast_config, wait_until

REPO = Path(__file__).resolve().parents[2]
DATASET = "GLBX.MDP3"
NS_PER_S = 1_000_000_000

CHILD = r"""
import json, sys, time
from pathlib import Path
from hydra_daemon.databento.cost_guard import CostGuard, CostRefused, HistoricalRequest
from hydra_daemon.databento.historical_client import historical_client
url, key, state, limit, start, end, go = sys.argv[1:]
client = historical_client(key, url)
guard = CostGuard(float(limit), Path(state))
request = HistoricalRequest("GLBX.MDP3", "HE.FUT", "ohlcv-1m", int(start), int(end))
while time.time() < float(go):
    time.sleep(0.001)
allowed = errors = 0
for _ in range(40):
    try:
        guard.authorize(client, request)
        allowed += 1
    except CostRefused:
        pass
    except Exception as exc:
        errors += 1
        print("ERROR", type(exc).__name__, exc, file=sys.stderr)
print(json.dumps({"allowed": allowed, "errors": errors}))
"""


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return fast_config(seed=4)


def test_two_processes_sharing_the_spend_file_never_pass_the_daily_limit(venue: VenueThread, tmp_path: Path) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    wait_until(lambda: venue.call(lambda v: v.model.now_ns) > start + 600 * NS_PER_S, "10 sim minutes")
    end = venue.call(lambda v: v.model.now_ns) - 120 * NS_PER_S
    request = HistoricalRequest("GLBX.MDP3", "HE.FUT", "ohlcv-1m", start, end)
    price = CostGuard(1e9).quote(historical_client(venue.info.api_key, venue.info.historical_url), request).cost_usd
    assert price > 0
    budget_requests = 30  # the daily limit pays for 30 of these requests, whoever makes them
    limit = price * budget_requests + price / 2
    go = time.time() + 4.0
    argv = [venue.info.historical_url, venue.info.api_key, str(tmp_path), repr(limit), str(start), str(end), str(go)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append((json.loads(out.strip().splitlines()[-1]), err))
    allowed = sum(r["allowed"] for r, _ in results)
    errors = [line for _, err in results for line in err.splitlines() if line.startswith("ERROR")]
    ledger = json.loads((tmp_path / "historical_spend.json").read_text())
    problems = []
    if errors:
        problems.append(f"charging the shared ledger crashed {len(errors)} time(s): {errors[0]}")
    if allowed > budget_requests:
        problems.append(f"{allowed} requests of ${price:.6f} authorized against a daily limit of ${limit:.6f}")
    if ledger["spent_usd"] != pytest.approx(allowed * price):
        problems.append(f"the ledger says ${ledger['spent_usd']:.6f} for {allowed} authorized (${allowed * price:.6f})")
    assert not problems, problems


def test_requests_answered_with_an_error_do_not_use_up_the_daily_budget(venue: VenueThread, tmp_path: Path) -> None:
    start = venue.call(lambda v: v.model.start_ns)
    wait_until(lambda: venue.call(lambda v: v.model.now_ns) > start + 600 * NS_PER_S, "10 sim minutes")
    request = HistoricalRequest(
        DATASET, "HE.FUT", "ohlcv-1m", start, venue.call(lambda v: v.model.now_ns) - 120 * NS_PER_S
    )
    client = historical_client(venue.info.api_key, venue.info.historical_url)
    price = CostGuard(1e9).quote(client, request).cost_usd
    assert price > 0
    stats = PipelineStats()
    guard = CostGuard(price * 2.5, tmp_path, stats)  # two such requests a day
    authorize = guard.authorize

    def authorize_then_venue_fails(client: object, req: HistoricalRequest):  # the outage hits the download itself
        quote = authorize(client, req)
        venue.fault("http_fail", "503:1")
        return quote

    guard.authorize = authorize_then_venue_fails  # type: ignore[method-assign]
    source = HistoricalSource(DATASET, ApiKey(venue.info.api_key), guard, venue.info.historical_url)
    for _ in range(2):  # e.g. the daemon's gap fill, retried after a reconnect, during a Historical outage
        with pytest.raises(HistoricalError, match="HTTP 503"):
            source.fetch(client, request.symbols, request.schema, request.start_ns, request.end_ns)
    guard.authorize = authorize  # type: ignore[method-assign]  # the outage is over
    try:
        records = source.fetch(client, request.symbols, request.schema, request.start_ns, request.end_ns)
    except CostRefused as refused:
        spent = json.loads((tmp_path / "historical_spend.json").read_text())["spent_usd"]
        pytest.fail(f"refused after two 503 answers that delivered no data: ledger says ${spent:.6f} spent ({refused})")
    assert records


@pytest.mark.parametrize(
    "damage",
    [
        b"\x00" * 8,  # a block of zeros (power loss on a filesystem without data journaling)
        b'{"day": "TODAY", "spent_',  # cut short
        b'{"day": "TODAY", "spent_usd": NaN}',  # every later check would pass
        b'{"day": "TODAY", "spent_usd": -5.0}',  # more budget
        b"[]",
    ],
    ids=["zeros", "truncated", "nan", "negative", "not-an-object"],
)
def test_an_unreadable_spend_file_refuses_every_request_naming_it(tmp_path: Path, damage: bytes) -> None:
    today = datetime.now(UTC).date()
    ledger = SpendLedger(tmp_path / "historical_spend.json")
    ledger.path.write_bytes(damage.replace(b"TODAY", today.isoformat().encode()))
    with pytest.raises(CostRefused, match=r"historical_spend\.json cannot be read"):
        ledger.charge(today, 0.01, lambda spent: None)
    ledger.path.unlink()  # the operator removed it (after checking Databento's usage page)
    assert ledger.charge(today, 0.01, lambda spent: None) == pytest.approx(0.01)


def test_a_ledger_write_the_disk_refuses_leaves_no_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk failed each charge, and each attempt (a pipeline restarting with backoff) left its staging file
    in the state directory (found by a review helper)."""
    ledger = SpendLedger(tmp_path / "historical_spend.json")
    ledger.charge(date(2026, 11, 2), 1.0, lambda spent: None)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    for _ in range(3):
        with pytest.raises(OSError, match="No space left"):
            ledger.charge(date(2026, 11, 2), 1.0, lambda spent: None)
    monkeypatch.undo()
    assert ledger.spent_today(date(2026, 11, 2)) == 1.0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
