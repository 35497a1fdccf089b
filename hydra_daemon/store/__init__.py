"""ArcticDB storage: store URIs and the writer lease, UTC/dtype rules, the exactly-once stream writer,
bitemporal tables and the feature store. Everything here blocks: call it from worker threads."""

from hydra_daemon.store.arctic import LeaseLostError, Store, StoreLockedError, StoreReadOnlyError
from hydra_daemon.store.bitemporal import BITEMPORAL_COLUMNS, point_in_time, revisions_to_write
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.frames import normalise_dtypes, require_utc_index, restore_utc
from hydra_daemon.store.uri import default_lmdb_uri, redact_uri, validate_uri
from hydra_daemon.store.writer import Commit, FlushError, StreamWriter, Watermark

__all__ = [
    "BITEMPORAL_COLUMNS",
    "BitemporalTable",
    "Commit",
    "FeatureStore",
    "FlushError",
    "LeaseLostError",
    "Store",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StreamWriter",
    "Watermark",
    "default_lmdb_uri",
    "normalise_dtypes",
    "point_in_time",
    "redact_uri",
    "require_utc_index",
    "restore_utc",
    "revisions_to_write",
    "validate_uri",
]
