"""COT rows through the real store (LMDB in tmp_path): backfill, point-in-time reads, revisions, idempotence."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from structlog.testing import capture_logs

from hydra_daemon.config import CotConfig, MarketConfig
from hydra_daemon.cot.backfill import BackfillResult, backfill_cot, backfill_files
from hydra_daemon.cot.calendar import release_time
from hydra_daemon.cot.fetch import CotFetcher
from hydra_daemon.cot.parse import parse_report
from hydra_daemon.cot.persist import (
    ANY_MARKET,
    QuarantineLog,
    SeenLog,
    Unpublished,
    cot_table,
    record_cycle,
    write_features,
)
from hydra_daemon.cot.validate import validate_rows
from hydra_daemon.sim.http_types import HttpResponse
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore

REAL_2021_ZIP = Path(__file__).resolve().parents[1] / "data" / "fut_disagg_txt_2021.zip"
HE = MarketConfig(name="HE", futures_root="HE", options_root="HE", cftc_code="054642")
ZC = MarketConfig(name="ZC", futures_root="ZC", options_root="OZC", cftc_code="002602")
INGESTED = datetime(2026, 11, 1, tzinfo=UTC)


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


async def _backfill(store: Store, base_url: str, tmp_path: Path, progress: list) -> BackfillResult:
    config = CotConfig(base_url=base_url, timeout_s=5, retries=1)
    async with CotFetcher(config, backoff_base_s=0.01) as fetcher:
        return await backfill_cot(
            store,
            [HE, ZC],
            2021,
            2021,
            fetcher,
            lambda *a: progress.append(a),
            config=config,
            quarantine=QuarantineLog(tmp_path / "q.jsonl"),
            looks=SeenLog(tmp_path / "seen.json"),
            now=lambda: INGESTED,
        )


async def test_backfill_then_point_in_time_around_a_release(
    store: Store, scripted_server: tuple[Any, str], tmp_path: Path
) -> None:
    files, base_url = scripted_server
    files.set(
        "/files/dea/history/fut_disagg_txt_2021.zip", HttpResponse(200, REAL_2021_ZIP.read_bytes(), "application/zip")
    )
    progress: list = []

    result = await _backfill(store, base_url, tmp_path, progress)

    assert progress == [(1, 1, "year 2021")]
    assert result.written["HE"] == result.written["ZC"] >= 10
    table = cot_table(store, "HE")
    history = table.history()
    assert (history["revision"] == 0).all()
    assert set(history["code"]) == {"054642"}
    # as_of 2021-03-09 is released Friday 2021-03-12 15:30 New York = 20:30 UTC (EST).
    assert history.set_index("as_of").loc[_utc("2021-03-09"), "available_at"] == _utc("2021-03-12 20:30")
    thursday = table.point_in_time(datetime(2021, 3, 11, 23, 0, tzinfo=UTC))
    saturday = table.point_in_time(datetime(2021, 3, 13, 12, 0, tzinfo=UTC))
    assert thursday["as_of"].max() == _utc("2021-03-02")
    assert saturday["as_of"].max() == _utc("2021-03-09")
    assert (thursday["available_at"] <= _utc("2021-03-11 23:00")).all()
    mm = FeatureStore(store).read_feature("HE", "cot_managed_money_net", datetime(2021, 3, 11, 23, tzinfo=UTC))
    expected = history.set_index("as_of").loc[_utc("2021-03-02")]
    assert mm["as_of"].max() == _utc("2021-03-02")
    assert mm.set_index("as_of").loc[_utc("2021-03-02"), "value"] == (
        expected["m_money_long_all"] - expected["m_money_short_all"]
    )
    assert result.features > 0
    assert result.snapshot is not None and result.snapshot.startswith("cot-backfill-")
    assert list(store.library("cot").list_snapshots()) == [result.snapshot]
    assert len(store.library("cot").read("HE.cot", as_of=result.snapshot).data) == len(history)


async def test_rerunning_a_backfill_writes_nothing_new(
    store: Store, scripted_server: tuple[Any, str], tmp_path: Path
) -> None:
    files, base_url = scripted_server
    files.set(
        "/files/dea/history/fut_disagg_txt_2021.zip", HttpResponse(200, REAL_2021_ZIP.read_bytes(), "application/zip")
    )
    await _backfill(store, base_url, tmp_path, [])
    before = len(cot_table(store, "HE").history())

    again = await _backfill(store, base_url, tmp_path, [])

    assert again.written == {"HE": 0, "ZC": 0}
    assert again.features == 0
    assert len(cot_table(store, "HE").history()) == before
    assert again.snapshot is None, "a backfill that wrote nothing takes no snapshot"


def test_backfill_plan_uses_the_history_zip_up_to_2016() -> None:
    assert backfill_files(2006, 2018) == [("history", None), ("year", 2017), ("year", 2018)]
    assert backfill_files(2015, 2016) == [("history", None)]
    assert backfill_files(2020, 2021) == [("year", 2020), ("year", 2021)]


def _he_rows(real_2021_text: bytes) -> pd.DataFrame:
    rows = validate_rows(parse_report(real_2021_text, source="2021", codes={"054642"}).rows).good
    return rows


def _revise(rows: pd.DataFrame, as_of: str, delta: int) -> pd.DataFrame:
    """Move `delta` contracts from non-reportable long to managed-money long (identities still hold)."""
    revised = rows.copy()
    week = revised["as_of"] == _utc(as_of)
    for column, sign in (("m_money_long", 1), ("tot_rept_long", 1), ("nonrept_long", -1)):
        for segment in ("all", "old"):
            revised.loc[week, f"{column}_{segment}"] += sign * delta
    assert validate_rows(revised).quarantined.empty
    return revised


def _cycle(store: Store, rows: pd.DataFrame, newest: str, ingested: datetime, **seen: Any) -> pd.DataFrame:
    table = cot_table(store, "HE")
    visible = rows[rows["as_of"] <= _utc(newest)]
    written = record_cycle(
        table,
        visible,
        revealed_at=release_time(date.fromisoformat(newest)),
        ingested_at=ingested,
        revision_weeks=4,
        extra_closures=(),
        **seen,
    )
    write_features(store, "HE", table.history(), ingested_at=ingested)
    return written


def test_revision_is_visible_only_from_its_available_at(store: Store, real_2021_text: bytes) -> None:
    rows = _he_rows(real_2021_text)
    first = _cycle(store, rows, "2021-03-02", datetime(2021, 3, 5, 21, tzinfo=UTC))
    revised = _revise(rows, "2021-03-02", 500)

    second = _cycle(store, revised, "2021-03-09", datetime(2021, 3, 12, 21, tzinfo=UTC))

    assert len(first) == 9 and (first["revision"] == 0).all()
    assert list(zip(second["as_of"], second["revision"], strict=True)) == [
        (_utc("2021-03-02"), 1),
        (_utc("2021-03-09"), 0),
    ]
    assert (second["available_at"] == _utc("2021-03-12 20:30")).all()
    table = cot_table(store, "HE")
    original = rows.set_index("as_of").loc[_utc("2021-03-02"), "m_money_long_all"]
    before = table.point_in_time(datetime(2021, 3, 11, 12, tzinfo=UTC)).set_index("as_of")
    after = table.point_in_time(datetime(2021, 3, 13, 12, tzinfo=UTC)).set_index("as_of")
    assert before.loc[_utc("2021-03-02"), "m_money_long_all"] == original
    assert before.loc[_utc("2021-03-02"), "revision"] == 0
    assert after.loc[_utc("2021-03-02"), "m_money_long_all"] == original + 500
    features = FeatureStore(store)
    mm_before = features.read_feature("HE", "cot_managed_money_net", datetime(2021, 3, 11, 12, tzinfo=UTC))
    mm_after = features.read_feature("HE", "cot_managed_money_net", datetime(2021, 3, 13, 12, tzinfo=UTC))
    delta = (mm_after.set_index("as_of")["value"] - mm_before.set_index("as_of")["value"]).dropna()
    assert delta.to_dict() == {
        _utc(f"2021-{d}"): v
        for d, v in [
            ("01-05", 0),
            ("01-12", 0),
            ("01-19", 0),
            ("01-26", 0),
            ("02-02", 0),
            ("02-09", 0),
            ("02-16", 0),
            ("02-23", 0),
            ("03-02", 500),
        ]
    }


def test_a_revision_making_a_feature_undefined_supersedes_its_old_value(store: Store, real_2021_text: bytes) -> None:
    """Undefined values were dropped before they were written, so the value of the revision before stayed the latest
    one: a reader saw a share of open interest the CFTC had withdrawn."""
    rows = _he_rows(real_2021_text)
    _cycle(store, rows, "2021-03-02", datetime(2021, 3, 5, 21, tzinfo=UTC))
    revised = rows.copy()
    revised.loc[revised["as_of"] == _utc("2021-03-02"), "open_interest_all"] = 0  # validation is not this test's
    _cycle(store, revised, "2021-03-09", datetime(2021, 3, 12, 21, tzinfo=UTC))

    features = FeatureStore(store)
    before = features.read_feature("HE", "cot_managed_money_net_pct_oi", datetime(2021, 3, 11, 12, tzinfo=UTC))
    after = features.read_feature("HE", "cot_managed_money_net_pct_oi", datetime(2021, 3, 13, 12, tzinfo=UTC))
    assert before.set_index("as_of")["value"].notna().all()
    assert pd.isna(after.set_index("as_of").loc[_utc("2021-03-02"), "value"])
    assert after.set_index("as_of").drop(index=_utc("2021-03-02"))["value"].notna().all()

    again = _cycle(store, revised, "2021-03-09", datetime(2021, 3, 12, 22, tzinfo=UTC))
    assert again.empty, "an undefined value unchanged is not a new revision"


def test_rerunning_a_cycle_writes_nothing_new(store: Store, real_2021_text: bytes) -> None:
    rows = _he_rows(real_2021_text)
    _cycle(store, rows, "2021-03-09", datetime(2021, 3, 12, 21, tzinfo=UTC))
    versions = len(cot_table(store, "HE").history())

    again = _cycle(store, rows, "2021-03-09", datetime(2021, 3, 12, 22, tzinfo=UTC))

    assert again.empty
    assert len(cot_table(store, "HE").history()) == versions


def test_changes_older_than_the_revision_window_are_ignored(store: Store, real_2021_text: bytes) -> None:
    rows = _he_rows(real_2021_text)
    _cycle(store, rows, "2021-03-09", datetime(2021, 3, 12, 21, tzinfo=UTC))

    written = _cycle(store, _revise(rows, "2021-01-12", 100), "2021-03-16", datetime(2021, 3, 19, 21, tzinfo=UTC))

    assert list(written["as_of"]) == [_utc("2021-03-16")]


def test_a_week_first_seen_after_a_newer_one_is_available_only_from_the_cycle_that_revealed_it(
    store: Store, real_2021_text: bytes
) -> None:
    """A week missing from the cycle that stored the next one (quarantined at its release for breaking the
    identities, then corrected; or published late) must not become visible from its scheduled release: its values
    were not public then."""
    rows = _he_rows(real_2021_text)
    missing = _utc("2021-02-23")
    _cycle(store, rows[rows["as_of"] != missing], "2021-03-02", datetime(2021, 3, 5, 21, tzinfo=UTC))

    written = _cycle(store, rows, "2021-03-09", datetime(2021, 3, 12, 21, tzinfo=UTC)).set_index("as_of")

    assert written.loc[missing, "revision"] == 0
    assert written.loc[missing, "available_at"] == _utc("2021-03-12 20:30")  # not its scheduled 2021-02-26
    table = cot_table(store, "HE")
    assert missing not in set(table.point_in_time(datetime(2021, 3, 8, tzinfo=UTC))["as_of"])
    assert missing in set(table.point_in_time(datetime(2021, 3, 13, tzinfo=UTC))["as_of"])


def test_a_newest_week_seen_missing_after_its_release_is_available_only_from_the_cycle_that_revealed_it(
    store: Store, real_2021_text: bytes
) -> None:
    """The week was the newest in the file at its release, but this market's row was quarantined (or absent): the
    cycle stored the weeks before it. Seen a week later, it is newer than every stored week, yet it was not public
    at its scheduled release."""
    rows = _he_rows(real_2021_text)
    week = _utc("2021-03-02")  # released Friday 2021-03-05 20:30 UTC
    first_look = datetime(2021, 3, 5, 21, tzinfo=UTC)
    _cycle(store, rows[rows["as_of"] != week], "2021-03-02", first_look)
    seen = Unpublished(date(2021, 2, 23), first_look)  # what that cycle's clean HE rows held

    written = _cycle(store, rows, "2021-03-09", datetime(2021, 3, 12, 21, tzinfo=UTC), unpublished=[seen])

    at = written.set_index("as_of")["available_at"]
    assert at[week] == _utc("2021-03-12 20:30")  # not its scheduled 2021-03-05 20:30
    assert at[_utc("2021-03-09")] == _utc("2021-03-12 20:30")  # the new week, on time
    assert week not in set(cot_table(store, "HE").point_in_time(datetime(2021, 3, 8, tzinfo=UTC))["as_of"])


def test_a_week_quarantined_after_its_release_is_available_only_from_the_cycle_that_revealed_it(
    store: Store, real_2021_text: bytes, tmp_path: Path
) -> None:
    """The quarantine log is the durable memory of a bad row: after a restart, a cycle that sees the corrected
    week as the newest must still not date it back to its release."""
    rows = _he_rows(real_2021_text)
    week = _utc("2021-03-02")
    _cycle(store, rows[rows["as_of"] < week], "2021-02-23", datetime(2021, 2, 26, 21, tzinfo=UTC))
    bad = rows[rows["as_of"] == week].astype({"m_money_long_all": "float64"})
    bad["m_money_long_all"] += 1
    log = QuarantineLog(tmp_path / "q.jsonl")
    log.add(validate_rows(bad).quarantined, source="u", ingested_at=datetime(2021, 3, 5, 21, tzinfo=UTC))
    log.add(validate_rows(bad).quarantined, source="u", ingested_at=datetime(2021, 3, 6, tzinfo=UTC))  # known

    withheld = QuarantineLog(log.path).first_seen("054642")
    seen_at = datetime(2021, 3, 9, 9, tzinfo=UTC)  # a mid-week republication, seen at start-up
    written = record_cycle(
        cot_table(store, "HE"),
        rows[rows["as_of"] <= week],
        revealed_at=seen_at,  # `revealed_at_for`: the week's release, or when seen if later
        ingested_at=seen_at,
        revision_weeks=4,
        extra_closures=(),
        withheld=withheld,
    )

    assert withheld == {week: datetime(2021, 3, 5, 21, tzinfo=UTC)}
    assert QuarantineLog(log.path).first_seen("057642") == {}
    assert list(written["as_of"]) == [week]
    assert written["available_at"].item() == _utc("2021-03-09 09:00")  # not its scheduled 2021-03-05 20:30


def test_seen_log_keeps_the_latest_observation_per_market_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cot_seen.json"
    first = Unpublished(date(2021, 3, 2), datetime(2021, 3, 5, 21, tzinfo=UTC))
    later = Unpublished(date(2021, 3, 9), datetime(2021, 3, 12, 21, tzinfo=UTC))
    log = SeenLog(path)
    log.put("HE", first)
    log.put(ANY_MARKET, Unpublished(None, first.seen_at))
    log.put("HE", later)

    again = SeenLog(path)
    assert (again.get("HE"), again.get(ANY_MARKET), again.get("LE")) == (later, Unpublished(None, first.seen_at), None)
    assert not path.with_name("cot_seen.json.tmp").exists()


@pytest.mark.parametrize("text", ["{", "[]", '{"HE": {"newest": "2021-13-01", "seen_at": "x"}}', '{"HE": 3}'])
def test_an_unreadable_seen_log_is_one_line_and_an_empty_start(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cot_seen.json"
    path.write_text(text)
    with capture_logs() as events:
        assert SeenLog(path).get("HE") is None
    assert [e["event"] for e in events] == ["cot_seen_unreadable"]
    assert events[0]["path"] == str(path)


QUARANTINE_ON_A_FULL_DISK = """
import resource, sys
from datetime import UTC, datetime
from pathlib import Path
import pandas as pd
from hydra_daemon.cot.parse import POSITION_COLUMNS
from hydra_daemon.cot.persist import QuarantineLog

