"""Typed daemon configuration loaded from TOML.

Unknown keys, wrong types, missing required values, bad URIs and numbers outside their range (NaN and infinity
included) are rejected with a `ConfigError` that names the file, the key and what was expected; so is a file that
is not UTF-8 or not TOML. Secrets never live here: see `hydra_daemon.secrets`.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from hydra_daemon.cme_sessions import GLOBEX, HOURS_EXPECTED, MarketSchedule
from hydra_daemon.errors import UserError
from hydra_daemon.store.uri import default_lmdb_uri, validate_uri


class ConfigError(UserError, ValueError):
    """The configuration file is invalid; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class MarketConfig:
    """One market: its name (used in symbols), futures and options parent roots, CFTC contract market code, and when
    it trades on Globex (`hours`; health expects its data then only)."""

    name: str
    futures_root: str
    options_root: str
    cftc_code: str
    hours: MarketSchedule = GLOBEX


@dataclass(frozen=True)
class DatabentoConfig:
    """Databento source settings; `live_gateway`/`historical_url` override the production endpoints."""

    dataset: str = "GLBX.MDP3"
    live_gateway: str | None = None
    live_port: int = 13000
    historical_url: str | None = None
    futures_schemas: tuple[str, ...] = ("ohlcv-1d",)
    persist_quotes: bool = True
    heartbeat_interval_s: int = 30
    replay_window_s: int = 23 * 3600
    max_historical_cost_usd: float = 10.0
    api_key_env: str = "DATABENTO_API_KEY"
    credential_name: str = "databento_api_key"


@dataclass(frozen=True)
class StorageConfig:
    """Where data goes, how the writer batches it, and how maintenance keeps the store small. The defaults are the
    shipped config.toml's, whose comments give the measurements behind them (a key left out gets the measured
    choice, not an older one)."""

    arctic_uri: str
    lake_dir: Path
    flush_rows: int = 10_000
    flush_interval_s: float = 5.0
    compact_every: int = 60
    maintenance_interval_s: float = 10.0
    prune_grace_s: float = 10.0
    keep_daily_snapshots_days: int = 30


@dataclass(frozen=True)
class OptionsConfig:
    """Chain snapshot cadence and the definition of a liquid strike."""

    snapshot_interval_s: float = 60.0
    liquid_max_spread_ticks: int = 10
    liquid_min_open_interest: int = 1


@dataclass(frozen=True)
class CotConfig:
    """CFTC COT fetching: base URL, revision look-back, extra closures, fetch limits."""

    enabled: bool = True
    base_url: str = "https://www.cftc.gov"
    revision_weeks: int = 4
    extra_closures: tuple[date, ...] = ()
    timeout_s: float = 30.0
    retries: int = 5
    poll_interval_s: float = 300.0
    max_zip_bytes: int = 64 * 1024 * 1024
    max_uncompressed_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class HealthConfig:
    """Health thresholds and the optional metrics listener (see `hydra_daemon.runtime.assessment`).

    `stale_after_s`: open-market seconds (data clock, the market's hours) past a schema's own cadence without any
    record of one of its markets before a market-data pipeline is degraded; `cot_grace_s`: how long after its
    scheduled release a COT report may be missing before the COT pipeline is degraded; `metrics_listen`:
    "HOST:PORT" for a TCP listener serving /metrics and /health besides the Unix socket (None: socket only).
    """

    stale_after_s: float = 900.0
    cot_grace_s: float = 6 * 3600.0
    metrics_listen: str | None = None

    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of `metrics_listen` (validated at load), None when unset."""
        if self.metrics_listen is None:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class LakeConfig:
    """The daemon's own Parquet lake export: on or off, and how long after a day completes (the CME session in
    progress at the end of the UTC day has closed) or a COT cycle writes it is exported, so late gap fills land first.
    """

    enabled: bool = True
    export_delay_s: float = 1800.0


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration; `source` is the file it came from (None for defaults)."""

    state_dir: Path
    health_socket: Path
    storage: StorageConfig
    databento: DatabentoConfig
    options: OptionsConfig
    cot: CotConfig
    markets: tuple[MarketConfig, ...]
    health: HealthConfig = HealthConfig()
    lake: LakeConfig = LakeConfig()
    source: Path | None = None

    def market(self, name: str) -> MarketConfig:
        """The market called `name`; ConfigError naming the configured ones otherwise."""
        for market in self.markets:
            if market.name == name:
                return market
        have = ", ".join(m.name for m in self.markets)
        raise ConfigError(f"{self.source or '<config>'}: no market {name!r} in [[markets]] (have: {have})")


