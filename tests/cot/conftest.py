"""Builders for synthetic CFTC disaggregated futures-only files (all 191 columns) used by the COT tests."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from pathlib import Path

import pytest

from hydra_daemon.cot.columns import COLUMNS
from hydra_daemon.cot.parse import SOURCE_POSITION_COLUMNS, position_column
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.sim.http_types import HttpRequest, HttpResponse

REAL_2021_ZIP = Path(__file__).resolve().parents[1] / "data" / "fut_disagg_txt_2021.zip"

# Position stems that are free inputs; totals, open interest and non-reportable short are derived.
FREE_STEMS = (
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


class CotBuilder:
    """Makes consistent (identity-satisfying) rows, CSV text in the CFTC layout, and zips."""

    def segment(self, free: Mapping[str, int]) -> dict[str, int]:
        """Complete one segment from the free stems so every identity holds (non-negative throughout)."""
        s = dict(free)
        s["tot_rept_long"] = sum(
            s[k]
            for k in (
                "prod_merc_long",
                "swap_long",
                "swap_spread",
                "m_money_long",
                "m_money_spread",
                "other_rept_long",
                "other_rept_spread",
            )
        )
        s["tot_rept_short"] = sum(
            s[k]
            for k in (
                "prod_merc_short",
                "swap_short",
                "swap_spread",
                "m_money_short",
                "m_money_spread",
                "other_rept_short",
                "other_rept_spread",
            )
        )
        shortfall = max(0, s["tot_rept_short"] - s["tot_rept_long"] - s["nonrept_long"])
        s["nonrept_long"] += shortfall
        s["open_interest"] = s["tot_rept_long"] + s["nonrept_long"]
        s["nonrept_short"] = s["open_interest"] - s["tot_rept_short"]
        return s

    def positions(self, old: Mapping[str, int], other: Mapping[str, int]) -> dict[str, int]:
        """Our position columns for All/Old/Other with All = Old + Other (segments from `segment`)."""
        out = {}
        for stem in old:
            out[position_column(stem, "old")] = old[stem]
            out[position_column(stem, "other")] = other[stem]
            out[position_column(stem, "all")] = old[stem] + other[stem]
        return out

    def simple_positions(self, seed: int) -> dict[str, int]:
        """A deterministic consistent position set; different seeds give different values."""
        old = self.segment({stem: 100 + 7 * i + seed for i, stem in enumerate(FREE_STEMS)})
        other = self.segment({stem: 10 + 3 * i + seed for i, stem in enumerate(FREE_STEMS)})
        return self.positions(old, other)

    def row(
        self,
        code: str,
        as_of: date,
        positions: Mapping[str, int | str],
        *,
        fut_only: str = "FutOnly",
        name: str = "LEAN HOGS - CHICAGO MERCANTILE EXCHANGE",
    ) -> dict[str, str]:
        """One raw row (CFTC column -> text) with CFTC-like padding; unlisted numeric columns get '.'."""
        raw = {column: "." for column in COLUMNS}
        raw.update(
            {
                "Market_and_Exchange_Names": name,
                "As_of_Date_In_Form_YYMMDD": as_of.strftime("%y%m%d"),
                "Report_Date_as_YYYY-MM-DD": as_of.isoformat(),
                "CFTC_Contract_Market_Code": code,
                "CFTC_Market_Code": "CME ",
                "CFTC_Region_Code": "00",
                "CFTC_Commodity_Code": "054 ",
                "Contract_Units": "(CONTRACTS OF 40,000 POUNDS)",
                "CFTC_Contract_Market_Code_Quotes": code,
                "CFTC_Market_Code_Quotes": "CME ",
                "CFTC_Commodity_Code_Quotes": "054 ",
                "CFTC_SubGroup_Code": "A10",
                "FutOnly_or_Combined": fut_only,
            }
        )
        for ours, value in positions.items():
            raw[SOURCE_POSITION_COLUMNS[ours]] = f"{value:>8}" if isinstance(value, int) else value
        return raw

    def csv(self, rows: Sequence[Mapping[str, str]]) -> bytes:
        """CFTC layout: quoted header, quoted text columns, padded unquoted numbers."""
        quoted = {
            "Market_and_Exchange_Names",
            "Contract_Units",
            "CFTC_Contract_Market_Code_Quotes",
            "CFTC_Market_Code_Quotes",
            "CFTC_Commodity_Code_Quotes",
            "CFTC_SubGroup_Code",
            "FutOnly_or_Combined",
        }
        lines = [",".join(f'"{c}"' for c in COLUMNS)]
        for row in rows:
            lines.append(",".join(f'"{row[c]}"' if c in quoted else row[c] for c in COLUMNS))
        return ("\r\n".join(lines) + "\r\n").encode()

    def zip(self, text: bytes, member: str = "f_year.txt") -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, text)
        return buffer.getvalue()


@pytest.fixture(scope="session")
def cot() -> CotBuilder:
    return CotBuilder()


@pytest.fixture(scope="session")
def real_2021_text() -> bytes:
    with zipfile.ZipFile(REAL_2021_ZIP) as archive:
        return archive.read("f_year.txt")


class ScriptedFiles:
    """A `Route` serving scripted answers per path, in order; the last answer repeats. Records requested paths."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[HttpResponse]] = {}
        self.requested: list[str] = []

    def set(self, path: str, *responses: HttpResponse) -> None:
        self.scripts[path] = list(responses)

    def respond(self, request: HttpRequest) -> HttpResponse | None:
        self.requested.append(request.path)
        script = self.scripts.get(request.path)
        if not script:
            return None
        return script.pop(0) if len(script) > 1 else script[0]


@pytest.fixture
async def scripted_server() -> AsyncIterator[tuple[ScriptedFiles, str]]:
    """A real loopback HTTP server (the simulated venue's) serving a `ScriptedFiles` route."""
    files = ScriptedFiles()
    server = HttpServer("127.0.0.1", 0, [files])
    await server.start()
    try:
        yield files, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()
