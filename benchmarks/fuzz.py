"""Hostile inputs through the project's own entry points, counted per boundary. Not a test; prints a table.

Each boundary takes generated inputs (seeded, so a run is reproducible) and sorts every outcome:

- accepted: the entry point answered normally;
- documented: it raised the boundary's documented error (`ConfigError`, a usage exit, `CotParseError`,
  `CotFetchError`, `CorruptStream` / a quarantined record, `ReaderArgumentError` / `LookupError`);
- uncaught: anything else (the first few are printed with their input kind);
- bad rows: rows an accepted input would store that an independent oracle says are wrong (COT positions that are
  not the file's exact integers or break the identities; DBN rows that are not records of the original stream when
  only the framing was damaged; a zip member that differs from the original; a config outside its ranges).

    uv run python benchmarks/fuzz.py                  # long mode: 10,000 inputs per boundary
    uv run python benchmarks/fuzz.py 200 7            # N inputs per boundary, seed
    uv run python benchmarks/fuzz.py 10000 1 cot-file # only the named boundaries (one process each in parallel)
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import re
import struct
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import numpy as np
import pandas as pd
import zstandard

from hydra_daemon.config import Config, ConfigError, load_config
from hydra_daemon.cot.fetch import CotFetchError, extract_member
from hydra_daemon.cot.parse import SOURCE_POSITION_COLUMNS, CotParseError, parse_report
from hydra_daemon.cot.validate import validate_rows
from hydra_daemon.databento.dbn_runs import CorruptStream
from hydra_daemon.databento.decode import DecodedBatch, SymbolMap, decode_raw, record_problem
from hydra_daemon.databento.historical_fill import response_records
from hydra_daemon.databento.stream_decoder import DecoderFinished, StreamDecoder

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
LONG_MODE_INPUTS = 10_000
EXAMPLES_SHOWN = 3


@dataclass
class Counts:
    """Outcomes of one boundary."""

    inputs: int = 0
    accepted: int = 0
    documented: int = 0
    uncaught: int = 0
    bad_rows: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """One input's result: `documented` when the boundary refused it the documented way; `bad_rows` per oracle."""

    documented: bool
    bad_rows: int = 0


Case = Callable[[random.Random], tuple[str, Callable[[], Outcome]]]
"""A boundary: from a seeded RNG, (kind of input, a call that runs it through the entry point)."""


def run_boundary(case: Case, n: int, seed: int) -> Counts:
    """`n` inputs of `case`; every exception except the documented ones is counted as uncaught."""
    counts = Counts()
    rnd = random.Random(seed)
    started = time.perf_counter()
    for _ in range(n):
        kind, call = case(rnd)
        counts.inputs += 1
        try:
            outcome = call()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            counts.uncaught += 1
            if len(counts.examples) < EXAMPLES_SHOWN:
                counts.examples.append(f"{kind}: {type(exc).__name__}: {str(exc)[:160]}")
            continue
        counts.documented += outcome.documented
        counts.accepted += not outcome.documented
        counts.bad_rows += outcome.bad_rows
    counts.seconds = time.perf_counter() - started
    return counts


# --- shared hostile values ---------------------------------------------------------------------------------------

_TOML_VALUES = [
    "nan",
    "inf",
    "-inf",
    "+inf",
    "0",
    "-1",
    "65536",
    "86401",
    str(2**63),
    str(2**70),
    "1e308",
    "1.5",
    '""',
    '"\\u0000"',
    '"/x\\u0000y"',
    '"relative/path"',
    '"' + "a" * 5000 + '"',
    '"HE\\n"',
    "true",
    "[]",
    "[[]]",
    "{}",
    "2024-12-24",
    "2024-12-24T10:00:00",
    '["ohlcv-1d", "ohlcv-1d"]',
    '"lmdb:///\\u0000"',
    '"http://h\\u0000/"',
    '"s3://h:b?port=99999999"',
]


def _flip(data: bytearray, rnd: random.Random, flips: int) -> None:
    for _ in range(flips):
        if data:
            data[rnd.randrange(len(data))] = rnd.getrandbits(8)


# --- config ------------------------------------------------------------------------------------------------------

_CONFIG_TEXT = (REPO / "config.toml").read_text()
_CONFIG_LINES = _CONFIG_TEXT.splitlines()
_VALUE_LINES = [i for i, line in enumerate(_CONFIG_LINES) if re.match(r"^\s*[a-z_]+\s*=", line)]
_WORK = tempfile.TemporaryDirectory(prefix="hydra-fuzz-")
"""Config files and the Reader's store live here; removed when the process exits."""


