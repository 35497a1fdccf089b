"""`hydra-daemon sim` (via `python -m hydra_daemon.sim`) as a subprocess, driven by the real clients."""

from __future__ import annotations

import argparse
from pathlib import Path

import databento as db
import httpx
import pytest
from databento_dbn import TradeMsg

from hydra_daemon.sim.command import configure, parse_timed_fault, venue_config
from hydra_daemon.sim.historical_client import historical_client
from hydra_daemon.sim.process import VenueProcess
from hydra_daemon.sim.testing import Collector, wait_until

DATASET = "GLBX.MDP3"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def test_flags_map_onto_the_venue_config(tmp_path: Path) -> None:
    args = parse(
        *("--seed", "3", "--speed", "1440", "--roots", "he,cl", "--start", "2026-11-02T14:30:00", "--rate", "80"),
        *("--history", "3600", "--record", str(tmp_path / "t.dbn"), "--fault-stall", "--fault-http-fail", "503:2"),
        *("--fault-at", "5:down=2", "--api-key", "db-AnotherKeyAnotherKeyAnother12"),
    )
    config = venue_config(args)
    assert config.market.seed == 3 and config.market.speed == 1440 and config.market.base_rate == 80
    assert config.history_s == 3600
    assert [p.option_root for p in config.market.products] == ["HE", "LO"]
    assert config.market.start.isoformat() == "2026-11-02T14:30:00+00:00"
    assert config.record_path == tmp_path / "t.dbn" and config.api_keys == ("db-AnotherKeyAnotherKeyAnother12",)
    assert [(f.after_s, f.name, f.value) for f in args.fault_at] == [(5.0, "down", "2")]


@pytest.mark.parametrize("bad", ["reset", "x:reset", "5:meteor", "-1:reset"])
def test_bad_timed_faults_are_rejected_with_the_choices(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="SECONDS:NAME"):
        parse_timed_fault(bad)


def test_subprocess_venue_serves_live_and_historical_and_takes_faults(tmp_path: Path) -> None:
    record = tmp_path / "truth.dbn"
    args = ["--speed", "600", "--seed", "3", "--start", "2026-11-02T23:55:00", "--rate", "300", "--record", str(record)]
    with VenueProcess(args) as venue:
        info = venue.info
        assert info.dataset == DATASET and info.live_port > 0 and info.historical_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{info.historical_url}/sim/info").json() == info.as_dict()
        live = db.Live(key=info.api_key, gateway=info.live_host, port=info.live_port)
        sink = Collector()
        live.add_callback(sink)
        live.subscribe(DATASET, "trades", ["HE.FUT", "HE.OPT"], stype_in="parent", start=1793663700000000000)
        live.start()
        wait_until(lambda: len(sink.of(TradeMsg)) >= 10, "10 trades from the subprocess venue")
        live.stop()
        live.block_for_close(timeout=30)

        client = historical_client(info.api_key, info.historical_url)
        first = sink.of(TradeMsg)[0]
        store = client.timeseries.get_range(DATASET, first.ts_recv, first.ts_recv + 1, ["HE.OPT", "HE.FUT"],
                                            "trades", stype_in="parent")  # fmt: skip
        assert [bytes(r) for r in store] == [bytes(first)]

        venue.fault("auth_failure", "1")
        with pytest.raises(db.BentoError, match="Authentication failed"):
            db.Live(key=info.api_key, gateway=info.live_host, port=info.live_port).subscribe(
                DATASET, "trades", ["HE.FUT"], stype_in="parent"
            )
        assert venue.stop() == 0
    recorded = {bytes(r) for r in db.DBNStore.from_file(record)}
    assert {bytes(t) for t in sink.of(TradeMsg)} <= recorded
