"""Child processes for store tests (run as scripts: ``python store_procs.py COMMAND ...``).

``hold URI``: open URI as writer, print ``ready <pid>``, hold the lease until stdin closes (or SIGKILL).
``read-loop URI LIBRARY SYMBOL BATCH_ROWS STOP_FILE``: read SYMBOL in a loop until STOP_FILE exists, checking each
read is a whole-commit prefix; print ``started`` after the first read and a JSON summary at the end.
``read-only-first URI STEP``: write a symbol, make the store read-only (`set_immutable`), then take STEP first
(``list`` the library's symbols, or ``create`` another library), then write again; print a JSON summary of what each
raised.
``exit-after-read URI LIBRARY SYMBOL``: read SYMBOL until one of ArcticDB's pool threads waits for the GIL (to release
the read's last handle on a Python object), then exit normally without letting go of the GIL first; exit 3 if that
never happened. See `hydra_daemon.store.quiesce`.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import structlog
from arcticdb_ext import set_config_int

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.symbols import COT, FUTURES
from hydra_daemon.store.watermark import Watermark
from tests.helpers import set_immutable, store_paths


def hold(uri: str) -> None:
    store = Store.open(uri, writer=True)
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.read()
    store.close()


def torn_reason(frame: pd.DataFrame, metadata: object, batch_rows: int) -> str | None:
    """Why ``frame`` is not a prefix of whole commits (each commit = batch_rows rows of one ``batch``), or None."""
    if frame.empty:
        return None
    batches = frame["batch"].to_numpy()
    expected = np.repeat(np.arange(len(frame) // batch_rows + 1), batch_rows)[: len(frame)]
    if len(frame) % batch_rows or not np.array_equal(batches, expected):
        return f"{len(frame)} rows, batches {sorted(set(batches.tolist()))[-3:]} are not whole commits"
    if not np.array_equal(frame["seq"].to_numpy(), np.arange(len(frame))):
        return "seq is not 0..n-1"
    watermark = Watermark.from_metadata(metadata)
    if watermark is None or watermark.ts_ns != frame.index[-1].value:
        return f"watermark {watermark} does not match the last row {frame.index[-1]}"
    return None


def read_loop(uri: str, library_name: str, symbol: str, batch_rows: int, stop_file: Path) -> None:
    set_config_int("VersionMap.ReloadInterval", 0)  # no 2 s latest-version cache: every read sees the newest commit
    reads, errors, torn, last_rows = 0, [], [], 0
    with Store.open(uri, writer=False) as store:
        while True:
            stop = stop_file.exists()
            try:
                if store.has_library(library_name) and store.library(library_name).has_symbol(symbol):
                    item = store.library(library_name).read(symbol)
                    frame = restore_utc(item.data)
                    reason = torn_reason(frame, item.metadata, batch_rows)
                    if reason:
                        torn.append(reason)
                    last_rows = len(frame)
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}")
            reads += 1
            if reads == 1:
                print("started", flush=True)
            if stop:
                break
    print(json.dumps({"reads": reads, "errors": errors[:5], "torn": torn[:5], "final_rows": last_rows}), flush=True)


_api = ctypes.pythonapi  # calls holding the GIL, as are those through _libc
_libc = ctypes.PyDLL(None)
_api.PyInterpreterState_Get.restype = ctypes.c_void_p
_api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
_api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
_api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
_api.PyThreadState_Next.restype = ctypes.c_void_p


def thread_states() -> int:
    """How many Python thread states this interpreter has: a native thread asking for the GIL adds one first."""
    count, state = 0, _api.PyInterpreterState_ThreadHead(_api.PyInterpreterState_Get())
    while state:
        count, state = count + 1, _api.PyThreadState_Next(state)
    return count


def exit_after_read(uri: str, library_name: str, symbol: str) -> None:
    # No drop request reaches the main thread for 2 s: a pool thread waiting for the GIL gets it only if this
    # process lets go of it (sleeps, does I/O) — as in an exit right after a read.
    sys.setswitchinterval(2.0)
    # One core for every thread (the pools inherit it when the first read starts them): a pool thread finishing its
    # task then waits for the core, and drops its handle after the read returned, as on a loaded machine. With the
    # cores idle that was rare: 3000 reads often went by without it.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with Store.open(uri, writer=False, quiet=True) as store:
        library = store.library(library_name)
        library.read(symbol)  # starts ArcticDB's pools
        alone = thread_states()
        print("started", flush=True)  # the last I/O: it lets go of the GIL
        for _ in range(3000):  # a pool thread is left with the read's last handle after ~7% of reads (measured)
            library.read(symbol)
            for _ in range(10):
                _libc.usleep(500)  # leaves the core to the pool threads, holding the GIL
                if thread_states() > alone:
                    return
    raise SystemExit(3)


def read_only_first(uri: str, first: str) -> None:
    frame = pd.DataFrame({"close": [1.0]}, index=pd.DatetimeIndex(["2024-03-01"], tz="UTC", name="ts_event"))
    outcome: dict[str, str | None] = {}
    with Store.open(uri, writer=True) as store:
        library = store.library(FUTURES)
        library.write("HE.ohlcv-1m", frame)  # a library never listed: ArcticDB compacts its symbol list on a list
        steps = {"list": library.list_symbols, "create": lambda: store.library(COT)}
        paths = store_paths(Path(uri.removeprefix("lmdb://").split("?")[0]))
        set_immutable(paths, True)
        try:
            for step, call in ((first, steps[first]), ("write", lambda: library.write("CL.ohlcv-1m", frame))):
                try:
                    call()
                    outcome[step] = None
                except Exception as error:
                    outcome[step] = f"{type(error).__name__}: {error}"
        finally:
            set_immutable(paths, False)
        outcome["problem"] = store.usage().problem
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    command, *args = sys.argv[1:]
    if command == "hold":
        hold(args[0])
    elif command == "read-loop":
        read_loop(args[0], args[1], args[2], int(args[3]), Path(args[4]))
    elif command == "read-only-first":
        read_only_first(args[0], args[1])
    elif command == "exit-after-read":
        exit_after_read(args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown command {command}")