def _config_in_range(config: Config) -> bool:
    floats = (config.storage.flush_interval_s, config.cot.timeout_s, config.options.snapshot_interval_s)
    return (
        1 <= config.databento.live_port <= 65535
        and 1 <= config.databento.replay_window_s <= 86_400
        and all(math.isfinite(v) and v > 0 for v in floats)
        and all("\x00" not in str(p) and p.is_absolute() for p in (config.state_dir, config.health_socket))
        and "\x00" not in config.storage.arctic_uri
    )


def config_case(rnd: random.Random) -> tuple[str, Callable[[], Outcome]]:
    lines = list(_CONFIG_LINES)
    kind = rnd.choice(["value", "value", "bytes", "nesting", "table"])
    if kind == "value":
        for _ in range(rnd.randint(1, 3)):
            i = rnd.choice(_VALUE_LINES)
            key = lines[i].split("=", 1)[0].strip()
            lines[i] = f"{key} = {rnd.choice(_TOML_VALUES)}"
        data = "\n".join(lines).encode()
    elif kind == "bytes":
        raw = bytearray(_CONFIG_TEXT.encode())
        _flip(raw, rnd, rnd.randint(1, 8))
        data = bytes(raw)
    elif kind == "nesting":
        depth = rnd.choice([10, 500, 3000])
        data = _CONFIG_TEXT.encode() + b"\nx = " + b"[" * depth + b"]" * depth + b"\n"
    else:
        data = (_CONFIG_TEXT + rnd.choice(["\n[[markets]]\nname='HE'\n", "\n[cot]\n", "\n[health]\nx=1\n"])).encode()
    path = Path(_WORK.name) / f"c{rnd.getrandbits(32)}.toml"

    def call() -> Outcome:
        path.write_bytes(data)
        try:
            config = load_config(path)
        except ConfigError:
            return Outcome(documented=True)
        finally:
            path.unlink()
        return Outcome(documented=False, bad_rows=0 if _config_in_range(config) else 1)

    return f"config/{kind}", call


# --- CLI arguments -----------------------------------------------------------------------------------------------

_ARGS = [
    "--config",
    "/nonexistent/c.toml",
    "--start-year",
    "--end-year",
    "2021",
    "99999999999",
    "nan",
    "-5",
    "x",
    "--market",
    "HE",
    "--start",
    "--end",
    "2024-01-01",
    "0000-00-00",
    "--library",
    "futures",
    "--symbol",
    "\x7f",
    "--socket",
    "/nonexistent/h.sock",
    "--seconds",
    "--dry-run",
    "--help-not",
]
_COMMANDS = [["check-config"], ["backfill", "cot"], ["backfill", "futures"], ["export"], ["health"], ["bogus"], []]


def cli_case(rnd: random.Random) -> tuple[str, Callable[[], Outcome]]:
    from hydra_daemon.cli import main

    argv = [*rnd.choice(_COMMANDS), *(rnd.choice(_ARGS) for _ in range(rnd.randint(0, 6)))]

    def call() -> Outcome:
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 2
        if code not in (0, 1, 2):
            raise AssertionError(f"exit code {code} for {argv}")
        return Outcome(documented=code != 0)

    return "cli", call


# --- COT text ----------------------------------------------------------------------------------------------------


def _sample_cot() -> tuple[str, list[str]]:
    with zipfile.ZipFile(DATA / "fut_disagg_txt_2021.zip") as archive:
        text = archive.read("f_year.txt").decode("latin-1")
    lines = text.splitlines()
    futonly = [line for line in lines[1:] if line.rstrip().endswith('"FutOnly"')]
    return lines[0], futonly[:400]


_COT_HEADER, _COT_ROWS = _sample_cot()
_COT_HOSTILE_CELLS = [
    "1" + "0" * 30,
    "41771.5",
    "1e5",
    "9223372036854775808",
    "-1",
    "",
    ".",
    "1,234",
    "١٢",
    "0x10",
    "NaN",
    "inf",
    " 12 ",
    "12 34",
    "9223372036854775807",
    "00000000000000000000012",
]
_INTEGER = re.compile(r"-?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)")


def _exact(cell: str) -> int | None:
    text = cell.strip()
    return int(text.replace(",", "")) if _INTEGER.fullmatch(text) else None


