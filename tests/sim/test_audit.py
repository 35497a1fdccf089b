"""The exactly-once audit (store vs the venue's recorded ground truth) finds missing and duplicated records."""

from __future__ import annotations

from pathlib import Path

import databento as db
import pandas as pd

from hydra_daemon.config import MarketConfig
from hydra_daemon.sim.audit import AuditLine, audit_store, instrument_ids, truth_frame
from hydra_daemon.sim.market import MarketModel
from hydra_daemon.sim.venue import VenueThread
from hydra_daemon.store.arctic import Store
from tests.helpers import fast_config, wait_until

HE = MarketConfig(name="HE", futures_root="HE", options_root="HE", cftc_code="054642")
BAR_COLUMNS = ["instrument_id", "open", "high", "low", "close", "volume"]


def _recorded_bars(tmp_path: Path) -> tuple[MarketModel, Path, pd.DataFrame]:
    """Run a recording venue until it has emitted 60 minute bars; its model, truth file and futures minute bars."""
    path = tmp_path / "truth.dbn"
    with VenueThread(fast_config(seed=12, record_path=path)) as venue:
        wait_until(lambda: venue.call(lambda v: v.tape.end("ohlcv-1m")) >= 60, "60 minute bars")
        model = venue.venue.model
    bars = truth_frame(db.DBNStore.from_file(path), "ohlcv-1m", instrument_ids(model, HE, frozenset("F")))
    stored = bars[BAR_COLUMNS].copy()  # as the daemon stores them: float prices, UTC index
    for column in ("open", "high", "low", "close"):
        stored[column] = stored[column] / 1e9
    return model, path, stored


def test_audit_counts_missing_and_duplicated_records(store: Store, tmp_path: Path) -> None:
    model, path, bars = _recorded_bars(tmp_path)
    assert len(bars) >= 8
    library = store.library("futures")
    library.write("HE.ohlcv-1m", bars)
    assert audit_store(store, model, path, [HE]) == [AuditLine("futures/HE.ohlcv-1m", len(bars), len(bars), 0, 0)]

    damaged = pd.concat([bars.iloc[:3], bars.iloc[4:], bars.iloc[[0]]]).sort_index()  # row 3 lost, row 0 twice
    library.write("HE.ohlcv-1m", damaged)
    [line] = audit_store(store, model, path, [HE])
    assert (line.missing, line.duplicated) == (1, 1)

    repriced = bars.copy()
    repriced.iloc[5, repriced.columns.get_loc("close")] += 0.025  # one bar stored with another value
    library.write("HE.ohlcv-1m", repriced)
    [line] = audit_store(store, model, path, [HE])
    assert (line.missing, line.duplicated) == (1, 1)
