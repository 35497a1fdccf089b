"""Validation of OHLCV bars (pure): a bad bar is rejected with a Problem naming its instrument and time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hydra_daemon.ingest import Problem


def bar_faults(frame: pd.DataFrame) -> pd.Series:
    """Per row, "" for a valid bar or a '; '-joined description of every rule it breaks.

    Rules: open, high, low, close are finite and > 0; volume ≥ 0; high ≥ low; open and close lie in [low, high].
    """
    o, h, lo, c = (frame[name].to_numpy(dtype=np.float64) for name in ("open", "high", "low", "close"))
    volume = frame["volume"].to_numpy()
    checks = [
        (~(np.isfinite(o) & (o > 0)), "open is not a positive price"),
        (~(np.isfinite(h) & (h > 0)), "high is not a positive price"),
        (~(np.isfinite(lo) & (lo > 0)), "low is not a positive price"),
        (~(np.isfinite(c) & (c > 0)), "close is not a positive price"),
        (volume < 0, "volume is negative"),
        (~(h >= lo), "high < low"),
        (~((o >= lo) & (o <= h)), "open outside [low, high]"),
        (~((c >= lo) & (c <= h)), "close outside [low, high]"),
    ]
    messages: list[list[str]] = [[] for _ in range(len(frame))]
    for failed, message in checks:
        for position in np.flatnonzero(failed):
            messages[position].append(message)
    return pd.Series(["; ".join(m) for m in messages], index=frame.index, dtype=object)


def validate_bars(frame: pd.DataFrame, schema: str) -> tuple[pd.DataFrame, list[Problem]]:
    """Split a decoded OHLCV frame into valid bars and one Problem per rejected bar."""
    if frame.empty:
        return frame, []
    faults = bar_faults(frame)
    bad = faults.to_numpy() != ""
    if not bad.any():
        return frame, []
    problems = [
        Problem(
            what=f"invalid {schema} bar: {fault} (o={row.open} h={row.high} l={row.low} c={row.close} v={row.volume})",
            where=f"{row.symbol or 'instrument_id=' + str(row.instrument_id)} at {when.isoformat()}",
        )
        for when, fault, row in zip(frame.index[bad], faults[bad], frame[bad].itertuples(index=False), strict=True)
    ]
    return frame[~bad], problems
