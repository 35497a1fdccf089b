"""Parse a CFTC disaggregated futures-only text file (`f_year.txt`, `F_Disagg06_16.txt`) into typed rows.

Pure: bytes in, a pandas frame out. Codes stay strings (leading zeros, alphanumeric codes), padding is trimmed,
`.` means missing, `as_of` comes from `As_of_Date_In_Form_YYMMDD` (never assumed to be a Tuesday), and only
futures-only rows (`FutOnly_or_Combined == "FutOnly"`) of the requested contract codes are kept.

Positions are exact integers: digits with optional thousands separators, parsed without a float round-trip (values
above 2**53 stay exact); a fraction, an exponent or a value outside int64 makes the row unreadable, never rounded or
wrapped. Whatever the bytes, the result is a `ParsedReport` or a `CotParseError`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hydra_daemon.errors import UserError
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

# Output columns, in order: `code`, `market_name`, `as_of` (UTC midnight), then POSITION_COLUMNS as nullable Int64
# (<NA> where the file had `.` or nothing; validation turns complete rows into int64).
OUTPUT_COLUMNS: tuple[str, ...] = ("code", "market_name", "as_of", *POSITION_COLUMNS)


_INTEGER = re.compile(r"-?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)")
_INT64_DIGITS = 18
"""Up to 18 digits always fit int64: those are converted vectorised; longer ones are checked one by one."""
_SHOWN_CHARS = 40


class CotParseError(UserError, ValueError):
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
    parsed, unreadable = _parse_numbers(raw[list(SOURCE_POSITION_COLUMNS.values())].to_numpy(dtype=object))
    values = dict(zip(SOURCE_POSITION_COLUMNS, parsed, strict=True))
    frame = pd.DataFrame(
        {
            "code": raw[CODE].to_numpy(dtype=object),
            "market_name": raw[MARKET_NAME].to_numpy(dtype=object),
            "as_of": as_of.to_numpy(),
            **values,
        },
        columns=list(OUTPUT_COLUMNS),
    )
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
    bad = _unreadable(raw, as_of, {ours: unreadable[:, j] for j, ours in enumerate(SOURCE_POSITION_COLUMNS)})
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
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError, OverflowError) as exc:
        raise CotParseError(f"{source}: not a readable COT CSV file: {_shown(str(exc))}") from None
    header = [str(c).strip() for c in raw.iloc[0]] if len(raw) else []
    missing = [c for c in REQUIRED_SOURCE_COLUMNS if c not in header]
    if missing:
        raise CotParseError(
            f"{source}: not a disaggregated futures-only COT file: missing column(s) {', '.join(missing[:5])}"
        )
    twice = sorted({c for c in REQUIRED_SOURCE_COLUMNS if header.count(c) > 1})
    if twice:
        raise CotParseError(f"{source}: column(s) {', '.join(twice[:5])} appear more than once in the header")
    block = raw.iloc[1:, [header.index(c) for c in REQUIRED_SOURCE_COLUMNS]].to_numpy(dtype=object)
    stripped = pd.Series(block.ravel(), dtype=object).fillna("").str.strip().to_numpy(dtype=object)
    return pd.DataFrame(stripped.reshape(block.shape), columns=list(REQUIRED_SOURCE_COLUMNS))


def _parse_as_of(column: pd.Series) -> pd.Series:
    """YYMMDD (a leading zero may have been lost) -> datetime64; unreadable -> NaT."""
    return pd.to_datetime(column.str.zfill(6), format="%y%m%d", errors="coerce")


def _parse_numbers(block: np.ndarray) -> tuple[list[pd.arrays.IntegerArray], np.ndarray]:
    """The cells of `block` (2-D, stripped text) as exact integers (optional thousands separators): one Int64 array
    per column (`.` or empty -> <NA>), and the mask of unreadable cells (not an integer, or outside
    int64; <NA> too). All cells are parsed in one vectorised pass."""
    text = pd.Series(block.ravel(), dtype=object)
    missing = text.isin([".", ""]).to_numpy()
    readable = text.str.fullmatch(_INTEGER).fillna(False).to_numpy(dtype=bool)
    digits = text.str.replace(",", "", regex=False)
    values = np.zeros(len(text), dtype=np.int64)
    short = readable & (digits.str.len().to_numpy() <= _INT64_DIGITS)
    values[short] = digits[short].astype(np.int64).to_numpy()
    for i in np.flatnonzero(readable & ~short):
        value = int(digits.iloc[i])
        if -(2**63) <= value < 2**63:
            values[i] = value
        else:
            readable[i] = False
    grid, ok = values.reshape(block.shape), readable.reshape(block.shape)
    columns = [pd.arrays.IntegerArray(grid[:, j].copy(), ~ok[:, j]) for j in range(block.shape[1])]
    return columns, ~ok & ~missing.reshape(block.shape)


def _unreadable(raw: pd.DataFrame, as_of: pd.Series, unreadable_values: dict[str, np.ndarray]) -> dict[int, str]:
    """Row position -> reason, for rows with an unreadable date, code or number (missing `.` is not unreadable)."""
    bad: dict[int, str] = {}
    for i in np.flatnonzero(as_of.isna().to_numpy()):
        bad[int(i)] = f"unreadable {AS_OF} {_shown(raw[AS_OF].iloc[i])}"
    for i in np.flatnonzero((raw[CODE] == "").to_numpy()):
        bad.setdefault(int(i), f"empty {CODE}")
    for ours, unreadable in unreadable_values.items():
        theirs = SOURCE_POSITION_COLUMNS[ours]
        for i in np.flatnonzero(unreadable):
            reason = f"unreadable {theirs} {_shown(raw[theirs].iloc[i])} (expected a whole number within int64)"
            bad.setdefault(int(i), reason)
    return bad


def _where(raw: pd.DataFrame, i: int) -> str:
    code, as_of = (_shown(raw[c].iloc[i], quote=False) for c in (CODE, AS_OF))
    return f"code {code or '?'} as_of {as_of or '?'}"


def _shown(text: str, quote: bool = True) -> str:
    """`text` cut short for a one-line message (a hostile file may hold megabyte fields)."""
    short = text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
    return repr(short) if quote else short
