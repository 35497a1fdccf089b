"""A decoder thread between the live client process and the async consumer: reads the child's raw record bytes,
decodes them vectorised (`decode_raw`) while the consumer commits the previous batch (ArcticDB appends spend most of
their time outside the GIL).

child pipe → decoder thread → bounded queue (`depth` batches) → `get()` in a worker thread. A full queue stops the
reads, the pipe fills, the child's client stops reading its socket: back-pressure end to end.

A corrupt record ends the stream at once (the batch before it is delivered, the record travels in its
`DecodedBatch.corrupt` for `on_decoded` to quarantine, then `get()` raises `CorruptStream`), so the session is
replaced and resumes from the committed watermarks; a panic of the DBN library becomes a `CorruptStream` too, never a
silently dead thread.

Closing waits for the thread (it may be inside a long decode or `on_decoded`) so that the source it reads is not
closed under it; on the event loop that wait runs in a worker thread (`aclose`), never on the loop itself.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Collection
from typing import Protocol

import anyio
import structlog

from hydra_daemon.databento.dbn_runs import CorruptRecord, CorruptStream, is_panic, metadata_length
from hydra_daemon.databento.decode import FUTURE_SLACK_NS, BatchSource, DecodedBatch, SymbolMap, decode_raw

log = structlog.get_logger()

BATCH_BYTES = 1 << 21
BATCH_LINGER_S = 0.05
"""A read of fewer than BATCH_BYTES waits BATCH_LINGER_S once for more: decoding cost is dominated by a fixed
per-frame pandas overhead, and the writer buffers for `flush_interval_s` anyway, so the latency is free."""
MAX_BATCH_BYTES = 1 << 24
"""While the consumer is behind, a batch grows up to this (about 200k mbp-1 records); memory stays bounded."""
CLOSE_WAIT_S = 5.0
"""How long closing waits for the thread to finish what it is doing (a read is at most 0.2 s, a decode of
MAX_BATCH_BYTES and its `on_decoded` far less on a healthy machine); after that it is abandoned (a daemon thread)."""


class ByteSource(Protocol):
    def read(self, timeout: float) -> bytes | None:
        """Bytes (b"" at end of stream), or None if none arrived within `timeout`."""


class DecoderFinished(Exception):
    """`get()` after the stream ended and every batch was delivered."""


class StreamDecoder:
    """Decodes the DBN byte stream of `source` (Metadata header first) on its own thread; `get()` returns decoded
    batches in stream order. `schemas`: what the session subscribed (a data record of another schema is corrupt)."""

    def __init__(
        self,
        source: ByteSource,
        symbols: SymbolMap,
        on_decoded: Callable[[DecodedBatch], None] = lambda _: None,
        depth: int = 2,
        schemas: Collection[str] | None = None,
        now_ns: Callable[[], int] | None = None,
    ) -> None:
        self._source = source
        self._symbols = symbols
        self._schemas = schemas
        self._now_ns = now_ns
        self._on_decoded = on_decoded
        self._out: queue.Queue[DecodedBatch | BaseException | None] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._finished = False
        self._seen_at = time.monotonic()
        self._blocked = False
        self._thread = threading.Thread(target=self._run, name="hydra-stream-decoder", daemon=True)
        self._thread.start()

    def get(self, timeout: float) -> DecodedBatch | None:
        """The next decoded batch, or None if none within `timeout`; raises what decoding raised, or
        `DecoderFinished` once the stream ended and everything was delivered."""
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

    def depth(self) -> int:
        """Decoded batches waiting for the consumer (approximate, for metrics)."""
        return self._out.qsize()

    def idle_s(self) -> float:
        """Seconds since bytes last arrived; 0 while we wait for the consumer (then we are the slow one)."""
        return 0.0 if self._blocked else time.monotonic() - self._seen_at

    def close(self) -> None:
        """Abandon the stream: the thread exits without delivering more; wait for it (up to CLOSE_WAIT_S). Blocks:
        for synchronous callers; on the event loop use `aclose()`."""
        self._stopped.set()
        self._thread.join(CLOSE_WAIT_S)

    async def aclose(self) -> None:
        """`close()` for the event loop: the wait runs in a worker thread, so the loop keeps serving everything else.
        Shielded: a caller being cancelled (shutdown, a pipeline restart) still waits, for at most CLOSE_WAIT_S, so
        whoever closes the source next does not close it under a thread that is still reading it."""
        self._stopped.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._thread.join, CLOSE_WAIT_S)
        if self._thread.is_alive():
            log.warning("stream_decoder_abandoned", waited_s=CLOSE_WAIT_S)

    def _run(self) -> None:
        try:
            self._decode_stream()
        except Exception as exc:
            self._put(exc)
            return
        except BaseException as exc:
            if not is_panic(exc):
                raise
            reason = f"the DBN decoder panicked: {str(exc)[:200]}"
            self._on_decoded(DecodedBatch((), BatchSource.LIVE, corrupt=(CorruptRecord(-1, -1, 0, reason, b"", True),)))
            self._put(CorruptStream(reason))
            return
        self._put(None)

    def _decode_stream(self) -> None:
        pending = bytearray()
        header: int | None = None
        while not self._stopped.is_set():
            chunk = self._source.read(0.2)
            if chunk is None:
                continue
            if not chunk:
                if pending and header is not None:
                    raise CorruptStream(f"the stream ended inside a record ({len(pending)} bytes left over)")
                return
            self._seen_at = time.monotonic()
            pending += chunk
            if len(pending) < BATCH_BYTES:
                pending += self._more(BATCH_LINGER_S)
            pending += self._while_consumer_busy(MAX_BATCH_BYTES - len(pending))
            if header is None:
                header = metadata_length(pending, MAX_BATCH_BYTES)
                if header is None:
                    continue
                del pending[:header]
            latest = None if self._now_ns is None else self._now_ns() + FUTURE_SLACK_NS
            decoded, used = decode_raw(bytes(pending), self._symbols, schemas=self._schemas, latest_ns=latest)
            del pending[:used]
            if decoded.rows or decoded.notices or decoded.unmapped or decoded.unsupported or decoded.heartbeats:
                self._on_decoded(decoded)
                self._put(decoded)
            elif decoded.corrupt:
                self._on_decoded(decoded)
            broken = next((c for c in decoded.corrupt if c.breaks_stream), None)
            if broken is not None:
                raise CorruptStream(f"corrupt record (quarantined): {broken.reason}")

    def _while_consumer_busy(self, room: int) -> bytes:
        """Keep reading while the consumer still has batches queued (up to `room` bytes): under load, batches grow
        and every per-batch cost downstream (frames, chain, writer appends) is paid less often."""
        parts: list[bytes] = []
        while self._out.full() and room > 0 and not self._stopped.is_set():
            chunk = self._source.read(0.01)
            if chunk == b"":
                break
            if chunk:
                self._seen_at = time.monotonic()
                parts.append(chunk)
                room -= len(chunk)
        return b"".join(parts)

    def _more(self, linger_s: float) -> bytes:
        """Whatever arrives within `linger_s` (stops early at end of stream)."""
        deadline = time.monotonic() + linger_s
        parts: list[bytes] = []
        while (left := deadline - time.monotonic()) > 0:
            chunk = self._source.read(left)
            if chunk == b"":
                break  # end of stream: the next read sees it again
            if chunk is not None:
                parts.append(chunk)
        return b"".join(parts)

    def _put(self, item: DecodedBatch | BaseException | None) -> None:
        self._blocked = True
        try:
            while not self._stopped.is_set():
                try:
                    self._out.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue
        finally:
            self._blocked = False