def _cot_bad_rows(text: bytes, good: pd.DataFrame) -> int:
    """Rows validation passed whose positions are not the file's exact integers or break the identities."""
    import csv

    try:  # as the parser reads it: UTF-8, else Latin-1
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError:
        decoded = text.decode("latin-1")
    reader = csv.reader(io.StringIO(decoded, newline=""))
    header = [c.strip() for c in next(reader, [])]
    index = {name: header.index(name) for name in SOURCE_POSITION_COLUMNS.values() if name in header}
    code_at, as_of_at = header.index("CFTC_Contract_Market_Code"), header.index("As_of_Date_In_Form_YYMMDD")
    source: dict[tuple[str, str], list[list[str]]] = {}
    for row in reader:
        if len(row) == len(header):
            source.setdefault((row[code_at].strip(), row[as_of_at].strip().zfill(6)), []).append(row)
    bad = 0
    for record in good.to_dict("records"):
        rows = source.get((record["code"], record["as_of"].strftime("%y%m%d")), [])
        values = {ours: int(record[ours]) for ours in SOURCE_POSITION_COLUMNS}
        matches = any(
            all(_exact(row[index[t]]) == values[o] for o, t in SOURCE_POSITION_COLUMNS.items()) for row in rows
        )
        bad += not matches or not _identities_hold(values)
    return bad


def _identities_hold(v: dict[str, int]) -> bool:
    for s in ("all", "old", "other"):
        long_parts = (
            "prod_merc_long",
            "swap_long",
            "swap_spread",
            "m_money_long",
            "m_money_spread",
            "other_rept_long",
            "other_rept_spread",
        )
        short_parts = (
            "prod_merc_short",
            "swap_short",
            "swap_spread",
            "m_money_short",
            "m_money_spread",
            "other_rept_short",
            "other_rept_spread",
        )
        if v[f"tot_rept_long_{s}"] != sum(v[f"{p}_{s}"] for p in long_parts):
            return False
        if v[f"tot_rept_short_{s}"] != sum(v[f"{p}_{s}"] for p in short_parts):
            return False
        oi = v[f"open_interest_{s}"]
        if (
            oi != v[f"tot_rept_long_{s}"] + v[f"nonrept_long_{s}"]
            or oi != v[f"tot_rept_short_{s}"] + v[f"nonrept_short_{s}"]
        ):
            return False
        if any(v[f"{p}_{s}"] < 0 for p in (*long_parts, *short_parts)):
            return False
    return v["open_interest_old"] + v["open_interest_other"] == v["open_interest_all"]


