"""CME futures contract months from raw symbols (pure): which of a market's contracts is the front one.

A CME outright's raw symbol is its root, a month code (F G H J K M N Q U V X Z: January to December) and the last
one or two digits of its year (``HEZ5``, ``ESH26``). Read alphabetically, a later year can come first (``HEG6``
sorts before ``HEZ5``), so the order of contracts is their (year, month); the year is the first one ending in those
digits from the year before ``on`` (a contract quoted on a day expires in that month or later; the year before
allows for a symbol's last days).
"""

from __future__ import annotations

import re
from datetime import date

MONTH_CODES = "FGHJKMNQUVXZ"
_OUTRIGHT = re.compile(rf"^[A-Z0-9]+?([{MONTH_CODES}])(\d{{1,2}})$")


def contract_month(symbol: str, on: date) -> tuple[int, int] | None:
    """(year, month) of the outright ``symbol`` quoted on ``on``; None for what is not one (a spread, an option)."""
    match = _OUTRIGHT.fullmatch(symbol)
    if match is None:
        return None
    month = MONTH_CODES.index(match[1]) + 1
    digits = match[2]
    period = 10 ** len(digits)
    first = on.year - 1
    year = first - first % period + int(digits)
    return (year + period if year < first else year), month