_ROOT = re.compile(r"[A-Z0-9]{1,6}")
_CFTC_CODE = re.compile(r"[0-9A-Z]{6}")
_DATASET = re.compile(r"[A-Z0-9]{1,16}(\.[A-Z0-9]{1,16}){0,3}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:.]{2,45}\]?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_CREDENTIAL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_API_KEY_LIKE = re.compile(r"\bdb-[A-Za-z0-9]{20,}\b")
"""A Databento API key pasted into the config: never echoed, refused where a name of where to find it belongs."""
_URL = re.compile(r"https?://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?(/[!-~]*)?")
_MAX_INT64 = 2**63 - 1
_MAX_PATH_BYTES = 4096
_MAX_SOCKET_PATH_BYTES = 107
"""AF_UNIX paths are limited to 108 bytes including the terminating NUL."""
_SHOWN_CHARS = 80


class _Reader:
    """Pulls typed values out of one TOML table, remembering the dotted path for error messages."""

    def __init__(self, path: Path | None, table: Mapping[str, Any], prefix: str) -> None:
        self.path = path
        self.table = dict(table)
        self.prefix = prefix

    def fail(self, key: str, expected: str) -> ConfigError:
        """A ConfigError for `key` naming what was expected and, when the key is present, what was found."""
        if key not in self.table:
            return self.error(key, f"expected {expected}")
        return self.error(key, f"expected {expected}, got {_shown(self.table[key])}")

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError for `key` with `message` as is (for values that must not be echoed, like store URIs)."""
        where = str(self.path) if self.path else "<config>"
        return ConfigError(f"{where}: key '{self.prefix}{key}': {message}")

    def take(self, key: str, kind: type | tuple[type, ...], expected: str, default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                raise self.fail(key, expected + " (required)")
            return default
        value = self.table.pop(key)
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.table[key] = value
            raise self.fail(key, expected)
        if not isinstance(value, kind):
            self.table[key] = value
            raise self.fail(key, expected)
        return value

    def sub(self, key: str) -> _Reader:
        value = self.take(key, dict, "a table", {})
        return _Reader(self.path, value, f"{self.prefix}{key}.")

    def finish(self) -> None:
        if self.table:
            key = sorted(self.table)[0]
            where = str(self.path) if self.path else "<config>"
            raise ConfigError(f"{where}: unknown key '{self.prefix}{key}' (check spelling; see config.toml)")

    def positive(self, key: str, default: Any, kind: type | tuple[type, ...] = int, maximum: int = _MAX_INT64) -> Any:
        """A number in (0, maximum]: an integer for `kind=int`, a finite int or float for `kind=(int, float)`."""
        expected = f"a positive number up to {maximum}" if maximum != _MAX_INT64 else "a positive number"
        value = self.take(key, kind, expected, default)
        if (isinstance(value, float) and not math.isfinite(value)) or not 0 < value <= maximum:
            self.table[key] = value
            raise self.fail(key, expected)
        return value


def _shown(value: Any) -> str:
    """`repr(value)`, cut short: an error line stays one readable line whatever the file holds."""
    text = _API_KEY_LIKE.sub("db-***", repr(value))
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _dataclass_defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls)}


def _markets(reader: _Reader) -> tuple[MarketConfig, ...]:
    raw = reader.take("markets", list, "an array of [[markets]] tables")
    if not raw:
        raise reader.error("markets", "expected at least one [[markets]] table, got none")
    markets = []
    for index, table in enumerate(raw):
        if not isinstance(table, dict):
            raise reader.error(f"markets[{index}]", f"expected a [[markets]] table, got {_shown(table)}")
        item = _Reader(reader.path, table, f"markets[{index}].")
        name = _pattern(item, "name", _ROOT, "an upper-case market name like 'HE'")
        market = MarketConfig(
            name=name,
            futures_root=_pattern(item, "futures_root", _ROOT, "a futures parent root like 'HE'"),
            options_root=_pattern(item, "options_root", _ROOT, "an options parent root like 'HE'"),
            cftc_code=_pattern(item, "cftc_code", _CFTC_CODE, "a 6-character CFTC code as a string, like '054642'"),
            hours=_hours(item, name),
        )
        item.finish()
        markets.append(market)
    for field_name in ("name", "futures_root", "options_root"):
        values = [getattr(m, field_name) for m in markets]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise reader.error("markets", f"each market needs its own {field_name}; {', '.join(twice)} appears twice")
    return tuple(markets)


def _hours(reader: _Reader, market: str) -> MarketSchedule:
    """`hours = "08:30-13:05"`: the market trades only then on Globex trading dates; absent: the whole session."""
    expected = f"market {market}'s trading hours as {HOURS_EXPECTED}"
    text = reader.take("hours", str, expected, None)
    if text is None:
        return GLOBEX
    try:
        return MarketSchedule.parse(text)
    except ValueError:
        reader.table["hours"] = text
        raise reader.fail("hours", expected) from None


def _pattern(reader: _Reader, key: str, pattern: re.Pattern[str], expected: str) -> str:
    value: str = reader.take(key, str, expected)
    if not pattern.fullmatch(value):
        reader.table[key] = value
        raise reader.fail(key, expected)
    return value


def _databento(reader: _Reader) -> DatabentoConfig:
    d = _dataclass_defaults(DatabentoConfig)
    expected = "a list of schemas from ohlcv-1d, ohlcv-1m"
    schemas = reader.take("futures_schemas", list, expected, list(d["futures_schemas"]))
    valid = all(isinstance(s, str) and s in ("ohlcv-1d", "ohlcv-1m") for s in schemas)
    if not schemas or not valid or len(set(schemas)) != len(schemas):
        reader.table["futures_schemas"] = schemas
        raise reader.fail("futures_schemas", "a non-empty list of distinct schemas from ohlcv-1d, ohlcv-1m")
    config = DatabentoConfig(
        dataset=_text(reader, "dataset", _DATASET, "a dataset name like 'GLBX.MDP3'", d["dataset"]),
        live_gateway=_text(reader, "live_gateway", _HOST, "a host name or IP address", None),
        live_port=reader.positive("live_port", d["live_port"], maximum=65535),
        historical_url=_url(reader, "historical_url", None),
        futures_schemas=tuple(schemas),
        persist_quotes=reader.take("persist_quotes", bool, "true or false", d["persist_quotes"]),
        heartbeat_interval_s=reader.positive("heartbeat_interval_s", d["heartbeat_interval_s"], maximum=3600),
        replay_window_s=reader.positive("replay_window_s", d["replay_window_s"], maximum=24 * 3600),
        max_historical_cost_usd=_dollars(reader, "max_historical_cost_usd", d["max_historical_cost_usd"]),
        api_key_env=_text(reader, "api_key_env", _ENV_NAME, "an environment variable name", d["api_key_env"]),
        credential_name=_text(
            reader, "credential_name", _CREDENTIAL, "a systemd credential name", d["credential_name"]
        ),
    )
    reader.finish()
    return config


def _text(reader: _Reader, key: str, pattern: re.Pattern[str], expected: str, default: str | None) -> Any:
    """An optional string matching `pattern` whole (no control characters, no NUL, bounded length)."""
    value: str | None = reader.take(key, str, expected, default)
    if value is not None and _API_KEY_LIKE.fullmatch(value.strip()):
        raise reader.error(key, f"expected {expected}, got what looks like a Databento API key: name where the key is")
    if value is not None and not pattern.fullmatch(value):
        reader.table[key] = value
        raise reader.fail(key, expected)
    return value


def _dollars(reader: _Reader, key: str, default: float) -> float:
    expected = "a non-negative amount of US dollars, like 10.0"
    value = reader.take(key, (int, float), expected, default)
    if not math.isfinite(value) or value < 0:
        reader.table[key] = value
        raise reader.fail(key, expected)
    return float(value)


def _url(reader: _Reader, key: str, default: str | None) -> str | None:
    value: str | None = reader.take(key, str, "an http:// or https:// URL", default)
    if value is not None and not _URL.fullmatch(value):
        reader.table[key] = value
        raise reader.fail(key, "an http:// or https:// URL")
    return value.rstrip("/") if value else value


def _cot(reader: _Reader) -> CotConfig:
    d = _dataclass_defaults(CotConfig)
    closures = reader.take("extra_closures", list, "a list of dates like 2026-12-24", [])
    if any(not isinstance(c, date) or isinstance(c, datetime) for c in closures):
        reader.table["extra_closures"] = closures
        raise reader.fail("extra_closures", "a list of TOML dates like [2026-12-24]")
    config = CotConfig(
        enabled=reader.take("enabled", bool, "true or false", d["enabled"]),
        base_url=_url(reader, "base_url", d["base_url"]) or d["base_url"],
        revision_weeks=reader.positive("revision_weeks", d["revision_weeks"], maximum=52),
        extra_closures=tuple(closures),
        timeout_s=float(reader.positive("timeout_s", d["timeout_s"], (int, float), maximum=3600)),
        retries=reader.positive("retries", d["retries"], maximum=100),
        poll_interval_s=float(reader.positive("poll_interval_s", d["poll_interval_s"], (int, float), maximum=86400)),
        max_zip_bytes=reader.positive("max_zip_bytes", d["max_zip_bytes"], maximum=1 << 32),
        max_uncompressed_bytes=reader.positive("max_uncompressed_bytes", d["max_uncompressed_bytes"], maximum=1 << 34),
    )
    reader.finish()
    return config


def _lake(reader: _Reader) -> LakeConfig:
    d = _dataclass_defaults(LakeConfig)
    config = LakeConfig(
        enabled=reader.take("enabled", bool, "true or false", d["enabled"]),
        export_delay_s=float(reader.positive("export_delay_s", d["export_delay_s"], (int, float), maximum=7 * 86400)),
    )
    reader.finish()
    return config


def _options(reader: _Reader) -> OptionsConfig:
    d = _dataclass_defaults(OptionsConfig)
    config = OptionsConfig(
        snapshot_interval_s=float(
            reader.positive("snapshot_interval_s", d["snapshot_interval_s"], (int, float), maximum=86400)
        ),
        liquid_max_spread_ticks=reader.positive("liquid_max_spread_ticks", d["liquid_max_spread_ticks"], maximum=10**6),
        liquid_min_open_interest=reader.positive(
            "liquid_min_open_interest", d["liquid_min_open_interest"], maximum=10**9
        ),
    )
    reader.finish()
    return config


def _storage(reader: _Reader, state_dir: Path) -> StorageConfig:
    d = _dataclass_defaults(StorageConfig)
    uri = reader.take("arctic_uri", str, "an ArcticDB URI (lmdb:///abs/path or s3://host:bucket?...)", None)
    if uri is None:
        uri = default_lmdb_uri(state_dir)
    elif any(ord(c) < 0x20 or c == "\x7f" for c in uri):
        raise reader.error("arctic_uri", "control characters (NUL, newline, ...) are not allowed in a store URI")
    else:
        try:
            uri = validate_uri(uri)
        except ValueError as exc:
            raise reader.error("arctic_uri", str(exc)) from None
    config = StorageConfig(
        arctic_uri=uri,
        lake_dir=_path(reader, "lake_dir", state_dir / "lake"),
        flush_rows=reader.positive("flush_rows", d["flush_rows"], maximum=10**8),
        flush_interval_s=float(reader.positive("flush_interval_s", d["flush_interval_s"], (int, float), maximum=3600)),
        compact_every=reader.positive("compact_every", d["compact_every"], maximum=10**6),
        maintenance_interval_s=float(
            reader.positive("maintenance_interval_s", d["maintenance_interval_s"], (int, float), maximum=86_400)
        ),
        prune_grace_s=float(reader.positive("prune_grace_s", d["prune_grace_s"], (int, float), maximum=86_400)),
        keep_daily_snapshots_days=reader.positive(
            "keep_daily_snapshots_days", d["keep_daily_snapshots_days"], maximum=100_000
        ),
    )
    reader.finish()
    return config


def _path(reader: _Reader, key: str, default: Path, max_bytes: int = _MAX_PATH_BYTES) -> Path:
    expected = f"an absolute path (no NUL or newline, at most {max_bytes} bytes)"
    value = reader.take(key, str, expected, None)
    if value is None:
        return default
    if not value.startswith("/") or any(c in value for c in "\0\n\r") or len(value.encode()) > max_bytes:
        reader.table[key] = value
        raise reader.fail(key, expected)
    return Path(value)


_DEFAULT_STATE_DIR = Path("/var/lib/hydra-daemon")
T = TypeVar("T")


class _Problems:
    """Collects one ConfigError per top-level key or table, so a config's errors are all reported at once."""

    def __init__(self, root: _Reader) -> None:
        self._root = root
        self.messages: list[str] = []

    def check(self, key: str, build: Callable[[], T]) -> T | None:
        try:
            return build()
        except ConfigError as exc:
            self.messages.append(str(exc))
            self._root.table.pop(key, None)  # reported already; not an unknown key too
            return None


_LISTEN = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>[0-9]{1,5})")


