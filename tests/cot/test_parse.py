"""Parser and validator: the real 2021 file, the cot_reports oracle, and hypothesis properties."""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydra_daemon.cot.parse import (
    POSITION_COLUMNS,
    SOURCE_POSITION_COLUMNS,
    CotParseError,
    parse_report,
    position_column,
)
from hydra_daemon.cot.validate import validate_rows

REAL_2021_ZIP = Path(__file__).resolve().parents[1] / "data" / "fut_disagg_txt_2021.zip"
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _raw_frame(text: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False)


def test_real_2021_file_parses_and_every_identity_holds_for_every_market(real_2021_text: bytes) -> None:
    raw = _raw_frame(real_2021_text)
    parsed = parse_report(real_2021_text, source="fut_disagg_txt_2021.zip")
    checked = validate_rows(parsed.rows)

    assert parsed.problems == ()
    assert len(parsed.rows) == int((raw["FutOnly_or_Combined"].str.strip() == "FutOnly").sum()) > 2000
    assert checked.quarantined.empty
    assert len(checked.good) == len(parsed.rows)
    assert set(checked.good["code"]) == set(raw["CFTC_Contract_Market_Code"].str.strip())
    assert checked.good[list(POSITION_COLUMNS)].dtypes.eq("int64").all()


def test_real_2021_codes_stay_strings_and_dates_come_from_the_file(real_2021_text: bytes) -> None:
    rows = parse_report(real_2021_text, source="2021").rows
    raw = _raw_frame(real_2021_text)

    assert "054642" in set(rows["code"])
    assert "0063CA" in set(rows["code"])
    assert not rows["code"].str.contains(" ").any()
    assert not rows["market_name"].str.endswith(" ").any()
    report_dates = pd.to_datetime(raw["Report_Date_as_YYYY-MM-DD"].str.strip(), utc=True)
    assert set(rows["as_of"]) == set(report_dates)
    assert str(rows["as_of"].dt.tz) == "UTC"


def test_only_requested_codes_are_kept(real_2021_text: bytes) -> None:
    rows = parse_report(real_2021_text, source="2021", codes={"054642", "002602"}).rows

    assert set(rows["code"]) == {"054642", "002602"}
    assert rows.groupby("code").size().min() >= 10
    assert rows.groupby("code")["as_of"].is_monotonic_increasing.all()


def test_matches_cot_reports_oracle(real_2021_text: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cot_reports.cot_reports as cot_module

    class _Response:
        content = REAL_2021_ZIP.read_bytes()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cot_module.requests, "get", lambda url, *a, **k: _Response())
    oracle = cot_module.cot_year(2021, cot_report_type="disaggregated_fut", store_txt=False, verbose=False)
    oracle = oracle[oracle["FutOnly_or_Combined"].str.strip() == "FutOnly"]
    ours = parse_report(real_2021_text, source="2021").rows

    assert len(ours) == len(oracle)
    oracle_keys = pd.to_datetime(oracle["As_of_Date_In_Form_YYMMDD"].astype(str).str.zfill(6), format="%y%m%d")
    oracle = (
        oracle.assign(
            _code=oracle["CFTC_Contract_Market_Code"].astype(str).str.strip().str.zfill(6),
            _as_of=oracle_keys.dt.tz_localize("UTC"),
        )
        .sort_values(["_code", "_as_of"], kind="stable")
        .reset_index(drop=True)
    )
    assert list(oracle["_code"]) == list(ours["code"])
    assert list(oracle["_as_of"]) == list(ours["as_of"])
    assert list(oracle["Market_and_Exchange_Names"].str.strip()) == list(ours["market_name"])
    for ours_column, their_column in SOURCE_POSITION_COLUMNS.items():
        np.testing.assert_array_equal(
            ours[ours_column].to_numpy(), oracle[their_column].to_numpy(dtype="float64"), err_msg=ours_column
        )


