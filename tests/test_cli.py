"""`hydra-daemon` commands as real subprocesses: effective config with secrets redacted, exit codes, every
`UserError` one line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hydra_daemon.cli", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_check_config_prints_effective_config() -> None:
    result = _cli("check-config", str(REPO / "config.toml"))
    assert result.returncode == 0, result.stderr
    assert 'cftc_code = "054642"' in result.stdout
    assert "flush_rows = 10000" in result.stdout


def test_check_config_redacts_s3_credentials(tmp_path: Path) -> None:
    config = tmp_path / "s3.toml"
    config.write_text(
        'state_dir = "/x"\n[storage]\narctic_uri = "s3://127.0.0.1:bucket?access=AKIAXXXX&secret=TOPSECRETVALUE&port=9"\n'
        '[[markets]]\nname="HE"\nfutures_root="HE"\noptions_root="HE"\ncftc_code="054642"\n'
    )
    result = _cli("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert "TOPSECRETVALUE" not in result.stdout
    assert "AKIAXXXX" not in result.stdout
    assert "secret=***" in result.stdout


def test_check_config_errors_exit_1_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('state_dir = "/x"\n[databento]\nheartbeat_interval_s = -5\n')
    result = _cli("check-config", str(config))
    assert result.returncode == 1
    assert str(config) in result.stderr
    assert "databento.heartbeat_interval_s" in result.stderr
    assert result.stdout == ""
    assert "markets" in result.stderr, "the missing [[markets]] is reported with the other error, not after a fix"


def _export_config(tmp_path: Path) -> Path:
    config = tmp_path / "export.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n[storage]\narctic_uri = "lmdb://{tmp_path / "arctic"}?map_size=1GB"\n'
        f'lake_dir = "{tmp_path / "lake"}"\n'
        '[[markets]]\nname="HE"\nfutures_root="HE"\noptions_root="HE"\ncftc_code="054642"\n'
    )
    return config


def test_export_publishes_partitions_of_a_real_store(tmp_path: Path) -> None:
    import pandas as pd
    import polars as pl

    from hydra_daemon.store.arctic import Store

    index = pd.date_range("2024-05-01 23:00", periods=4, freq="30min", tz="UTC", name="ts_event")
    bars = pd.DataFrame({"close": [80.0, 80.5, 81.0, 81.5]}, index=index)
    config = _export_config(tmp_path)
    with Store.open(f"lmdb://{tmp_path / 'arctic'}?map_size=1GB", writer=True) as store:
        store.library("futures").write("HE.ohlcv-1m", bars)
    args = ("--library", "futures", "--symbol", "HE.ohlcv-1m", "--start", "2024-05-01", "--end", "2024-05-03")
    result = _cli("export", "--config", str(config), *args)
    assert result.returncode == 0, result.stderr
    dataset = tmp_path / "lake" / "futures" / "HE.ohlcv-1m"
    assert result.stdout.split() == [str(dataset / "date=2024-05-01"), str(dataset / "date=2024-05-02")]
    lake = pl.scan_parquet(dataset / "**/*.parquet", hive_partitioning=True).collect().sort("ts_event")
    assert lake["close"].to_list() == [80.0, 80.5, 81.0, 81.5]


def test_export_of_a_missing_symbol_or_backwards_range_is_one_line_exit_1(tmp_path: Path) -> None:
    from hydra_daemon.store.arctic import Store

    config = _export_config(tmp_path)
    with Store.open(f"lmdb://{tmp_path / 'arctic'}?map_size=1GB", writer=True) as store:
        store.library("cot")
    missing = _cli(
        "export",
        "--config",
        str(config),
        "--library",
        "cot",
        "--symbol",
        "LE.cot",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
    )
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "error: export: no symbol 'LE.cot' in library 'cot'" in missing.stderr
    hidden = _cli("export", "--config", str(config), "--library", "cot", "--symbol", ".HE", "--start", "2024-01-01",
                  "--end", "2024-01-31")  # fmt: skip
    assert hidden.returncode == 1
    assert (
        hidden.stderr == "error: lake: symbol name '.HE' cannot be a directory name (no '/', no leading '.' or '_')\n"
    )
    backwards = _cli(
        "export",
        "--config",
        str(config),
        "--library",
        "cot",
        "--symbol",
        "HE.cot",
        "--start",
        "2024-02-01",
        "--end",
        "2024-01-01",
    )
    assert backwards.returncode == 1
    assert backwards.stderr == (
        "error: --end 2024-01-01 must be after --start 2024-02-01 (--end is exclusive: the first day not included)\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "cot", "--config", "c.toml", "--start-year", "99999999999999999999", "--end-year", "2021"],
        ["backfill", "cot", "--config", "c.toml", "--start-year", "2021", "--end-year", "１２"],
        ["backfill", "futures", "--config", "c.toml", "--market", "HE", "--start", "0000-01-01", "--end", "x"],
        ["demo", "--seconds", "nan"],
        ["demo", "--seconds", "inf"],
        ["demo", "--seconds", "-1"],
        ["export", "--config", "c.toml", "--library", "futures", "--symbol", "HE", "--start", "2024-13-01"],
    ],
)
def test_bad_arguments_are_one_usage_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from hydra_daemon.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument" in error and "Traceback" not in error


@settings(max_examples=200, deadline=None)
@given(
    argv=st.lists(
        st.sampled_from(["--start-year", "--end-year", "--seconds", "2021", "nan", "-5"]) | st.text(max_size=12),
        max_size=6,
    )
)
def test_any_argv_after_a_command_is_a_usage_error_or_a_config_error(argv: list[str]) -> None:
    """Whatever follows `backfill cot`/`demo --seconds`, the parser answers with exit 2 (usage) or the handler
    with exit 1 (the config file does not exist): never a traceback."""
    from hydra_daemon.cli import main

    for command in (["backfill", "cot", "--config", "/nonexistent/c.toml"], ["check-config"]):
        try:
            code = main([*command, *argv])
        except SystemExit as exit_:
            code = exit_.code
        assert code in (0, 1, 2)


def test_version() -> None:
    from importlib.metadata import version

    result = _cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"hydra-daemon {version('hydra-daemon')}\n"


def _config_file(tmp_path: Path, state_dir: Path, health_socket: Path) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{state_dir}"\nhealth_socket = "{health_socket}"\n'
        '[[markets]]\nname="HE"\nfutures_root="HE"\noptions_root="HE"\ncftc_code="054642"\n'
    )
    return config


@pytest.mark.parametrize("command", [["run"], ["backfill", "cot", "--start-year", "2020", "--end-year", "2021"]])
def test_a_state_dir_that_cannot_be_written_is_one_line(tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "run").mkdir()
    config = _config_file(tmp_path, blocker / "state", tmp_path / "run" / "health.sock")
    result = _cli(*command, "--config", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: state_dir {blocker / 'state'} cannot be created: Not a directory; create it for this user or set "
        "state_dir elsewhere\n"
    )


def test_run_refuses_a_missing_health_socket_directory_instead_of_creating_it(tmp_path: Path) -> None:
    socket = tmp_path / "missing" / "health.sock"
    result = _cli("run", "--config", str(_config_file(tmp_path, tmp_path / "state", socket)))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: health_socket directory {socket.parent} does not exist; create it (under systemd, "
        "RuntimeDirectory=hydra-daemon does) or set health_socket elsewhere\n"
    )
    assert not socket.parent.exists()


def test_backfill_cot_with_years_backwards_is_one_line() -> None:
    result = _cli("backfill", "cot", "--config", "c.toml", "--start-year", "2021", "--end-year", "2020")
    assert result.returncode == 1
    assert result.stderr == "error: --end-year 2020 is before --start-year 2021\n"


@pytest.mark.parametrize("command", [["backfill", "futures"], ["backfill", "options"], ["export"]])
def test_every_day_range_help_says_start_inclusive_end_exclusive(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from hydra_daemon.cli import main

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--start START first UTC day, included" in text
    assert "--end END UTC day the range ends before, excluded" in text


def test_readme_command_table_shows_every_required_option() -> None:
    """Each README row names the options its command requires (a reader copying it must not meet 'required')."""
    from hydra_daemon.cli import build_parser

    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `hydra-daemon ")]
    commands = {
        "run": ["--config"],
        "backfill futures": ["--config", "--market", "--start", "--end"],
        "backfill options": ["--config", "--market", "--start", "--end"],
        "backfill cot": ["--config", "--start-year", "--end-year"],
        "export": ["--config", "--library", "--symbol", "--start", "--end"],
    }
    parser = build_parser()
    for command, options in commands.items():
        (row,) = [r for r in rows if r.startswith(f"| `hydra-daemon {command} ")]
        for option in options:
            assert f"{option} " in row, (command, option)
        with pytest.raises(SystemExit):
            parser.parse_args(command.split())  # argparse agrees they are required


def test_a_user_error_raised_deep_in_a_command_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    config = _config_file(tmp_path, tmp_path / "state", tmp_path / "run" / "health.sock")
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABENTO_API_KEY", "CREDENTIALS_DIRECTORY")}
    result = subprocess.run(
        [sys.executable, "-m", "hydra_daemon.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=environ,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: no Databento API key")
    assert "Traceback" not in result.stderr


def test_help_and_health_load_no_storage_or_market_data_library() -> None:
    probe = (
        "import sys\n"
        "from hydra_daemon.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "code = main(['health', '--socket', '/nonexistent/health.sock'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'arcticdb', 'pandas', 'numpy', 'databento'})\n"
        "print(code, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.stdout.splitlines()[-1] == "2 []"