path = Path(sys.argv[1])
weeks = pd.date_range("2021-01-05", periods=20, freq="7D", tz="UTC")
rows = pd.DataFrame({"code": "054642", "as_of": weeks, "reason": "tot_rept_long_all != sum"})
rows = rows.assign(**{column: range(123_456_789, 123_456_809) for column in POSITION_COLUMNS})
log = QuarantineLog(path)
log.add(rows.head(1), source="f", ingested_at=datetime(2021, 3, 20, tzinfo=UTC))
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 1000, resource.RLIM_INFINITY))  # a full disk
try:
    log.add(rows, source="f", ingested_at=datetime(2021, 3, 20, tzinfo=UTC))
except OSError as error:
    print("result: refused:", error.strerror)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space freed
print("result:", log.add(rows, source="f", ingested_at=datetime(2021, 3, 27, tzinfo=UTC)))  # the next cycle
"""


def test_a_quarantine_append_cut_short_by_a_full_disk_leaves_no_torn_line(tmp_path: Path) -> None:
    """Found by a review helper: the torn line made every later cycle (and backfill) fail to read the file."""
    path = tmp_path / "quarantine" / "cot.jsonl"
    root = Path(__file__).parents[2]
    run = subprocess.run(
        [sys.executable, "-c", QUARANTINE_ON_A_FULL_DISK, str(path)], capture_output=True, text=True, cwd=root
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = [line for line in run.stdout.splitlines() if line.startswith("result: ")]
    assert results == ["result: refused: File too large", "result: 19"]
    seen = QuarantineLog(path).first_seen("054642")
    assert len(seen) == 20 and len(QuarantineLog(path).entries()) == 20


def test_an_unreadable_quarantine_line_is_skipped_with_one_warning(tmp_path: Path, real_2021_text: bytes) -> None:
    path = tmp_path / "cot.jsonl"
    rows = _he_rows(real_2021_text).head(1).astype({"m_money_long_all": "float64"})
    rows.loc[rows.index[0], "m_money_long_all"] += 1
    QuarantineLog(path).add(validate_rows(rows).quarantined, source="u", ingested_at=INGESTED)
    with path.open("a") as handle:
        handle.write('{"code": "054642", "as_of": "2021-0')  # torn by a crash under an earlier version
    log = QuarantineLog(path)
    with capture_logs() as events:
        assert len(log.first_seen("054642")) == 1
        assert len(log.first_seen("054642")) == 1
    assert [(e["event"], e["line"]) for e in events] == [("cot_quarantine_line_unreadable", 2)]


def test_quarantine_log_writes_each_bad_row_once(tmp_path: Path, real_2021_text: bytes) -> None:
    rows = _he_rows(real_2021_text).head(2).astype({"m_money_long_all": "float64"})
    rows.loc[0, "m_money_long_all"] += 1
    checked = validate_rows(rows)
    log = QuarantineLog(tmp_path / "quarantine" / "cot.jsonl")

    first = log.add(checked.quarantined, source="u", ingested_at=INGESTED)
    second = QuarantineLog(log.path).add(checked.quarantined, source="u", ingested_at=INGESTED)

    assert (first, second) == (1, 0)
    [entry] = log.entries()
    assert entry["code"] == "054642" and entry["as_of"] == "2021-01-05"
    assert "tot_rept_long_all != sum of reportable long positions" in str(entry["reason"])
