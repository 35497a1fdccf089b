"""Config loading: the shipped config is valid; every error names the file, the key and what was expected."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.config import ConfigError, load_config, parse_config

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
    assert config.storage.arctic_uri.startswith("lmdb:///var/lib/hydra-daemon/arctic")
    assert config.databento.futures_schemas == ("ohlcv-1d", "ohlcv-1m")
    assert config.cot.extra_closures == (date(2024, 12, 24),)


def test_defaults_fill_in_and_lmdb_lives_under_state_dir() -> None:
    config = parse_config({"state_dir": "/srv/hydra", "markets": [MARKET]})
    assert config.storage.arctic_uri.startswith("lmdb:///srv/hydra/")
    assert config.storage.lake_dir == Path("/srv/hydra/lake")
    assert config.databento.dataset == "GLBX.MDP3"


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
    known = {"state_dir", "health_socket", "storage", "databento", "options", "cot", "markets"}
    extra = {k: v for k, v in extra.items() if k not in known}
    if not extra:
        return
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"state_dir": "/x", "markets": [MARKET], **extra})


def test_shipped_config_documents_every_key() -> None:
    documented = tomllib.loads((REPO / "config.toml").read_text())
    for table in ("storage", "databento", "options", "cot"):
        assert table in documented, f"config.toml lacks [{table}]"
