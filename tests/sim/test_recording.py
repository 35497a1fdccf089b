"""`record_path`: the ground-truth DBN file is exactly the seeded model's stream, readable while the venue runs."""

from __future__ import annotations

from pathlib import Path

import databento as db

from hydra_daemon.sim.market import MarketModel
from hydra_daemon.sim.venue import VenueThread
from tests.helpers import fast_config, wait_until


def test_record_file_is_the_seeded_stream_and_readable_while_running(tmp_path: Path) -> None:
    path = tmp_path / "truth.dbn"
    config = fast_config(record_path=path)
    with VenueThread(config) as venue:
        wait_until(lambda: venue.call(lambda v: v.tape.end("ohlcv-1d")) > 0, "a daily bar")
        while_running = list(db.DBNStore.from_file(path))
        assert while_running
    generated_until = venue.venue.model.now_ns
    store = db.DBNStore.from_file(path)
    records = [bytes(r) for r in store]
    assert store.metadata.dataset == "GLBX.MDP3" and len(records) >= len(while_running)

    regenerated = [e.data for e in MarketModel(config.market).advance(generated_until)]
    assert records == regenerated