def _health(reader: _Reader) -> HealthConfig:
    d = _dataclass_defaults(HealthConfig)
    listen = reader.take("metrics_listen", str, "HOST:PORT like '127.0.0.1:9464'", None)
    if listen is not None:
        match = _LISTEN.fullmatch(listen)
        if match is None or not 0 < int(match["port"]) <= 65535:
            reader.table["metrics_listen"] = listen
            raise reader.fail("metrics_listen", "HOST:PORT like '127.0.0.1:9464' (port 1-65535)")
    config = HealthConfig(
        stale_after_s=float(reader.positive("stale_after_s", d["stale_after_s"], (int, float), maximum=7 * 86_400)),
        cot_grace_s=float(reader.positive("cot_grace_s", d["cot_grace_s"], (int, float), maximum=7 * 86_400)),
        metrics_listen=listen,
    )
    reader.finish()
    return config


def parse_config(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """Build a `Config` from parsed TOML; raise `ConfigError` naming the file and key of every problem (one per
    top-level key or table, one line each)."""
    root = _Reader(source, data, "")
    problems = _Problems(root)
    state_dir = problems.check("state_dir", lambda: _path(root, "state_dir", _DEFAULT_STATE_DIR)) or _DEFAULT_STATE_DIR
    health_socket = problems.check(
        "health_socket",
        lambda: _path(root, "health_socket", Path("/run/hydra-daemon/health.sock"), _MAX_SOCKET_PATH_BYTES),
    )
    storage = problems.check("storage", lambda: _storage(root.sub("storage"), state_dir))
    databento = problems.check("databento", lambda: _databento(root.sub("databento")))
    options = problems.check("options", lambda: _options(root.sub("options")))
    cot = problems.check("cot", lambda: _cot(root.sub("cot")))
    lake = problems.check("lake", lambda: _lake(root.sub("lake")))
    markets = problems.check("markets", lambda: _markets(root))
    health = problems.check("health", lambda: _health(root.sub("health")))
    problems.check("", root.finish)
    if problems.messages:
        raise ConfigError("\n".join(problems.messages))
    assert health_socket and storage and databento and options and cot and lake and markets and health
    return Config(
        state_dir=state_dir,
        health_socket=health_socket,
        storage=storage,
        databento=databento,
        options=options,
        cot=cot,
        markets=markets,
        health=health,
        lake=lake,
        source=source,
    )


def load_config(path: Path) -> Config:
    """Read and validate a TOML config file; every problem (unreadable, not UTF-8, not TOML, nested too deeply,
    invalid values) is a `ConfigError`."""
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path!s:.200}: cannot read config file: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    return parse_config(parsed, source=path)
