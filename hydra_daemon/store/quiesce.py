"""Letting ArcticDB's pool threads finish with Python before the interpreter finalises (an ``atexit`` hook).

Every pandas read gives its tasks a handle on a Python NaN; whichever thread drops the last one takes the GIL to
release it. For about one read in 25 (measured: 8 of 200) that is one of ArcticDB's pool threads (``CPUPool*``,
``IOPool*``), just after the read returned. If the process exits in that moment, the thread asks for the GIL after
finalisation began: Python before 3.14 ends it with ``pthread_exit``, whose unwinding through ArcticDB's
``noexcept`` frames calls ``std::terminate`` — SIGSEGV at exit after every read succeeded (backtrace: a pool thread
in ``PyGILState_Ensure`` under ``std::any::_Manager_external<arcticdb::PythonHandlerData>``, the main thread in
``Py_FinalizeEx``). arcticdb 6.28 stops its pools only after finalisation (``Py_AtExit``) and offers Python no way
to join them, so `wait_for_idle_pools` runs from ``atexit``, before finalisation, with the GIL released: it returns
once every pool thread is asleep and stayed so (no context switch) across a pause in which any of them could take
the GIL. A thread preempted with work left is runnable, not asleep, so load only makes the wait longer. Linux only
(``/proc``); elsewhere it returns at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog
from arcticdb_ext.cpp_async import is_task_scheduler_initialized

log = structlog.get_logger()

POOL_PREFIXES = ("CPUPool", "IOPool")  # ArcticDB's names for its pool threads (``InstrumentedNamedFactory``)
_TASKS = Path("/proc/self/task")
PAUSE_S = 0.005  # how long each pool thread must stay asleep, the GIL released (a thread waiting for it gets it)
TIMEOUT_S = 5.0  # give up (and log it) rather than hang an exit

Activity = dict[int, tuple[str, int]]  # per pool thread id: its state letter and context switches so far


def wait_for_idle_pools(timeout_s: float = TIMEOUT_S) -> bool:
    """Block (GIL released) until ArcticDB's pool threads are all idle; False if they were not by ``timeout_s``."""
    if not is_task_scheduler_initialized() or not _TASKS.is_dir():
        return True
    deadline = time.monotonic() + timeout_s
    before = _pool_activity()
    while time.monotonic() < deadline:
        time.sleep(PAUSE_S)
        after = _pool_activity()
        if after == before and all(state == "S" for state, _ in after.values()):
            return True
        before = after
    log.warning("store.exit_pools_busy", threads=len(before), timeout_s=timeout_s)
    return False


def _pool_activity() -> Activity:
    """State and context-switch count of every ArcticDB pool thread of this process (threads ending are skipped)."""
    activity: Activity = {}
    for task in _TASKS.iterdir():
        try:
            if not (task / "comm").read_text().startswith(POOL_PREFIXES):
                continue
            activity[int(task.name)] = _state_and_switches((task / "status").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return activity


def _state_and_switches(status: str) -> tuple[str, int]:
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    switches = int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return fields["State"].split()[0], switches
