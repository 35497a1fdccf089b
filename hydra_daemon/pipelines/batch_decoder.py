"""A decoder thread between the record handoff and the async consumer, so decoding the next batch overlaps with
committing the previous one (ArcticDB appends spend most of their time in fsync, outside the GIL).

handoff (records) → decoder thread (`decode_records`) → bounded queue (`depth` batches) → `get()` in a worker thread.
A full queue blocks the decoder, which lets the handoff fill, which blocks the client: back-pressure end to end.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from hydra_daemon.pipelines.handoff import RecordHandoff
from hydra_daemon.pipelines.records import DecodedBatch, SymbolMap, decode_records

BATCH_RECORDS = 20_000
BATCH_LINGER_S = 0.05
"""A take with fewer than BATCH_RECORDS pending waits BATCH_LINGER_S once more: decoding cost is dominated by a fixed
per-frame pandas overhead, and the writer buffers for `flush_interval_s` anyway, so the latency is free."""


class DecoderFinished(Exception):
    """`get()` after the handoff was closed and every batch was delivered."""


class BatchDecoder:
    """Decodes records from `handoff` on its own thread; `get()` returns decoded batches in stream order."""

    def __init__(
        self,
        handoff: RecordHandoff,
        symbols: SymbolMap,
        on_decoded: Callable[[DecodedBatch], None] = lambda _: None,
        depth: int = 2,
    ) -> None:
        self._handoff = handoff
        self._symbols = symbols
        self._on_decoded = on_decoded
        self._out: queue.Queue[DecodedBatch | BaseException | None] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="hydra-batch-decoder", daemon=True)
        self._thread.start()

    def get(self, timeout: float) -> DecodedBatch | None:
        """The next decoded batch, or None if none within `timeout`; raises what decoding raised, or
        `DecoderFinished` once the handoff is closed and drained."""
        if self._finished:
            raise DecoderFinished
        try:
            item = self._out.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._finished = True
            raise DecoderFinished
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    def stop(self) -> None:
        """Abandon: close the handoff, let the thread exit without delivering more."""
        self._stopped.set()
        self._handoff.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                was_closed = self._handoff.closed  # once closed, no record can arrive after this take
                records = self._handoff.take(0.2, linger_s=BATCH_LINGER_S, enough=BATCH_RECORDS)
                if records:
                    decoded = decode_records(records, self._symbols)
                    self._on_decoded(decoded)
                    self._put(decoded)
                elif was_closed:
                    break
        except Exception as exc:
            self._put(exc)
            return
        self._put(None)

    def _put(self, item: DecodedBatch | BaseException | None) -> None:
        while not self._stopped.is_set():
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
