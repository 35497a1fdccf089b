"""Simulated CFTC disaggregated futures-only files: deterministic weekly positions rendered like the real `f_year.txt`.

Pure: no clock, no network. Every answer takes `now` explicitly; a week appears once its release time (the sim's own
`cftc_calendar`) is <= now and a revision once its `published_at` is <= now. Per market, Old and Other crop-year
books are random walks (seeded by `seed` and the market code); All is derived the way the real file does it:
Prod/NonRept/Tot add up, and for Swap, Managed Money and Other Reportables a cross-crop-year spread `x` moves
contracts out of long and short into spread (All_spread = Old_spread + Other_spread + x, All_long = Old_long +
Other_long - x, likewise short). The columns are built here too, not taken from the parser under test.
"""

from __future__ import annotations

import bisect
import io
import math
import random
import threading
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

from hydra_daemon.sim.cftc_calendar import NEW_YORK, release_at, report_dates

Value = str | int | float | None
"""A typed cell: text, a count, a percentage, or None where the file shows the `.` placeholder."""

YEAR_MEMBER: Final = "f_year.txt"
HISTORY_MEMBER: Final = "F_Disagg06_16.txt"
HISTORY_YEARS: Final = range(2006, 2017)
_ZIP_CACHE_SIZE = 16
_REVISED_FROM, _REVISED_TO = "M_Money_Positions_Long_Old", "NonRept_Positions_Long_Old"