def _mutated_cot(rnd: random.Random) -> tuple[str, bytes]:
    header = _COT_HEADER.split(",")
    rows = [line.split(",") for line in rnd.sample(_COT_ROWS, rnd.randint(1, 6))]
    kind = rnd.choice(["cell", "cell", "cell", "header", "bytes", "shape"])
    if kind == "cell":
        columns = [header.index(f'"{c}"') for c in SOURCE_POSITION_COLUMNS.values() if f'"{c}"' in header]
        for _ in range(rnd.randint(1, 4)):
            row = rnd.choice(rows)
            row[rnd.choice(columns)] = rnd.choice([*_COT_HOSTILE_CELLS, str(rnd.getrandbits(rnd.choice([8, 60, 70])))])
    elif kind == "header":
        i, j = rnd.randrange(len(header)), rnd.randrange(len(header))
        header[i] = rnd.choice([header[j], f'" {header[j].strip(chr(34))} "', '""', "x"])
    text = "\r\n".join(",".join(r) for r in [header, *rows]).encode("latin-1", "replace") + b"\r\n"
    if kind == "bytes":
        raw = bytearray(text)
        _flip(raw, rnd, rnd.randint(1, 6))
        text = bytes(raw[: rnd.randint(0, len(raw))]) if rnd.random() < 0.3 else bytes(raw)
    elif kind == "shape":
        text = rnd.choice([b"", b"\x00" * 50, text.replace(b",", b";"), text + b"1,2,3\r\n", text[: len(text) // 2]])
    return kind, text


def cot_case(rnd: random.Random) -> tuple[str, Callable[[], Outcome]]:
    kind, text = _mutated_cot(rnd)

    def call() -> Outcome:
        try:
            parsed = parse_report(text, source="fuzz")
        except CotParseError:
            return Outcome(documented=True)
        good = validate_rows(parsed.rows).good
        refused = len(parsed.rows) < text.count(b'"FutOnly"') or len(good) < len(parsed.rows)
        return Outcome(documented=refused, bad_rows=_cot_bad_rows(text, good))

    return f"cot/{kind}", call


# --- CFTC zips ---------------------------------------------------------------------------------------------------

_MEMBER = "f_year.txt"
_MEMBER_TEXT = ("\r\n".join([_COT_HEADER, *_COT_ROWS[:40]]) + "\r\n").encode("latin-1")
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _zip(method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr(_MEMBER, _MEMBER_TEXT)
    return buffer.getvalue()


_ZIPS = {method: _zip(method) for method in _METHODS}


def _patch(data: bytearray, local_offset: int, central_offset: int, value: int) -> None:
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    if local >= 0 and central >= 0:
        struct.pack_into("<H", data, local + local_offset, value)
        struct.pack_into("<H", data, central + central_offset, value)


def zip_case(rnd: random.Random) -> tuple[str, Callable[[], Outcome]]:
    data = bytearray(_ZIPS[rnd.choice(_METHODS)])
    kind = rnd.choice(["flip", "flip", "truncate", "encrypted", "method", "version", "offset"])
    if kind == "flip":
        _flip(data, rnd, rnd.randint(1, 6))
    elif kind == "truncate":
        data = data[: rnd.randrange(len(data))]
    elif kind == "encrypted":
        _patch(data, 6, 8, 1)
    elif kind == "method":
        _patch(data, 8, 10, rnd.choice([1, 6, 9, 98, 99, 0xFFFF]))
    elif kind == "version":
        _patch(data, 4, 6, rnd.choice([64, 90, 0xFFFF]))
    else:
        end = data.rfind(b"PK\x05\x06")
        if end >= 0:
            struct.pack_into("<I", data, end + 16, rnd.getrandbits(32))
    payload = bytes(data)

    def call() -> Outcome:
        try:
            member = extract_member("http://fuzz/f.zip", payload, _MEMBER, 1 << 20)
        except CotFetchError:
            return Outcome(documented=True)
        return Outcome(documented=False, bad_rows=int(member != _MEMBER_TEXT))

    return f"zip/{kind}", call


# --- DBN streams -------------------------------------------------------------------------------------------------

_POOL = [
    r
    for s in ("mbp-1", "definition", "ohlcv-1d", "statistics", "trades")
    for r in db.DBNStore.from_file(DATA / f"test_data.{s}.dbn.zst")
]
_POOL.append(dbn.SystemMsg(1, "Heartbeat", code=dbn.SystemCode.HEARTBEAT))  # type: ignore[arg-type]
_RECORDS = [bytes(r) for r in _POOL]
_SHORT = [
    bytes([w, rt]) + bytes(w * 4 - 2)
    for rt in (0, 1, 19, 21, 22, 23, 24, 33, 35, 160)
    for w in (4, 5, 12)
    if record_problem(rt, w * 4) is not None
]
"""Known record types declaring a length shorter than theirs (what made databento_dbn panic)."""


def _schemas(records: list[bytes]) -> set[str]:
    """What a session delivering `records` subscribed (the schemas of its data records)."""
    return {item.schema for item in decode_raw(b"".join(records), SymbolMap({}), market="ES")[0].frames}


def _rows(batch: DecodedBatch) -> set[tuple[Any, ...]]:
    rows: set[tuple[Any, ...]] = set()
    for item in batch.frames:
        frame = item.frame
        ids = frame["instrument_id"].to_numpy()
        for i, ts in enumerate(frame.index.asi8):
            rows.add((item.schema, int(ids[i]), int(ts), tuple(str(v) for v in frame.iloc[i, :4])))
    return rows


def _original_rows(records: list[bytes]) -> set[tuple[Any, ...]]:
    return _rows(decode_raw(b"".join(records), SymbolMap({}), market="ES")[0])


def _mutated_stream(rnd: random.Random) -> tuple[str, list[bytes], bytes]:
    records = [rnd.choice(_RECORDS) for _ in range(rnd.randint(1, 12))]
    kind = rnd.choice(["payload", "framing", "framing", "short", "junk", "truncate"])
    stream = bytearray(b"".join(records))
    if kind == "payload":
        _flip(stream, rnd, rnd.randint(1, 4))
    elif kind == "framing":  # only header bytes (length, rtype) of whole records change
        starts = np.cumsum([0, *map(len, records)])[:-1]
        for _ in range(rnd.randint(1, 3)):
            at = int(rnd.choice(starts)) + rnd.randint(0, 1)
            stream[at] = rnd.getrandbits(8)
    elif kind == "short":
        at = sum(map(len, records[: rnd.randint(0, len(records))]))
        stream[at:at] = rnd.choice(_SHORT)
    elif kind == "junk":
        at = sum(map(len, records[: rnd.randint(0, len(records))]))
        stream[at:at] = rnd.randbytes(rnd.randint(1, 64))
    else:
        stream = stream[: rnd.randrange(len(stream) + 1)]
    return kind, records, bytes(stream)


def dbn_case(rnd: random.Random) -> tuple[str, Callable[[], Outcome]]:
    kind, records, stream = _mutated_stream(rnd)
    through_thread = rnd.random() < 0.05

    def call() -> Outcome:
        if through_thread:
            return _through_stream_decoder(stream)
        decoded, used = decode_raw(stream, SymbolMap({}), market="ES", schemas=_schemas(records))
        refused = bool(decoded.corrupt) or used < len(stream)
        bad = len(_rows(decoded) - _original_rows(records)) if kind != "payload" else 0
        return Outcome(documented=refused, bad_rows=bad)

    return f"dbn/{kind}{'/thread' if through_thread else ''}", call


_HEADER = dbn.Metadata("GLBX.MDP3", 0, None, dbn.SType.INSTRUMENT_ID, None, [], ts_out=False).encode()  # type: ignore[arg-type]


class _Once:
    def __init__(self, data: bytes) -> None:
        self._chunks = [data]
        self._lock = threading.Lock()

    def read(self, timeout: float) -> bytes | None:
        with self._lock:
            return self._chunks.pop() if self._chunks else b""


def _through_stream_decoder(stream: bytes) -> Outcome:
    """The decoder thread must end every stream with batches then DecoderFinished or CorruptStream, never hang."""
    decoder = StreamDecoder(_Once(_HEADER + stream), SymbolMap({}))
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                decoder.get(timeout=0.5)
            except DecoderFinished:
                return Outcome(documented=False)
            except CorruptStream:
                return Outcome(documented=True)
        raise TimeoutError("the stream decoder neither finished nor failed within 10 s")
    finally:
        decoder.close()


# --- Historical responses ----------------------------------------------------------------------------------------

_BARS = [bytes(r) for r in db.DBNStore.from_file(DATA / "test_data.ohlcv-1d.dbn.zst")]
_HIST_METADATA = dbn.Metadata(
    "GLBX.MDP3",
    0,
    dbn.SType.PARENT,
    dbn.SType.INSTRUMENT_ID,
    dbn.Schema.OHLCV_1D,
    [],  # type: ignore[arg-type]
).encode()


def historical_case(rnd: random.Random) -> tuple[str, Callable[[], Outcome]]:
    raw = bytearray(_HIST_METADATA + b"".join(_BARS))
    kind = rnd.choice(["body", "metadata", "compressed", "truncate", "short"])
    if kind == "body":
        at = len(_HIST_METADATA) + rnd.randrange(len(raw) - len(_HIST_METADATA))
        raw[at] = rnd.getrandbits(8)
    elif kind == "metadata":
        raw[rnd.randrange(len(_HIST_METADATA))] = rnd.getrandbits(8)
    elif kind == "truncate":
        raw = raw[: rnd.randint(1, len(raw))]
    elif kind == "short":
        raw[len(_HIST_METADATA) : len(_HIST_METADATA)] = rnd.choice(_SHORT)
    data = bytearray(zstandard.ZstdCompressor().compress(bytes(raw)) if rnd.random() < 0.8 else raw)
    if kind == "compressed":
        _flip(data, rnd, rnd.randint(1, 3))
    body = bytes(data)

    def call() -> Outcome:
        try:
            records = response_records(body, "fuzz")
        except CorruptStream:
            return Outcome(documented=True)
        original = set(_BARS)
        bad = sum(bytes(r) not in original for r in records) if kind in ("truncate", "short") else 0
        return Outcome(documented=False, bad_rows=bad)

    return f"historical/{kind}", call


# --- Reader arguments --------------------------------------------------------------------------------------------

_ZONES = [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=23, minutes=59)), None]
_NAMES = ["HE", "LE", "he", "HE.x", "H E", "HE\x00", "a" * 33, "a" * 500, "É", "", "cot", "../x", "HE/1"]


class _ReaderCase:
    """One read-only Reader over a small LMDB store holding HE bars (opened on first use)."""

    def __init__(self) -> None:
        self._reader: Any = None

    def reader(self) -> Any:
        if self._reader is None:
            from hydra_daemon.reader import Reader
            from hydra_daemon.store.arctic import Store

            uri = f"lmdb://{Path(_WORK.name) / 'arctic'}?map_size=256MB"
            index = pd.date_range("2024-05-01", periods=50, freq="1min", tz="UTC", name="ts_event")
            with Store.open(uri, writer=True) as store:
                store.library("futures").write("HE.ohlcv-1m", pd.DataFrame({"close": np.arange(50.0)}, index=index))
            self._reader = Reader(uri)
        return self._reader

    def __call__(self, rnd: random.Random) -> tuple[str, Callable[[], Outcome]]:
        from hydra_daemon.reader import ReaderArgumentError

        def when() -> Any:
            year = 2024 if rnd.random() < 0.5 else rnd.choice([1, 1677, 1970, 2262, 2263, 9999])
            base = datetime(year, rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23))
            zone = rnd.choice(_ZONES)
            return base if zone is None else base.replace(tzinfo=zone) if rnd.random() < 0.9 else "2024-01-01"

        odd = "".join(chr(rnd.randint(1, 0x2FF)) for _ in range(rnd.randint(0, 12)))
        name = "HE" if rnd.random() < 0.4 else rnd.choice([*_NAMES, odd])
        method = rnd.choice(["futures_bars", "options_chain", "cot", "feature", "cot_panel", "cot_history"])
        a, b = when(), when()
        calls = {
            "futures_bars": lambda r: r.futures_bars(name, a, b, rnd.choice(["ohlcv-1m", "x" * 100, "mbp-1"])),
            "options_chain": lambda r: r.options_chain(name, a),
            "cot": lambda r: r.cot(name, a, start=b),
            "feature": lambda r: r.feature("HE", name, a, end=b),
            "cot_panel": lambda r: r.cot_panel(rnd.choice([[name], name, [name, "HE"]]), a),
            "cot_history": lambda r: r.cot_history(name),
        }

        def call() -> Outcome:
            try:
                calls[method](self.reader())
            except (ReaderArgumentError, LookupError):
                return Outcome(documented=True)
            return Outcome(documented=False)

        return f"reader/{method}", call


BOUNDARIES: dict[str, Case] = {
    "config": config_case,
    "cli-arguments": cli_case,
    "cot-file": cot_case,
    "cftc-zip": zip_case,
    "dbn-stream": dbn_case,
    "historical-response": historical_case,
    "reader-arguments": _ReaderCase(),
}


def run_all(n: int, seed: int, names: list[str] | None = None) -> dict[str, Counts]:
    """The boundaries `names` (all when None) with `n` inputs each; logs of the entry points are silenced (they are
    the documented lines)."""
    import logging

    import structlog

    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        return {name: run_boundary(BOUNDARIES[name], n, seed) for name in names or BOUNDARIES}
    finally:
        structlog.configure(**before)


def report(results: dict[str, Counts]) -> str:
    lines = [
        f"{'boundary':<20} {'inputs':>7} {'accepted':>8} {'documented':>10} {'uncaught':>8} {'bad rows':>8} {'s':>6}"
    ]
    for name, c in results.items():
        lines.append(
            f"{name:<20} {c.inputs:>7} {c.accepted:>8} {c.documented:>10} {c.uncaught:>8} {c.bad_rows:>8} "
            f"{c.seconds:>6.1f}"
        )
        lines.extend(f"    uncaught {example}" for example in c.examples)
    total_uncaught = sum(c.uncaught for c in results.values())
    total_bad = sum(c.bad_rows for c in results.values())
    lines.append(
        f"total: {sum(c.inputs for c in results.values())} inputs, {total_uncaught} uncaught, {total_bad} bad rows"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else LONG_MODE_INPUTS
    seed = int(argv[1]) if len(argv) > 1 else 1
    names = argv[2:] or None
    unknown = sorted(set(names or ()) - set(BOUNDARIES))
    if unknown:
        print(f"unknown boundary {', '.join(unknown)}; known: {', '.join(BOUNDARIES)}", file=sys.stderr)
        return 2
    results = run_all(n, seed, names)
    print(report(results))
    return 0 if all(c.uncaught == 0 and c.bad_rows == 0 for c in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
