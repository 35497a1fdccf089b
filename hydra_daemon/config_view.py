"""Render a `Config` as TOML-like text for `check-config`, with credentials in URIs redacted."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import date
from pathlib import Path
from typing import Any

from hydra_daemon.cme_sessions import MarketSchedule
from hydra_daemon.config import Config
from hydra_daemon.store.uri import redact_uri


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{redact_uri(value)}"'
    if isinstance(value, Path):
        return f'"{value}"'
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if value is None:
        return '""  # not set'
    if isinstance(value, MarketSchedule):
        return '""  # not set: the whole Globex session' if value.hours is None else f'"{value}"'
    return str(value)


def _table(obj: Any) -> list[str]:
    values = [(f.name, getattr(obj, f.name)) for f in fields(obj)]
    return [f"{name} = {_value(v)}" for name, v in values if not is_dataclass(v) or isinstance(v, MarketSchedule)]


def render_config(config: Config) -> str:
    """The effective configuration (defaults filled in, secrets redacted) as TOML-like text."""
    lines = [f"# effective configuration from {config.source or '<defaults>'}"]
    lines += [f"state_dir = {_value(config.state_dir)}", f"health_socket = {_value(config.health_socket)}"]
    for name in ("storage", "databento", "options", "cot", "health", "lake"):
        lines += ["", f"[{name}]", *_table(getattr(config, name))]
    for market in config.markets:
        lines += ["", "[[markets]]", *_table(market)]
    return "\n".join(lines)