_GROUPS = ("Swap", "M_Money", "Other_Rept")
# Non-derived book components (column stems without the `_Old`/`_Other` suffix), in file order.
COMPONENTS: Final = (
    "Prod_Merc_Positions_Long",
    "Prod_Merc_Positions_Short",
    "Swap_Positions_Long",
    "Swap__Positions_Short",
    "Swap__Positions_Spread",
    "M_Money_Positions_Long",
    "M_Money_Positions_Short",
    "M_Money_Positions_Spread",
    "Other_Rept_Positions_Long",
    "Other_Rept_Positions_Short",
    "Other_Rept_Positions_Spread",
    "NonRept_Positions_Long",
    "NonRept_Positions_Short",
)
_LONG_SIDE = ("Prod_Merc_Positions_Long", "Swap_Positions_Long", "M_Money_Positions_Long", "Other_Rept_Positions_Long")
_SHORT_SIDE = (
    "Prod_Merc_Positions_Short",
    "Swap__Positions_Short",
    "M_Money_Positions_Short",
    "Other_Rept_Positions_Short",
)
_SPREADS = ("Swap__Positions_Spread", "M_Money_Positions_Spread", "Other_Rept_Positions_Spread")
_GROUP_COLUMNS = {  # group -> (long, short, spread) stems
    "Swap": ("Swap_Positions_Long", "Swap__Positions_Short", "Swap__Positions_Spread"),
    "M_Money": ("M_Money_Positions_Long", "M_Money_Positions_Short", "M_Money_Positions_Spread"),
    "Other_Rept": ("Other_Rept_Positions_Long", "Other_Rept_Positions_Short", "Other_Rept_Positions_Spread"),
}
# One position block per segment, in file order: OI, 11 reportable columns, 2 totals, 2 non-reportable.
_BLOCK = (
    "Open_Interest",
    *COMPONENTS[:11],
    "Tot_Rept_Positions_Long",
    "Tot_Rept_Positions_Short",
    "NonRept_Positions_Long",
    "NonRept_Positions_Short",
)
_CHANGE_STEMS = (
    "Open_Interest",
    "Prod_Merc_Long",
    "Prod_Merc_Short",
    "Swap_Long",
    "Swap_Short",
    "Swap_Spread",
    "M_Money_Long",
    "M_Money_Short",
    "M_Money_Spread",
    "Other_Rept_Long",
    "Other_Rept_Short",
    "Other_Rept_Spread",
    "Tot_Rept_Long",
    "Tot_Rept_Short",
    "NonRept_Long",
    "NonRept_Short",
)
_TRADER_STEMS = (
    "Prod_Merc_Long",
    "Prod_Merc_Short",
    "Swap_Long",
    "Swap_Short",
    "Swap_Spread",
    "M_Money_Long",
    "M_Money_Short",
    "M_Money_Spread",
    "Other_Rept_Long",
    "Other_Rept_Short",
    "Other_Rept_Spread",
)
_TRADER_SIZE = (1.5, 1.5, 3.0, 3.0, 2.0, 1.0, 1.0, 1.5, 0.8, 0.8, 1.2)  # typical position, in units of OI/400
_SEGMENTS = ("All", "Old", "Other")
_LONG_WEIGHTS = {  # starting share of open interest held on the long side
    "Prod_Merc_Positions_Long": 0.14,
    "Swap_Positions_Long": 0.18,
    "Swap__Positions_Spread": 0.02,
    "M_Money_Positions_Long": 0.25,
    "M_Money_Positions_Spread": 0.08,
    "Other_Rept_Positions_Long": 0.11,
    "Other_Rept_Positions_Spread": 0.07,
    "NonRept_Positions_Long": 0.15,
}
_SHORT_WEIGHTS = {  # starting split of the non-spread short side
    "Prod_Merc_Positions_Short": 0.45,
    "Swap__Positions_Short": 0.08,
    "M_Money_Positions_Short": 0.17,
    "Other_Rept_Positions_Short": 0.10,
    "NonRept_Positions_Short": 0.20,
}
_ID_COLUMNS = (
    "Market_and_Exchange_Names",
    "As_of_Date_In_Form_YYMMDD",
    "Report_Date_as_YYYY-MM-DD",
    "CFTC_Contract_Market_Code",
    "CFTC_Market_Code",
    "CFTC_Region_Code",
    "CFTC_Commodity_Code",
)
_TRAILING_COLUMNS = (
    "Contract_Units",
    "CFTC_Contract_Market_Code_Quotes",
    "CFTC_Market_Code_Quotes",
    "CFTC_Commodity_Code_Quotes",
    "CFTC_SubGroup_Code",
    "FutOnly_or_Combined",
)
_CONC_STEMS = tuple(
    f"Conc_{kind}_LE_{n}_TDR_{side}" for kind in ("Gross", "Net") for n in (4, 8) for side in ("Long", "Short")
)
COLUMNS: Final = (
    *_ID_COLUMNS,
    *(f"{stem}_{segment}" for segment in _SEGMENTS for stem in _BLOCK),
    *(f"Change_in_{stem}_All" for stem in _CHANGE_STEMS),
    *(
        column
        for segment in _SEGMENTS
        for column in (
            f"Pct_of_Open_Interest_{segment}",
            *(f"Pct_of_OI_{stem}_{segment}" for stem in _CHANGE_STEMS[1:]),
        )
    ),
    *(
        column
        for segment in _SEGMENTS
        for column in (
            f"Traders_Tot_{segment}",
            *(f"Traders_{stem}_{segment}" for stem in _TRADER_STEMS),
            f"Traders_Tot_Rept_Long_{segment}",
            f"Traders_Tot_Rept_Short_{segment}",
        )
    ),
    *(f"{stem}_{segment}" for segment in _SEGMENTS for stem in _CONC_STEMS),
    *_TRAILING_COLUMNS,
)
"""The 191 columns of the real `f_year.txt`, in file order (built here, not taken from the parser under test)."""
_INT_COLUMNS = frozenset(
    [f"{stem}_{seg}" for seg in _SEGMENTS for stem in _BLOCK]
    + [f"Change_in_{stem}_All" for stem in _CHANGE_STEMS]
    + [c for c in COLUMNS if c.startswith("Traders_")]
)
_PCT_COLUMNS = frozenset(c for c in COLUMNS if c.startswith("Pct_of_"))
_CONC_COLUMNS = frozenset(c for c in COLUMNS if c.startswith("Conc_"))
_QUOTED_COLUMNS = frozenset(
    {
        "Market_and_Exchange_Names",
        "Contract_Units",
        "CFTC_Contract_Market_Code_Quotes",
        "CFTC_Market_Code_Quotes",
        "CFTC_Commodity_Code_Quotes",
        "CFTC_SubGroup_Code",
        "FutOnly_or_Combined",
    }
)
REVISABLE_COLUMNS: Final = frozenset(f"{stem}_{seg}" for seg in ("Old", "Other") for stem in COMPONENTS)


