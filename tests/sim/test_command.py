"""`hydra-daemon sim` (via `python -m hydra_daemon.sim`) as a subprocess, driven by the real clients."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import databento as db
import httpx
import pytest
from databento_dbn import TradeMsg

from hydra_daemon.databento.historical_client import historical_client
from hydra_daemon.sim import command
from hydra_daemon.sim.command import configure, initial_faults, parse_timed_fault, run, venue_config
from hydra_daemon.sim.process import VenueProcess
from hydra_daemon.sim.venue import FAULT_NAMES
from tests.helpers import Collector, wait_until

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


def test_fault_flags_map_onto_named_faults() -> None:
    args = parse(
        *("--fault-stall", "--fault-pause", "--fault-slow", "9000", "--fault-auth-failure"),
        *("--fault-http-fail", "500:3", "--fault-http-delay", "2.5", "--fault-cftc-fail", "429:2"),
        *("--fault-cftc-slow", "40", "--fault-cftc-zip", "zip_bomb"),
    )
    faults = initial_faults(args)
    assert faults == [("stall", "1"), ("pause", "1"), ("slow", "9000.0"), ("auth_failure", "1"),
                      ("http_fail", "500:3"), ("http_delay", "2.5"), ("cftc_fail", "429:2"), ("cftc_slow", "40.0"),
                      ("cftc_zip_bomb", "")]  # fmt: skip
    assert {name for name, _ in faults} <= set(FAULT_NAMES)
    assert initial_faults(parse()) == []


def test_module_docstring_documents_every_fault_name_and_flag() -> None:
    doc = command.__doc__ or ""
    documented = set(re.findall(r"^ {4}([a-z_]+)(?=[=\[ ]|$)", doc, flags=re.MULTILINE))
    assert documented == set(FAULT_NAMES)
    parser = argparse.ArgumentParser()
    configure(parser)
    flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--fault")}
    assert flags - {"--fault-at"} and all(flag in doc for flag in flags)
    for zip_fault in command.CFTC_ZIP_FAULTS:
        assert f"--fault-cftc-zip {zip_fault}" in doc and f"cftc_{zip_fault}" in FAULT_NAMES


def test_a_bad_fault_flag_value_exits_2_naming_the_expected_form(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(parse("--live-port", "0", "--http-port", "0", "--fault-cftc-fail", "often"))
    assert code == 2
    assert "cftc_fail=STATUS[:COUNT]" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["reset", "x:reset", "5:meteor", "-1:reset"])
def test_bad_timed_faults_are_rejected_with_the_choices(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="SECONDS:NAME"):
        parse_timed_fault(bad)


def test_subprocess_venue_serves_live_and_historical_and_takes_faults(tmp_path: Path) -> None:
    record = tmp_path / "truth.dbn"
    args = ["--speed", "600", "--seed", "3", "--start", "2026-11-02T23:55:00", "--rate", "300", "--record", str(record)]
    with VenueProcess([*args, "--fault-cftc-fail", "503:1"]) as venue:
        info = venue.info
        assert info.dataset == DATASET and info.live_port > 0 and info.historical_url.startswith("http://127.0.0.1:")
        assert info.cftc_url == info.historical_url and info.api_key
        assert httpx.get(f"{info.historical_url}/sim/info").json() == info.as_dict()
        cftc_zip = f"{info.cftc_url}/files/dea/history/fut_disagg_txt_2026.zip"
        assert httpx.get(cftc_zip).status_code == 503  # the --fault-cftc-fail flag, once
        venue.fault("cftc_html", "1")
        assert httpx.get(cftc_zip).headers["content-type"].startswith("text/html")
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
