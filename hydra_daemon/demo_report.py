"""The demo's closing report: what the store holds, exactly-once against the venue's ground truth, point-in-time
COT reads around a release and a correction, an option chain with implied vols, features, the daemon's lake."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import polars as pl
from rich.console import Console
from rich.table import Table

from hydra_daemon.config import Config
from hydra_daemon.cot.calendar import release_time
from hydra_daemon.reader import Reader
from hydra_daemon.sim.audit import AuditLine, audit_store
from hydra_daemon.sim.venue import VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.lake import MANIFEST, read_manifest
from hydra_daemon.store.symbols import LIBRARIES

REPORT_MARKET = "HE"


def print_report(console: Console, config: Config, venue: VenueThread) -> None:
    """Print every section of the report from the store the demo daemon wrote."""
    with Store.open(config.storage.arctic_uri, writer=False) as store, Reader(config.storage.arctic_uri) as reader:
        _symbols(console, store)
        _audit(console, audit_store(store, venue.venue.model, venue.venue.config.record_path, config.markets))
        _lake(console, config)
        _cot(console, reader)
        _chain(console, reader, venue)
        _features(console, reader)


def _symbols(console: Console, store: Store) -> None:
    table = Table(title="ArcticDB symbols written")
    for column in ("library", "symbol", "rows", "versions"):
        table.add_column(column)
    for name in LIBRARIES:
        if not store.has_library(name):
            continue
        library = store.library(name)
        for symbol in sorted(library.list_symbols()):
            rows = library.get_description(symbol).row_count
            table.add_row(name, symbol, str(rows), str(len(library.list_versions(symbol))))
    console.print(table)


def _audit(console: Console, lines: list[AuditLine]) -> None:
    table = Table(title="Exactly-once: store vs the venue's recorded ground truth (up to each symbol's watermark)")
    for column in ("symbol", "stored", "ground truth", "missing", "duplicated"):
        table.add_column(column)
    for line in lines:
        table.add_row(line.symbol, str(line.stored), str(line.truth), str(line.missing), str(line.duplicated))
    console.print(table)


def _cot(console: Console, reader: Reader) -> None:
    try:
        history = reader.cot_history(REPORT_MARKET)
    except LookupError:  # no COT cycle stored yet
        history = pd.DataFrame()
    if history.empty:
        console.print("[yellow]COT: nothing captured (the run was too short to reach a release)[/]")
        return
    newest = history["as_of"].max()
    revised = history[history["revision"] > 0]
    moments = _cot_moments(newest.date(), revised)
    table = Table(title=f"COT point-in-time reads, {REPORT_MARKET} (cot library)")
    for column in ("read as of", "newest as_of visible", "revision", "managed money long (old crop)"):
        table.add_column(column)
    for label, at in moments:
        rows = reader.cot(REPORT_MARKET, at)
        if rows.empty:
            table.add_row(label, "-", "-", "-")
            continue
        target = rows.iloc[-1] if revised.empty else _row_for(rows, revised["as_of"].iloc[0])
        table.add_row(
            label,
            str(rows["as_of"].max().date()),
            str(int(target["revision"])),
            f"{int(target['m_money_long_old'])} (as_of {target['as_of'].date()})",
        )
    console.print(table)


def _cot_moments(newest: date, revised: pd.DataFrame) -> list[tuple[str, datetime]]:
    released = release_time(newest)
    moments = [
        (f"{(released - timedelta(days=1)):%a %Y-%m-%d} (before release)", released - timedelta(days=1)),
        (f"{(released + timedelta(days=1)):%a %Y-%m-%d} (after release)", released + timedelta(days=1)),
    ]
    if not revised.empty:
        available = revised["available_at"].iloc[0].to_pydatetime()
        moments.insert(
            1,
            (
                f"{available - timedelta(minutes=1):%a %H:%M} UTC, just before the correction",
                available - timedelta(minutes=1),
            ),
        )
        moments.insert(2, (f"{available:%a %H:%M} UTC, correction available", available))
    return sorted(moments, key=lambda item: item[1])


def _row_for(rows: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    match = rows[rows["as_of"] == as_of]
    return match.iloc[-1] if not match.empty else rows.iloc[-1]


def _chain(console: Console, reader: Reader, venue: VenueThread) -> None:
    try:
        chain = reader.options_chain(REPORT_MARKET, datetime.now(UTC) + timedelta(days=3650))
    except LookupError:  # no chain snapshot stored yet
        chain = pd.DataFrame()
    if chain.empty:
        console.print("[yellow]Options: no chain snapshot yet[/]")
        return
    at = chain.index.max()
    near = chain.dropna(subset=["implied_vol"]).copy()
    near["distance"] = (near["strike"] - near["underlying_price"]).abs()
    near = near.sort_values(["expiration", "distance"]).groupby("expiration").head(2).head(6)
    table = Table(title=f"Option chain {REPORT_MARKET} at {at:%Y-%m-%d %H:%M} UTC (near the money)")
    for column in ("symbol", "bid", "ask", "OI", "future", "implied vol", "venue's input vol"):
        table.add_column(column)
    for _, row in near.iterrows():
        truth = venue.option_truth(int(row["instrument_id"]), int(row["quote_time"].value))
        table.add_row(
            row["raw_symbol"],
            f"{row['bid']:.3f}",
            f"{row['ask']:.3f}",
            f"{row['open_interest']:.0f}",
            f"{row['underlying_price']:.3f}",
            f"{row['implied_vol']:.6f}",
            "-" if truth is None else f"{truth.vol:.6f}",
        )
    console.print(table)


def _features(console: Console, reader: Reader) -> None:
    far = datetime.now(UTC) + timedelta(days=3650)
    table = Table(title=f"Features, {REPORT_MARKET} (features library, latest point-in-time value)")
    for column in ("feature", "as_of", "value"):
        table.add_column(column)
    for name in ("atm_iv", "put_call_oi_ratio", "liquid_strike_count", "cot_managed_money_net_pct_oi"):
        try:
            frame = reader.feature(REPORT_MARKET, name, far)
        except LookupError:
            continue
        if frame.empty:
            continue
        row = frame.sort_values("as_of").iloc[-1]
        table.add_row(name, f"{row['as_of']:%Y-%m-%d %H:%M}", f"{row['value']:.4f}")
    console.print(table)


def _lake(console: Console, config: Config) -> None:
    """The lake the daemon exported by itself (every dataset's manifest), and one dataset read back with polars."""
    table = Table(title=f"Parquet lake the daemon exported ({config.storage.lake_dir})")
    for column in ("dataset", "partitions", "rows", "last day"):
        table.add_column(column)
    for manifest_path in sorted(config.storage.lake_dir.glob(f"*/*/{MANIFEST}")):
        manifest = read_manifest(manifest_path.parent)
        if manifest is None or not manifest.partitions:
            continue
        name = f"{manifest.library}/{manifest.symbol}"
        table.add_row(name, str(len(manifest.partitions)), str(manifest.rows), max(manifest.partitions).isoformat())
    console.print(table)
    root = config.storage.lake_dir / "futures" / f"{REPORT_MARKET}.ohlcv-1d"
    if (root / MANIFEST).exists():
        rows = pl.scan_parquet(root / "**/*.parquet", hive_partitioning=True).select(pl.len()).collect().item()
        console.print(f"polars.scan_parquet reads {rows} rows of {root.name} from the lake")