@dataclass(frozen=True)
class CotMarket:
    """One contract market of the simulated file. `other_share` is the Other (crop-year) fraction of open interest."""

    code: str
    name: str
    market_code: str
    region_code: str
    contract_units: str
    subgroup: str
    open_interest: int
    other_share: float = 0.0

    def __post_init__(self) -> None:
        if len(self.code) != 6 or not self.code.isalnum():
            raise ValueError(f"CotMarket code must be 6 alphanumeric characters, got {self.code!r}")
        if not 0.0 <= self.other_share < 1.0 or self.open_interest <= 0:
            raise ValueError(f"CotMarket {self.code}: need open_interest > 0 and 0 <= other_share < 1")


DEFAULT_MARKETS: Final = (
    CotMarket(
        "054642",
        "LEAN HOGS - CHICAGO MERCANTILE EXCHANGE",
        "CME",
        "00",
        "(CONTRACTS OF 40,000 POUNDS)",
        "A20",
        270_000,
        other_share=0.11,
    ),
    CotMarket(
        "057642",
        "LIVE CATTLE - CHICAGO MERCANTILE EXCHANGE",
        "CME",
        "00",
        "(CONTRACTS OF 40,000 POUNDS)",
        "A20",
        340_000,
    ),
    CotMarket(
        "061641",
        "FEEDER CATTLE - CHICAGO MERCANTILE EXCHANGE",
        "CME",
        "00",
        "(CONTRACTS OF 50,000 POUNDS)",
        "A20",
        48_000,
    ),
    CotMarket(
        "002602",
        "CORN - CHICAGO BOARD OF TRADE",
        "CBT",
        "00",
        "(CONTRACTS OF 5,000 BUSHELS)",
        "A10",
        1_790_000,
        other_share=0.27,
    ),
    CotMarket(
        "001602",
        "WHEAT-SRW - CHICAGO BOARD OF TRADE",
        "CBT",
        "00",
        "(CONTRACTS OF 5,000 BUSHELS)",
        "A10",
        420_000,
        other_share=0.4,
    ),
    CotMarket(
        "0063CA",
        "CALIF CARBON VINTAGE 2020 - ICE FUTURES ENERGY DIV",
        "IFED",
        "01",
        "1,000 California carbon allowances",
        "N60",
        44_000,
    ),
)


@dataclass(frozen=True)
class WeekBook:
    """Non-derived positions of one market-week: Old and Other books (COMPONENTS -> contracts) and the
    cross-crop-year spread per group (Swap, M_Money, Other_Rept)."""

    old: Mapping[str, int]
    other: Mapping[str, int]
    cross_spread: Mapping[str, int]


@dataclass(frozen=True)
class Revision:
    """New values for some Old/Other components of one (code, as_of), visible from `published_at` on."""

    code: str
    as_of: date
    changes: Mapping[str, int]
    published_at: datetime


@dataclass
class _Series:
    as_of_dates: list[date] = field(default_factory=list)
    books: dict[str, list[WeekBook]] = field(default_factory=dict)


