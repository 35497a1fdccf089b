"""CME contract months from raw symbols: the order of a market's contracts, across year ends."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.cme_contracts import MONTH_CODES, contract_month


def test_outrights_parse_and_the_rest_do_not() -> None:
    on = date(2025, 11, 20)
    assert contract_month("HEZ5", on) == (2025, 12)
    assert contract_month("HEG6", on) == (2026, 2)
    assert contract_month("ESH26", on) == (2026, 3)
    assert contract_month("SR3Z35", on) == (2035, 12)
    assert contract_month("HEZ3", on) == (2033, 12)  # before `on`'s previous year: the next decade's
    assert contract_month("HEZ4", date(2025, 1, 3)) == (2024, 12)  # in its last days, just after the year's turn
    for other in ("HEZ5-HEG6", "HEZ5 C0900", "UD:1V: VT 1120", "", "Z5", "HEA5", "HEz5"):
        assert contract_month(other, on) is None, other


@given(
    st.dates(date(1990, 1, 1), date(2090, 12, 31)),
    st.integers(-1, 8),
    st.integers(1, 12),
    st.sampled_from(["HE", "ES", "SR3", "6E"]),
    st.sampled_from([1, 2]),
)
def test_a_contract_within_the_listing_horizon_parses_to_its_month(
    on: date, ahead: int, month: int, root: str, digits: int
) -> None:
    """Any outright from the year before `on` to eight years after, one or two year digits."""
    year = on.year + ahead
    symbol = f"{root}{MONTH_CODES[month - 1]}{year % 10**digits:0{digits}d}"
    assert contract_month(symbol, on) == (year, month)
