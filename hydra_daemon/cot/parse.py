"""Parse a CFTC disaggregated futures-only text file (`f_year.txt`, `F_Disagg06_16.txt`) into typed rows.

Pure: bytes in, a pandas frame out. Codes stay strings (leading zeros, alphanumeric codes), padding is trimmed,
`.` means missing, `as_of` comes from `As_of_Date_In_Form_YYMMDD` (never assumed to be a Tuesday), and only
futures-only rows (`FutOnly_or_Combined == "FutOnly"`) of the requested contract codes are kept.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hydra_daemon.ingest import Problem

SEGMENTS: tuple[str, ...] = ("all", "old", "other")

# Our column stem -> the CFTC column stem (the segment suffix `_All`/`_Old`/`_Other` is appended to both).
_POSITION_STEMS: tuple[tuple[str, str], ...] = (
    ("open_interest", "Open_Interest"),
    ("prod_merc_long", "Prod_Merc_Positions_Long"),
    ("prod_merc_short", "Prod_Merc_Positions_Short"),
    ("swap_long", "Swap_Positions_Long"),
    ("swap_short", "Swap__Positions_Short"),
    ("swap_spread", "Swap__Positions_Spread"),
    ("m_money_long", "M_Money_Positions_Long"),
    ("m_money_short", "M_Money_Positions_Short"),
    ("m_money_spread", "M_Money_Positions_Spread"),
    ("other_rept_long", "Other_Rept_Positions_Long"),
    ("other_rept_short", "Other_Rept_Positions_Short"),
    ("other_rept_spread", "Other_Rept_Positions_Spread"),
    ("tot_rept_long", "Tot_Rept_Positions_Long"),
    ("tot_rept_short", "Tot_Rept_Positions_Short"),
    ("nonrept_long", "NonRept_Positions_Long"),
    ("nonrept_short", "NonRept_Positions_Short"),
)
POSITION_STEMS: tuple[str, ...] = tuple(ours for ours, _ in _POSITION_STEMS)


def position_column(stem: str, segment: str) -> str:
    """Our name for one position column, e.g. `position_column("m_money_long", "all") == "m_money_long_all"`."""
    return f"{stem}_{segment}"


POSITION_COLUMNS: tuple[str, ...] = tuple(position_column(s, seg) for seg in SEGMENTS for s in POSITION_STEMS)
SOURCE_POSITION_COLUMNS: dict[str, str] = {
    position_column(ours, seg): f"{theirs}_{seg.capitalize()}" for seg in SEGMENTS for ours, theirs in _POSITION_STEMS
}

CODE = "CFTC_Contract_Market_Code"
AS_OF = "As_of_Date_In_Form_YYMMDD"
MARKET_NAME = "Market_and_Exchange_Names"
FUT_ONLY = "FutOnly_or_Combined"
REQUIRED_SOURCE_COLUMNS: tuple[str, ...] = (MARKET_NAME, AS_OF, CODE, FUT_ONLY, *SOURCE_POSITION_COLUMNS.values())

# Output columns, in order: `code`, `market_name`, `as_of` (UTC midnight), then POSITION_COLUMNS as float64
# (NaN where the file had `.` or nothing; validation turns complete rows into int64).
OUTPUT_COLUMNS: tuple[str, ...] = ("code", "market_name", "as_of", *POSITION_COLUMNS)


class CotParseError(ValueError):
    """The file as a whole cannot be read (not CSV, required columns missing); names the source."""


@dataclass(frozen=True)
class ParsedReport:
    """Typed futures-only rows of one file plus the rows that could not be read (bad date, non-numeric value)."""

    rows: pd.DataFrame
    problems: tuple[Problem, ...]


def parse_report(data: bytes, *, source: str, codes: Collection[str] | None = None) -> ParsedReport:
    """Parse one disaggregated futures-only file; keep rows of `codes` (all codes when None)."""
    raw = _read_strings(data, source)
    raw = raw[raw[FUT_ONLY] == "FutOnly"]
    if codes is not None:
        raw = raw[raw[CODE].isin(set(codes))]
    as_of = _parse_as_of(raw[AS_OF])
    values = {ours: _parse_numbers(raw[theirs]) for ours, theirs in SOURCE_POSITION_COLUMNS.items()}
    frame = pd.DataFrame(
        {
            "code": raw[CODE].to_numpy(dtype=object),
            "market_name": raw[MARKET_NAME].to_numpy(dtype=object),
            "as_of": as_of.to_numpy(),
            **{k: v.to_numpy() for k, v in values.items()},
        },
        columns=list(OUTPUT_COLUMNS),
    )
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
    bad = _unreadable(raw, as_of, values)
    problems = tuple(Problem(what=bad[i], where=_where(raw, i)) for i in sorted(bad))
    keep = np.ones(len(frame), dtype=bool)
    keep[sorted(bad)] = False
    rows = frame[keep].sort_values(["code", "as_of"], kind="stable").reset_index(drop=True)
    return ParsedReport(rows=rows, problems=problems)


def _read_strings(data: bytes, source: str) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CotParseError(f"{source}: not a readable COT CSV file: {exc}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_SOURCE_COLUMNS if c not in raw.columns]
    if missing:
        raise CotParseError(
            f"{source}: not a disaggregated futures-only COT file: missing column(s) {', '.join(missing[:5])}"
        )
    stripped = raw[list(REQUIRED_SOURCE_COLUMNS)].apply(lambda col: col.str.strip())
    return stripped.reset_index(drop=True)


def _parse_as_of(column: pd.Series) -> pd.Series:
    """YYMMDD (a leading zero may have been lost) -> datetime64; unreadable -> NaT."""
    return pd.to_datetime(column.str.zfill(6), format="%y%m%d", errors="coerce")


def _parse_numbers(column: pd.Series) -> pd.Series:
    """Numbers with optional thousands separators; `.` or empty -> NaN; anything else unreadable -> marked by _bad."""
    cleaned = column.str.replace(",", "", regex=False)
    return pd.to_numeric(cleaned.where(~cleaned.isin([".", ""])), errors="coerce").astype("float64")


def _unreadable(raw: pd.DataFrame, as_of: pd.Series, values: dict[str, pd.Series]) -> dict[int, str]:
    """Row position -> reason, for rows with an unreadable date, code or number (missing `.` is not unreadable)."""
    bad: dict[int, str] = {}
    for i in np.flatnonzero(as_of.isna().to_numpy()):
        bad[int(i)] = f"unreadable {AS_OF} {raw[AS_OF].iloc[i]!r}"
    for i in np.flatnonzero((raw[CODE] == "").to_numpy()):
        bad.setdefault(int(i), f"empty {CODE}")
    for ours, parsed in values.items():
        theirs = SOURCE_POSITION_COLUMNS[ours]
        text = raw[theirs]
        unreadable = parsed.isna().to_numpy() & ~text.isin([".", ""]).to_numpy()
        for i in np.flatnonzero(unreadable):
            bad.setdefault(int(i), f"unreadable {theirs} {text.iloc[i]!r}")
    return bad


def _where(raw: pd.DataFrame, i: int) -> str:
    return f"code {raw[CODE].iloc[i] or '?'} as_of {raw[AS_OF].iloc[i] or '?'}"