class SimulatedCotFiles:
    """Deterministic CFTC disaggregated futures-only files for `markets`, weekly from `first_as_of` on.

    Same `seed` (and arguments) -> same bytes. `extra_closures` feed the release calendar. Thread-safe.
    """

    def __init__(
        self,
        seed: int,
        markets: Sequence[CotMarket] = DEFAULT_MARKETS,
        first_as_of: date = date(2006, 6, 13),
        extra_closures: Collection[date] = (),
    ) -> None:
        codes = [m.code for m in markets]
        if not markets or len(set(codes)) != len(codes):
            raise ValueError(f"markets must be non-empty with unique codes, got {codes}")
        self.seed = seed
        self.markets = tuple(sorted(markets, key=lambda m: m.code))
        self.first_as_of = first_as_of
        self.extra_closures = frozenset(extra_closures)
        self._lock = threading.Lock()
        self._series = _Series()
        self._walks = {m.code: _Walk(m, random.Random(f"{seed}/{m.code}")) for m in self.markets}
        self._revisions: list[Revision] = []
        self._zip_cache: dict[tuple[object, ...], bytes] = {}

    def released_as_of_dates(self, year: int, now: datetime) -> list[date]:
        """The as_of dates of `year` (ascending) whose report is public at `now`."""
        now = _aware(now)
        candidates = report_dates(max(date(year, 1, 1), self.first_as_of), date(year, 12, 31))
        return [d for d in candidates if release_at(d, self.extra_closures) <= now]

    def records(self, years: Sequence[int], now: datetime) -> list[dict[str, Value]]:
        """Typed rows of the file covering `years` as published at `now`, in file order (code, then as_of desc)."""
        weeks = sorted(d for y in years for d in self.released_as_of_dates(y, now))
        with self._lock:
            return [self._record(m, d, now) for m in self.markets for d in reversed(weeks)]

    def record(self, code: str, as_of: date, now: datetime) -> dict[str, Value]:
        """One typed row as published at `now` (the report need not be released yet)."""
        market = self._market(code)
        self._require_as_of(as_of)
        with self._lock:
            return self._record(market, as_of, _aware(now))

    def year_text(self, year: int, now: datetime) -> bytes:
        """`f_year.txt` for `year` at `now` (header only when nothing is released)."""
        return render_text(self.records([year], now))

    def year_zip(self, year: int, now: datetime) -> bytes | None:
        """`fut_disagg_txt_{year}.zip` at `now`, or None when no week of `year` is released yet."""
        return self._zip([year], YEAR_MEMBER, now)

    def history_zip(self, now: datetime) -> bytes | None:
        """`fut_disagg_txt_hist_2006_2016.zip` (member `F_Disagg06_16.txt`, same header), or None if empty."""
        return self._zip(list(HISTORY_YEARS), HISTORY_MEMBER, now)

    def reclassify_managed_money(self, code: str, as_of: date, contracts: int, published_at: datetime) -> Revision:
        """A balanced correction published at `published_at`: `contracts` managed-money longs (Old crop) of the
        report become non-reportable longs, so every accounting identity keeps holding."""
        row = self.record(code, as_of, published_at)
        moved_from, moved_to = int(str(row[_REVISED_FROM])), int(str(row[_REVISED_TO]))
        if not 0 < contracts <= moved_from:
            raise ValueError(f"CONTRACTS must be in 1..{moved_from} ({_REVISED_FROM} of {code} {as_of})")
        changes = {_REVISED_FROM: moved_from - contracts, _REVISED_TO: moved_to + contracts}
        return self.revise(code, as_of, changes, published_at)

    def revise(self, code: str, as_of: date, changes: Mapping[str, int], published_at: datetime) -> Revision:
        """Schedule a correction of Old/Other components (absolute new values) visible from `published_at`.

        All/Tot/OI/percentages/traders are re-derived, so the accounting identities keep holding; each book must
        stay balanced (long side total == short side total), e.g. move contracts from M_Money_Positions_Long_Old to
        NonRept_Positions_Long_Old, or change one long and one short column by the same amount. The revised row's
        Change_in_* columns are recomputed; the following week keeps the changes it was published with.
        """
        market = self._market(code)
        self._require_as_of(as_of)
        published_at = _aware(published_at)
        released = release_at(as_of, self.extra_closures)
        if published_at <= released:
            raise ValueError(f"revision of {code} {as_of} must be published after its release {released.isoformat()}")
        _check_changes(market, changes)
        revision = Revision(code, as_of, dict(changes), published_at)
        with self._lock:
            candidate = [*self._revisions, revision]
            for r in candidate:
                if (r.code, r.as_of) == (code, as_of):
                    _check_book(market, as_of, self._effective(market, as_of, r.published_at, candidate))
            self._revisions = candidate
            self._zip_cache.clear()
        return revision

    def _zip(self, years: list[int], member: str, now: datetime) -> bytes | None:
        now = _aware(now)
        weeks = tuple(d for y in years for d in self.released_as_of_dates(y, now))
        if not weeks:
            return None
        stamp = max([release_at(weeks[-1], self.extra_closures), *self._revision_times(weeks, now)])
        key = (member, weeks, stamp)
        with self._lock:
            cached = self._zip_cache.get(key)
        if cached is None:
            cached = zip_member(member, render_text(self.records(years, now)), stamp)
            with self._lock:
                if len(self._zip_cache) >= _ZIP_CACHE_SIZE:
                    self._zip_cache.pop(next(iter(self._zip_cache)))
                self._zip_cache[key] = cached
        return cached

    def _revision_times(self, weeks: tuple[date, ...], now: datetime) -> list[datetime]:
        wanted = set(weeks)
        with self._lock:
            return [r.published_at for r in self._revisions if r.as_of in wanted and r.published_at <= now]

    def _record(self, market: CotMarket, as_of: date, now: datetime) -> dict[str, Value]:
        book = self._effective(market, as_of, now, self._revisions)
        index = self._index(as_of)
        previous = self._book(market, self._series.as_of_dates[index - 1]) if index > 0 else None
        return build_record(market, as_of, book, previous)

    def _effective(self, market: CotMarket, as_of: date, now: datetime, revisions: list[Revision]) -> WeekBook:
        book = self._book(market, as_of)
        applicable = sorted(
            (r for r in revisions if (r.code, r.as_of) == (market.code, as_of) and r.published_at <= now),
            key=lambda r: r.published_at,
        )
        for r in applicable:
            book = _apply(book, r.changes)
        return book

    def _book(self, market: CotMarket, as_of: date) -> WeekBook:
        index = self._index(as_of)
        return self._series.books[market.code][index]

    def _index(self, as_of: date) -> int:
        series = self._series
        if not series.as_of_dates or series.as_of_dates[-1] < as_of:
            self._extend(date(as_of.year, 12, 31))
        return _bisect_exact(series.as_of_dates, as_of)

    def _extend(self, until: date) -> None:
        series = self._series
        start = self.first_as_of if not series.as_of_dates else series.as_of_dates[-1]
        new = [d for d in report_dates(start, until) if not series.as_of_dates or d > series.as_of_dates[-1]]
        series.as_of_dates.extend(new)
        for market in self.markets:
            walk = self._walks[market.code]
            series.books.setdefault(market.code, []).extend(walk.step() for _ in new)

    def _market(self, code: str) -> CotMarket:
        for market in self.markets:
            if market.code == code:
                return market
        raise KeyError(f"unknown market code {code!r}; simulated codes: {[m.code for m in self.markets]}")

    def _require_as_of(self, as_of: date) -> None:
        if as_of < self.first_as_of or report_dates(as_of, as_of) != [as_of]:
            raise ValueError(f"{as_of!r} is not a simulated report date (weekly from {self.first_as_of})")


