"""Child process for the COT panel crash test (``python cot_panel_writer.py URI``): records weekly COT rows of
HE, LE and ZC like the COT cycle, refreshing the panel after each cycle; after each market's append it prints
``recorded WEEK MARKET`` and waits for a line on stdin, so the test can SIGKILL it between an append and the panel's
rewrite."""

from __future__ import annotations

import sys

import pandas as pd
import structlog

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.symbols import COT, cot_symbol

FIRST = pd.Timestamp("2018-01-02", tz="UTC")
MARKETS = ("HE", "LE", "ZC")


def main(uri: str) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with Store.open(uri, writer=True) as store:
        for week in range(1000):
            as_of = FIRST + pd.Timedelta(weeks=week)
            for number, market in enumerate(MARKETS):
                frame = pd.DataFrame(
                    {"as_of": [as_of], "open_interest_all": [float(number * 1000 + week)], "code": "1"}
                )
                table = BitemporalTable(store.library(COT), cot_symbol(market), lock=store.symbol_lock(COT, market))
                released = as_of + pd.Timedelta(days=3, hours=20, minutes=30)
                table.record(
                    frame, value_columns=["open_interest_all", "code"], available_at=released, ingested_at=released
                )
                print(f"recorded {week} {market}", flush=True)
                sys.stdin.readline()
            refresh_cot_panel(store)


if __name__ == "__main__":
    main(sys.argv[1])
