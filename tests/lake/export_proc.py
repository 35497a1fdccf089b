"""Child process for the kill -9 test: ``python export_proc.py URI LAKE_DIR YYYY-MM-DD`` runs the lake export of
everything due through that day (`store.lake.export_store_due`, the daemon's job body) with JSON logs on stderr."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from hydra_daemon.logging_setup import configure_logging
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.lake import export_store_due

if __name__ == "__main__":
    configure_logging(json=True)
    uri, lake_dir, through = sys.argv[1:4]
    with Store.open(uri, writer=False) as store:
        export_store_due(store, Path(lake_dir), date.fromisoformat(through))
    print("done", flush=True)