class _Walk:
    """Per-market random walk of the Old and Other books."""

    def __init__(self, market: CotMarket, rng: random.Random) -> None:
        self._market = market
        self._rng = rng
        other = market.open_interest * market.other_share
        scale = {"Old": market.open_interest - other, "Other": other}
        self._long = {s: {k: w * scale[s] for k, w in _LONG_WEIGHTS.items()} for s in ("Old", "Other")}
        self._short = {s: dict(_SHORT_WEIGHTS) for s in ("Old", "Other")}
        self._targets = {s: dict(self._long[s]) for s in ("Old", "Other")}

    def step(self) -> WeekBook:
        old, other = self._step_book("Old"), self._step_book("Other")
        cross = {g: self._cross(g, old, other) for g in _GROUPS}
        return WeekBook(old=old, other=other, cross_spread=cross)

    def _step_book(self, segment: str) -> dict[str, int]:
        levels, targets, weights = self._long[segment], self._targets[segment], self._short[segment]
        for key, level in levels.items():
            drift = (targets[key] / level) ** 0.08 if level > 0 else 1.0
            levels[key] = level * math.exp(self._rng.gauss(0.0, 0.04)) * drift
        for key in weights:
            weights[key] = min(5.0, max(0.01, weights[key] * math.exp(self._rng.gauss(0.0, 0.05))))
        book = {key: round(level) for key, level in levels.items()}
        pool = sum(book.values()) - sum(book[k] for k in _SPREADS)
        book.update(_split(pool, weights))
        return {stem: book[stem] for stem in COMPONENTS}

    def _cross(self, group: str, old: Mapping[str, int], other: Mapping[str, int]) -> int:
        long_stem, short_stem, _ = _GROUP_COLUMNS[group]
        room = min(old[long_stem], other[short_stem]) + min(other[long_stem], old[short_stem])
        return int(room * self._rng.uniform(0.0, 0.3))


