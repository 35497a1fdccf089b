"""Ground truth: every data record the venue emits, appended to a plain DBN file (readable while the venue runs)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from databento_dbn import Metadata, SType

from hydra_daemon.sim.config import DATASET
from hydra_daemon.sim.market import Emission


class Recorder:
    """Writes Metadata (schema=None: mixed schemas, like a Live stream) then records; flushed after every batch."""

    def __init__(self, path: Path, start_ns: int) -> None:
        self.path = path
        self._file: BinaryIO = path.open("wb")
        metadata = Metadata(DATASET, start_ns, None, SType("instrument_id"), None, ts_out=False)
        self._file.write(metadata.encode())
        self._file.flush()

    def write(self, emissions: list[Emission]) -> None:
        self._file.write(b"".join(e.data for e in emissions))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