_FREE = (
    "prod_merc_long",
    "prod_merc_short",
    "swap_long",
    "swap_short",
    "swap_spread",
    "m_money_long",
    "m_money_short",
    "m_money_spread",
    "other_rept_long",
    "other_rept_short",
    "other_rept_spread",
    "nonrept_long",
)
_free_segment = st.fixed_dictionaries({stem: st.integers(min_value=0, max_value=5_000_000) for stem in _FREE})
_codes = st.text(alphabet="0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=6, max_size=6)
_as_of = st.dates(min_value=date(2006, 1, 1), max_value=date(2068, 12, 31))


@SETTINGS
@given(old=_free_segment, other=_free_segment, code=_codes, as_of=_as_of)
def test_generated_consistent_rows_pass(
    cot: Any, old: dict[str, int], other: dict[str, int], code: str, as_of: date
) -> None:
    positions = cot.positions(cot.segment(old), cot.segment(other))
    text = cot.csv([cot.row(code, as_of, positions)])

    parsed = parse_report(text, source="generated")
    checked = validate_rows(parsed.rows)

    assert parsed.problems == ()
    assert checked.quarantined.empty
    good = checked.good.iloc[0]
    assert good["code"] == code
    assert good["as_of"] == pd.Timestamp(as_of, tz="UTC")
    assert {column: int(good[column]) for column in POSITION_COLUMNS} == positions


@SETTINGS
@given(
    old=_free_segment,
    other=_free_segment,
    code=_codes,
    as_of=_as_of,
    column=st.sampled_from(POSITION_COLUMNS),
    delta=st.integers(min_value=1, max_value=1000),
    sign=st.sampled_from([-1, 1]),
)
def test_any_single_perturbed_position_is_quarantined_with_code_and_date(
    cot: Any, old: dict[str, int], other: dict[str, int], code: str, as_of: date, column: str, delta: int, sign: int
) -> None:
    positions = cot.positions(cot.segment(old), cot.segment(other))
    good_row = cot.row("AAAAAA" if code != "AAAAAA" else "BBBBBB", as_of, positions)
    positions[column] += sign * delta
    text = cot.csv([cot.row(code, as_of, positions), good_row])

    checked = validate_rows(parse_report(text, source="generated").rows)

    assert len(checked.good) == 1
    assert checked.good["code"].iloc[0] == good_row["CFTC_Contract_Market_Code"]
    [problem] = checked.problems()
    assert problem.where == f"code {code} as_of {as_of:%Y-%m-%d}"
    segment = column.rsplit("_", 1)[-1]
    assert f"_{segment} " in problem.what or problem.what.startswith("negative ")


@SETTINGS
@given(code=_codes, pad_left=st.integers(0, 3), pad_right=st.integers(0, 3), column=st.sampled_from(POSITION_COLUMNS))
def test_padding_is_trimmed_and_dot_means_missing(
    cot: Any, code: str, pad_left: int, pad_right: int, column: str
) -> None:
    positions: dict[str, int | str] = dict(cot.simple_positions(3))
    padded = cot.row(" " * pad_left + code + " " * pad_right, date(2021, 3, 16), positions)
    missing = cot.row(code, date(2021, 3, 23), {**positions, column: "     ."})

    parsed = parse_report(cot.csv([padded, missing]), source="generated")
    checked = validate_rows(parsed.rows)

    assert parsed.problems == ()
    assert list(parsed.rows["code"]) == [code, code]
    assert pd.isna(parsed.rows[column].iloc[1])
    assert list(checked.good["as_of"]) == [pd.Timestamp("2021-03-16", tz="UTC")]
    assert f"missing {column}" in checked.quarantined["reason"].iloc[0]


def test_as_of_is_taken_from_the_file_not_assumed_tuesday(cot: Any) -> None:
    monday = date(2018, 12, 24)
    text = cot.csv([cot.row("054642", monday, cot.simple_positions(1))])

    [as_of] = parse_report(text, source="generated").rows["as_of"]

    assert as_of == pd.Timestamp(monday, tz="UTC")


def test_combined_rows_and_other_codes_are_dropped(cot: Any) -> None:
    day = date(2021, 3, 16)
    text = cot.csv(
        [
            cot.row("054642", day, cot.simple_positions(1)),
            cot.row("054642", day + timedelta(days=7), cot.simple_positions(2), fut_only="Combined"),
            cot.row("057642", day, cot.simple_positions(3)),
        ]
    )

    rows = parse_report(text, source="generated", codes=["054642"]).rows

    assert list(rows["code"]) == ["054642"]
    assert list(rows["as_of"]) == [pd.Timestamp(day, tz="UTC")]


def test_unreadable_values_become_problems_not_crashes(cot: Any) -> None:
    day = date(2021, 3, 16)
    broken = cot.row("054642", day, {**cot.simple_positions(1), position_column("m_money_long", "old"): "12x4"})
    bad_date = cot.row("057642", day, cot.simple_positions(2))
    bad_date["As_of_Date_In_Form_YYMMDD"] = "21AB16"
    fine = cot.row("061641", day, cot.simple_positions(3))

    parsed = parse_report(cot.csv([broken, bad_date, fine]), source="generated")

    assert list(parsed.rows["code"]) == ["061641"]
    assert [p.where for p in parsed.problems] == ["code 054642 as_of 210316", "code 057642 as_of 21AB16"]
    assert "M_Money_Positions_Long_Old" in parsed.problems[0].what


def test_a_file_without_the_columns_is_a_clear_error() -> None:
    with pytest.raises(CotParseError, match=r"x\.zip: not a disaggregated futures-only COT file: missing column"):
        parse_report(b'"a","b"\n1,2\n', source="x.zip")


_huge_segment = st.fixed_dictionaries({stem: st.integers(min_value=0, max_value=2**58) for stem in _FREE})


@SETTINGS
@given(old=_huge_segment, other=_huge_segment)
def test_positions_above_2_53_are_kept_exact(cot: Any, old: dict[str, int], other: dict[str, int]) -> None:
    positions = cot.positions(cot.segment(old), cot.segment(other))
    checked = validate_rows(parse_report(cot.csv([cot.row("054642", date(2021, 3, 16), positions)]), source="g").rows)

    assert checked.quarantined.empty
    assert {c: int(checked.good[c].iloc[0]) for c in POSITION_COLUMNS} == positions
    assert checked.good[list(POSITION_COLUMNS)].dtypes.eq("int64").all()


_cell = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=10**7).map(lambda v: f"{v:,}"),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from([".", "", "41771.5", "1e30", "10" + "0" * 29, "９", "1,23", "--1", "1_000", '"', "\x00", "0x10"]),
    st.text(max_size=8),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from(POSITION_COLUMNS), cell=_cell)