def _split(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of `total` (>= 0) by `weights` into non-negative integers."""
    weight_sum = sum(weights.values())
    exact = {k: total * w / weight_sum for k, w in weights.items()}
    parts = {k: math.floor(v) for k, v in exact.items()}
    leftover = total - sum(parts.values())
    for key in sorted(exact, key=lambda k: (parts[k] - exact[k], k))[:leftover]:
        parts[key] += 1
    return parts


def _apply(book: WeekBook, changes: Mapping[str, int]) -> WeekBook:
    old, other = dict(book.old), dict(book.other)
    for column, value in changes.items():
        stem, segment = column.rsplit("_", 1)
        (old if segment == "Old" else other)[stem] = value
    return WeekBook(old=old, other=other, cross_spread=book.cross_spread)


def _check_changes(market: CotMarket, changes: Mapping[str, int]) -> None:
    if not changes:
        raise ValueError(f"revision of {market.code} changes nothing")
    for column, value in changes.items():
        if column not in REVISABLE_COLUMNS:
            raise ValueError(
                f"column {column!r} is not revisable: change Old/Other components (e.g. M_Money_Positions_Long_Old); "
                "All, Tot_Rept and Open_Interest are derived"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"revision value for {column} must be a non-negative int, got {value!r}")


def _check_book(market: CotMarket, as_of: date, book: WeekBook) -> None:
    for segment, side in (("Old", book.old), ("Other", book.other)):
        long_total = sum(side[k] for k in (*_LONG_SIDE, *_SPREADS, "NonRept_Positions_Long"))
        short_total = sum(side[k] for k in (*_SHORT_SIDE, *_SPREADS, "NonRept_Positions_Short"))
        if long_total != short_total:
            raise ValueError(
                f"revision of {market.code} {as_of} unbalances the {segment} book (long {long_total} != short "
                f"{short_total}): move contracts within one side, or change long and short by the same amount"
            )
    for group, (long_stem, short_stem, _) in _GROUP_COLUMNS.items():
        x = book.cross_spread[group]
        if min(book.old[long_stem] + book.other[long_stem], book.old[short_stem] + book.other[short_stem]) < x:
            raise ValueError(
                f"revision of {market.code} {as_of} leaves {group} All long/short below the cross-crop spread {x}"
            )


def positions(book: WeekBook) -> dict[str, int]:
    """The 48 position columns (All, Old, Other blocks) derived from a book."""
    segments = {"Old": dict(book.old), "Other": dict(book.other)}
    all_seg = {stem: book.old[stem] + book.other[stem] for stem in COMPONENTS}
    for group, (long_stem, short_stem, spread_stem) in _GROUP_COLUMNS.items():
        x = book.cross_spread[group]
        all_seg[long_stem] -= x
        all_seg[short_stem] -= x
        all_seg[spread_stem] += x
    segments["All"] = all_seg
    out: dict[str, int] = {}
    for segment in _SEGMENTS:
        values = segments[segment]
        tot_long = sum(values[k] for k in (*_LONG_SIDE, *_SPREADS))
        tot_short = sum(values[k] for k in (*_SHORT_SIDE, *_SPREADS))
        derived = {
            "Open_Interest": tot_long + values["NonRept_Positions_Long"],
            "Tot_Rept_Positions_Long": tot_long,
            "Tot_Rept_Positions_Short": tot_short,
        }
        for stem in _BLOCK:
            out[f"{stem}_{segment}"] = derived[stem] if stem in derived else values[stem]
    return out


def build_record(market: CotMarket, as_of: date, book: WeekBook, previous: WeekBook | None) -> dict[str, Value]:
    """The full typed 191-column row for one market-week (`previous` None -> `.` in the change columns)."""
    pos = positions(book)
    prev = positions(previous) if previous is not None else None
    market_code = market.market_code.ljust(4)
    commodity = market.code[:3].ljust(4)
    row: dict[str, Value] = {
        "Market_and_Exchange_Names": market.name,
        "As_of_Date_In_Form_YYMMDD": f"{as_of:%y%m%d}",
        "Report_Date_as_YYYY-MM-DD": as_of.isoformat(),
        "CFTC_Contract_Market_Code": market.code,
        "CFTC_Market_Code": market_code,
        "CFTC_Region_Code": market.region_code,
        "CFTC_Commodity_Code": commodity,
        **pos,
    }
    for stem, block_stem in zip(_CHANGE_STEMS, _BLOCK, strict=True):
        column = f"{block_stem}_All"
        row[f"Change_in_{stem}_All"] = None if prev is None else pos[column] - prev[column]
    for segment in _SEGMENTS:
        row.update(_percentages(pos, segment))
        row.update(_traders(pos, segment, market.open_interest))
        row.update(_concentration(pos, segment, market.open_interest))
    row.update(
        {
            "Contract_Units": market.contract_units,
            "CFTC_Contract_Market_Code_Quotes": market.code,
            "CFTC_Market_Code_Quotes": market_code,
            "CFTC_Commodity_Code_Quotes": commodity,
            "CFTC_SubGroup_Code": market.subgroup,
            "FutOnly_or_Combined": "FutOnly",
        }
    )
    return {column: row[column] for column in COLUMNS}


def _percentages(pos: Mapping[str, int], segment: str) -> dict[str, float]:
    oi = pos[f"Open_Interest_{segment}"]
    out = {f"Pct_of_Open_Interest_{segment}": 100.0}
    for stem, block_stem in zip(_CHANGE_STEMS[1:], _BLOCK[1:], strict=True):
        value = pos[f"{block_stem}_{segment}"]
        out[f"Pct_of_OI_{stem}_{segment}"] = round(100.0 * value / oi, 1) if oi else 0.0
    return out


def _traders(pos: Mapping[str, int], segment: str, market_oi: int) -> dict[str, int | None]:
    unit = market_oi / 400
    counts = [
        min(999, math.ceil(pos[f"{block_stem}_{segment}"] / (unit * size)))
        for block_stem, size in zip(_BLOCK[1:12], _TRADER_SIZE, strict=True)
    ]
    long_count = math.ceil(0.85 * sum(c for c, s in zip(counts, _TRADER_STEMS, strict=True) if "Short" not in s))
    short_count = math.ceil(0.85 * sum(c for c, s in zip(counts, _TRADER_STEMS, strict=True) if "Long" not in s))
    total = max(long_count, short_count) + math.ceil(0.25 * min(long_count, short_count))
    out: dict[str, int | None] = {f"Traders_Tot_{segment}": total}
    out.update({f"Traders_{stem}_{segment}": c for stem, c in zip(_TRADER_STEMS, counts, strict=True)})
    out[f"Traders_Tot_Rept_Long_{segment}"] = long_count
    out[f"Traders_Tot_Rept_Short_{segment}"] = short_count
    return {k: (None if v is not None and 1 <= v <= 3 else v) for k, v in out.items()}


def _concentration(pos: Mapping[str, int], segment: str, market_oi: int) -> dict[str, float]:
    oi = pos[f"Open_Interest_{segment}"]
    out: dict[str, float] = {}
    for side in ("Long", "Short"):
        share = pos[f"Tot_Rept_Positions_{side}_{segment}"] / oi if oi else 0.0
        gross4 = round(min(95.0, 100.0 * share * min(1.0, 0.1 + 8000 / market_oi + 0.15 * share)), 1)
        gross8 = round(min(100.0 * share, gross4 * 1.45), 1) if oi else 0.0
        gross8 = max(gross8, gross4)
        out[f"Conc_Gross_LE_4_TDR_{side}_{segment}"] = gross4
        out[f"Conc_Gross_LE_8_TDR_{side}_{segment}"] = gross8
        out[f"Conc_Net_LE_4_TDR_{side}_{segment}"] = round(gross4 * 0.92, 1)
        out[f"Conc_Net_LE_8_TDR_{side}_{segment}"] = round(gross8 * 0.9, 1)
    return out


def _cell_template(column: str) -> str:
    """A %-format for one column: quoted text, right-aligned ints (width 8, traders 7), one-decimal floats."""
    if column in _QUOTED_COLUMNS:
        return '"%s"'
    if column in _INT_COLUMNS:
        return "%7d" if column.startswith("Traders_") else "%8d"
    if column in _PCT_COLUMNS:
        return "%7.1f"
    if column in _CONC_COLUMNS:
        return "%8.1f"
    return "%s"


_TEMPLATES: Final = tuple(_cell_template(c) for c in COLUMNS)


def render_text(records: Sequence[Mapping[str, Value]]) -> bytes:
    """The quoted-CSV text: quoted header, one CRLF-terminated line per record."""
    lines = [",".join(f'"{c}"' for c in COLUMNS)]
    for record in records:
        values = [record[c] for c in COLUMNS]
        lines.append(",".join("." if v is None else t % v for t, v in zip(_TEMPLATES, values, strict=True)))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def zip_member(member: str, data: bytes, stamp: datetime) -> bytes:
    """A deterministic single-member deflated zip (Unix attributes, timestamp = `stamp` in New York time)."""
    local = stamp.astimezone(NEW_YORK)
    info = zipfile.ZipInfo(member, date_time=(local.year, local.month, local.day, local.hour, local.minute, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, data, compresslevel=6)
    return buffer.getvalue()


def _bisect_exact(dates: list[date], as_of: date) -> int:
    index = bisect.bisect_left(dates, as_of)
    if index == len(dates) or dates[index] != as_of:
        raise ValueError(f"{as_of} is not a simulated report date")
    return index


def _aware(t: datetime) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise TypeError(f"expected a timezone-aware datetime, got {t!r}")
    return t.astimezone(UTC)
