"""Config loading: the shipped config is valid; every error names the file, the key and what was expected."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import fields, replace
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.cme_sessions import GLOBEX, MarketSchedule
from hydra_daemon.config import ConfigError, load_config, parse_config
from hydra_daemon.config_view import render_config

REPO = Path(__file__).resolve().parents[1]
MARKET_TOML = '[[markets]]\nname="HE"\nfutures_root="HE"\noptions_root="HE"\ncftc_code="054642"\n'
MARKET = {"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config.toml")
    assert config.market("HE").cftc_code == "054642"
    assert config.market("HE").hours == MarketSchedule.parse("08:30-13:05"), "CME livestock hours"
    assert config.storage.arctic_uri.startswith("lmdb:///var/lib/hydra-daemon/arctic")
    assert config.databento.futures_schemas == ("ohlcv-1d", "ohlcv-1m")
    assert config.cot.extra_closures == (date(2024, 12, 24),)
    assert config.lake.enabled and config.lake.export_delay_s == 1800.0


def test_defaults_fill_in_and_lmdb_lives_under_state_dir() -> None:
    config = parse_config({"state_dir": "/srv/hydra", "markets": [MARKET]})
    assert config.storage.arctic_uri.startswith("lmdb:///srv/hydra/")
    assert config.storage.lake_dir == Path("/srv/hydra/lake")
    assert config.databento.dataset == "GLBX.MDP3"


def test_a_storage_key_left_out_gets_the_shipped_measured_value() -> None:
    """config.toml's [storage] cadence is the measured one (its comments): a config without it must not fall back
    to settings measured as ~3x worse on disk."""
    shipped = load_config(REPO / "config.toml").storage
    bare = parse_config({"state_dir": "/srv/hydra", "markets": [MARKET]}).storage
    keep = ("arctic_uri", "lake_dir")
    assert replace(bare, arctic_uri=shipped.arctic_uri, lake_dir=shipped.lake_dir) == shipped, [
        (f.name, getattr(bare, f.name), getattr(shipped, f.name))
        for f in fields(shipped)
        if f.name not in keep and getattr(bare, f.name) != getattr(shipped, f.name)
    ]


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('state_dir = "/x"\nsurprise = 1\n' + MARKET_TOML, "surprise", "unknown key"),
        ('state_dir = "/x"\n[databento]\nlive_port = "13000"\n', "databento.live_port", "a positive number"),
        ('state_dir = "relative/dir"\n', "state_dir", "an absolute path"),
        ('state_dir = "/x"\n', "markets", "required"),
        ('state_dir = "/x"\n[storage]\narctic_uri = "ftp://nowhere"\n', "storage.arctic_uri", "expected"),
        (
            'state_dir = "/x"\n[[markets]]\nname="HE"\nfutures_root="HE"\noptions_root="HE"\ncftc_code=54642\n',
            "markets[0].cftc_code",
            "as a string",
        ),
        ('state_dir = "/x"\n[cot]\nextra_closures = ["2024-12-24"]\n', "cot.extra_closures", "TOML dates"),
        ('state_dir = "/x"\n[databento]\nfutures_schemas = ["mbp-10"]\n', "databento.futures_schemas", "ohlcv-1d"),
        ('state_dir = "/x"\n[databento]\npersist_quotes = 1\n', "databento.persist_quotes", "true or false"),
        ('state_dir = "/x"\n[lake]\nexport_delay_s = -5\n', "lake.export_delay_s", "a positive number"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert f"'{key}'" in message
    assert expected in message


def test_every_broken_table_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        'state_dir = "relative"\nsurprise = 1\n[databento]\nlive_port = 0\n[cot]\nretries = "5"\n'
        "[options]\nsnapshot_interval_s = 60\n" + MARKET_TOML
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"{path}: ") for line in lines)
    for key in ("'state_dir'", "'databento.live_port'", "'cot.retries'", "unknown key 'surprise'"):
        assert sum(key in line for line in lines) == 1, key


def test_bad_store_uri_error_never_echoes_its_credentials(tmp_path: Path) -> None:
    uri = "s3://127.0.0.1:bucket?access=AKIALEAKED&secret=TOPSECRETLEAKED&port=notanumber"
    path = _write(tmp_path, f'state_dir = "/x"\n[storage]\narctic_uri = "{uri}"\n' + MARKET_TOML)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "'storage.arctic_uri'" in message and "port must be a number" in message
    assert "TOPSECRETLEAKED" not in message and "AKIALEAKED" not in message
    assert "secret=***" in message


KEY = "db-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy"


@pytest.mark.parametrize(
    ("table", "key"),
    [("databento", "api_key_env"), ("databento", "credential_name"), ("databento", "dataset"), ("cot", "base_url")],
)
def test_an_api_key_pasted_into_the_config_is_never_echoed(tmp_path: Path, table: str, key: str) -> None:
    """Pasting the key where the variable or credential *name* goes must fail without printing it (found by a
    review helper: api_key_env echoed it, credential_name accepted it and check-config printed it)."""
    path = _write(tmp_path, f'state_dir = "/x"\n[{table}]\n{key} = "{KEY}"\n' + MARKET_TOML)
    try:
        shown = render_config(load_config(path))
    except ConfigError as error:
        shown = str(error)
        assert f"'{table}.{key}'" in shown
    assert KEY not in shown
    if key in ("api_key_env", "credential_name"):
        assert "looks like a Databento API key" in shown


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "state_dir = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml")


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(), min_size=1, max_size=3))
def test_any_unknown_top_level_key_is_rejected(extra: dict[str, int]) -> None:
    known = {"state_dir", "health_socket", "storage", "databento", "options", "cot", "health", "markets"}
    extra = {k: v for k, v in extra.items() if k not in known}
    if not extra:
        return
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"state_dir": "/x", "markets": [MARKET], **extra})


def test_shipped_config_documents_every_key() -> None:
    documented = tomllib.loads((REPO / "config.toml").read_text())
    for table in ("storage", "databento", "options", "cot", "health"):
        assert table in documented, f"config.toml lacks [{table}]"


VALID = {
    "state_dir": "/srv/hydra",
    "storage": {"flush_rows": 100, "flush_interval_s": 1.0},
    "databento": {"live_port": 13000, "replay_window_s": 3600, "live_gateway": "127.0.0.1"},
    "options": {"snapshot_interval_s": 60},
    "cot": {"timeout_s": 5, "retries": 2, "base_url": "http://127.0.0.1:8080"},
    "health": {"stale_after_s": 900},
    "lake": {"enabled": True, "export_delay_s": 600},
    "markets": [MARKET],
}
KEYS = [
    ("state_dir",),
    ("health_socket",),
    ("storage", "arctic_uri"),
    ("storage", "lake_dir"),
    ("storage", "flush_rows"),
    ("storage", "flush_interval_s"),
    ("storage", "compact_every"),
    ("storage", "maintenance_interval_s"),
    ("storage", "prune_grace_s"),
    ("storage", "keep_daily_snapshots_days"),
    ("databento", "dataset"),
    ("databento", "live_gateway"),
    ("databento", "live_port"),
    ("databento", "historical_url"),
    ("databento", "futures_schemas"),
    ("databento", "heartbeat_interval_s"),
    ("databento", "replay_window_s"),
    ("databento", "api_key_env"),
    ("databento", "credential_name"),
    ("options", "snapshot_interval_s"),
    ("options", "liquid_max_spread_ticks"),
    ("cot", "base_url"),
    ("cot", "revision_weeks"),
    ("cot", "extra_closures"),
    ("cot", "timeout_s"),
    ("cot", "poll_interval_s"),
    ("cot", "max_zip_bytes"),
    ("health", "stale_after_s"),
    ("health", "cot_grace_s"),
    ("health", "metrics_listen"),
    ("lake", "enabled"),
    ("lake", "export_delay_s"),
    ("markets",),
]
_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["/x\x00y", "/a\nb", "lmdb:///\x00", "http://h\x00/", "HE\n", "/" + "a" * 5000, "s3://h:b?port=²"]),
    st.booleans(),
    st.dates(),
    st.datetimes(),
)
_hostile = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _assert_within_ranges(config: object) -> None:
    from hydra_daemon.config import Config

    assert isinstance(config, Config)
    assert 1 <= config.databento.live_port <= 65535
    assert 1 <= config.databento.replay_window_s <= 24 * 3600
    floats = (config.storage.flush_interval_s, config.cot.timeout_s, config.options.snapshot_interval_s)
    for value in (*floats, config.lake.export_delay_s):
        assert isinstance(value, float) and 0 < value < float("inf")
    for path in (config.state_dir, config.health_socket, config.storage.lake_dir):
        assert path.is_absolute() and "\x00" not in str(path)
    assert "\x00" not in config.storage.arctic_uri
    assert len({m.name for m in config.markets}) == len(config.markets)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), value=_hostile)
def test_any_value_at_any_key_is_valid_or_one_config_error(key: tuple[str, ...], value: object) -> None:
    data = copy.deepcopy(VALID)
    *tables, last = key
    target = data
    for table in tables:
        target = target[table]
    target[last] = value
    try:
        config = parse_config(data, source=Path("/etc/hydra.toml"))
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("/etc/hydra.toml: ") and "<missing>" not in message
        assert all(len(line) < 400 for line in message.splitlines())
        return
    _assert_within_ranges(config)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_file_loads_or_is_one_config_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "hostile.toml"
    path.write_bytes(data)
    try:
        _assert_within_ranges(load_config(path))
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"state_dir = '\xff\xfe'\n", "not UTF-8"),
        (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
        (b"x = " + b"{a = " * 3000 + b"1" + b"}" * 3000 + b"\n", "nested too deeply"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_a_nul_byte_in_the_config_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Path("/etc/hydra\x00.toml"))


@pytest.mark.parametrize(
    ("table", "key", "value", "expected"),
    [
        (None, "state_dir", "/var/lib/\x00hydra", "no NUL"),
        (None, "health_socket", "/run/" + "s" * 120, "at most 107 bytes"),
        ("storage", "flush_interval_s", float("nan"), "a positive number"),
        ("storage", "flush_interval_s", float("inf"), "a positive number up to 3600"),
        ("cot", "timeout_s", float("-inf"), "a positive number"),
        ("databento", "live_port", 65536, "up to 65535"),
        ("databento", "replay_window_s", 24 * 3600 + 1, "up to 86400"),
        ("storage", "flush_rows", 10**30, "a positive number"),
        ("storage", "arctic_uri", "lmdb:///srv/\x00x", "control characters"),
        ("databento", "api_key_env", "KEY\x00", "an environment variable name"),
        ("cot", "base_url", "http://host\x00/x", "an http:// or https:// URL"),
        ("cot", "extra_closures", [datetime(2024, 12, 24, 10)], "TOML dates"),
        ("databento", "futures_schemas", ["ohlcv-1d", "ohlcv-1d"], "distinct"),
        ("databento", "max_historical_cost_usd", -0.01, "a non-negative amount of US dollars"),
        ("databento", "max_historical_cost_usd", float("nan"), "a non-negative amount of US dollars"),
        ("databento", "max_historical_cost_usd", float("inf"), "a non-negative amount of US dollars"),
        ("databento", "max_historical_cost_usd", "10", "a non-negative amount of US dollars"),
    ],
)
def test_hostile_values_are_rejected(table: str | None, key: str, value: object, expected: str) -> None:
    data = copy.deepcopy(VALID)
    (data[table] if table else data)[key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=Path("/etc/hydra.toml"))
    assert expected in str(info.value)
    assert f"'{table + '.' if table else ''}{key}'" in str(info.value)


def test_a_duplicated_market_names_the_duplicate_not_a_missing_value() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"markets": [MARKET, MARKET]}, source=Path("/etc/hydra.toml"))
    message = str(info.value)
    assert "<missing>" not in message
    assert "each market needs its own name; HE appears twice" in message


def test_health_table_thresholds_and_metrics_listener() -> None:
    health = parse_config({"markets": [MARKET], "health": {"metrics_listen": "[::1]:9464", "stale_after_s": 60}}).health
    assert (health.stale_after_s, health.cot_grace_s, health.metrics_address()) == (60.0, 21600.0, ("::1", 9464))
    assert parse_config({"markets": [MARKET]}).health.metrics_address() is None
    for bad in ("9464", "127.0.0.1:0", "host:65536", "a b:1"):
        with pytest.raises(ConfigError, match=r"key 'health\.metrics_listen': expected HOST:PORT"):
            parse_config({"markets": [MARKET], "health": {"metrics_listen": bad}})


def test_a_market_trades_the_whole_globex_session_unless_its_hours_say_otherwise() -> None:
    cattle = {**MARKET, "name": "LE", "futures_root": "LE", "options_root": "LE", "hours": "08:30-13:05"}
    config = parse_config({"markets": [MARKET, cattle]})
    assert config.market("HE").hours == GLOBEX
    assert config.market("LE").hours == MarketSchedule.parse("08:30-13:05")
    shown = render_config(config)
    assert 'hours = "08:30-13:05"' in shown and 'hours = ""  # not set: the whole Globex session' in shown


@given(
    hours=st.one_of(st.text(max_size=14), st.sampled_from(["8:30-13:05", "13:05-08:30", "08:30-17:00"]), st.integers())
)
def test_bad_hours_are_one_line_naming_the_market_and_the_value(hours: object) -> None:
    try:
        config = parse_config({"markets": [{**MARKET, "hours": hours}]}, source=Path("/etc/hydra.toml"))
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith("/etc/hydra.toml: key 'markets[0].hours': expected market HE's trading hours as")
        shown = repr(hours)  # cut at 80 characters: the line stays readable whatever the file holds
        assert message.endswith(f"got {shown if len(shown) <= 80 else shown[:77] + '...'}")
        return
    assert isinstance(hours, str) and str(config.market("HE").hours) == hours