def test_a_hostile_position_is_stored_exactly_or_rejected(cot: Any, column: str, cell: str) -> None:
    """Whatever text a position holds, the row is stored only when that text is the exact integer the identities
    need; otherwise it is a parse problem or quarantined — never rounded, wrapped or a crash."""
    positions: dict[str, int | str] = dict(cot.simple_positions(1))
    expected = positions[column]
    positions[column] = cell.replace('"', "").replace("\n", "").replace("\r", "").replace(",", "") or "."
    try:
        parsed = parse_report(cot.csv([cot.row("054642", date(2021, 3, 16), positions)]), source="g")
    except CotParseError:
        return
    checked = validate_rows(parsed.rows)
    assert len(checked.good) + len(checked.quarantined) + len(parsed.problems) == 1
    if len(checked.good):
        assert int(checked.good[column].iloc[0]) == expected
        assert str(positions[column]).strip().lstrip("0") == str(expected).lstrip("0")


@pytest.mark.parametrize(
    ("cell", "reason"),
    [("1" + "0" * 30, "within int64"), ("41771.5", "within int64"), ("9223372036854775808", "within int64")],
)
def test_values_that_are_not_int64_integers_are_unreadable(cot: Any, cell: str, reason: str) -> None:
    column = position_column("open_interest", "all")
    positions: dict[str, int | str] = {**cot.simple_positions(1), column: cell}
    parsed = parse_report(cot.csv([cot.row("054642", date(2021, 3, 16), positions)]), source="g")

    assert parsed.rows.empty
    [problem] = parsed.problems
    assert "Open_Interest_All" in problem.what and reason in problem.what


def test_validate_rejects_inexact_values_handed_to_it_directly(cot: Any) -> None:
    rows = parse_report(cot.csv([cot.row("054642", date(2021, 3, 16), cot.simple_positions(1))]), source="g").rows
    column = position_column("m_money_long", "old")
    for bad in (41771.5, float("inf"), 1e30):
        hostile = rows.astype({column: "float64"}).assign(**{column: bad})
        checked = validate_rows(hostile)
        assert checked.good.empty
        assert f"{column} is not a whole number within int64" in checked.quarantined["reason"].iloc[0]


def test_a_header_column_duplicated_after_trimming_is_a_clear_error(cot: Any) -> None:
    text = cot.csv([cot.row("054642", date(2021, 3, 16), cot.simple_positions(1))])
    header, rest = text.split(b"\r\n", 1)
    header = header.replace(b'"Report_Date_as_YYYY-MM-DD"', b'" Open_Interest_All "')
    with pytest.raises(CotParseError, match=r"g: column\(s\) Open_Interest_All appear more than once"):
        parse_report(header + b"\r\n" + rest, source="g")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10_000), junk=st.binary(max_size=20), at=st.integers(0, 10_000))
def test_any_damaged_file_is_a_report_or_a_cot_parse_error(cot: Any, cut: int, junk: bytes, at: int) -> None:
    text = cot.csv([cot.row("054642", date(2021, 3, 16 + 7 * i), cot.simple_positions(i)) for i in range(2)])
    damaged = text[:at] + junk + text[at:cut] if cut > at else text[:cut] + junk
    try:
        parsed = parse_report(damaged, source="g")
    except CotParseError as exc:
        assert str(exc).startswith("g: ")
        return
    good = validate_rows(parsed.rows).good
    assert good[list(POSITION_COLUMNS)].dtypes.eq("int64").all()
