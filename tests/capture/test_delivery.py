"""What counts as a market's data flowing (health judges each market by it): market data, not reference data."""

from __future__ import annotations

from pathlib import Path

import databento as db

from hydra_daemon.config import parse_config
from hydra_daemon.databento.decode import DecodedBatch, SymbolMap, decode_records
from hydra_daemon.options.pipeline import OptionsIngestPipeline
from hydra_daemon.secrets import ApiKey
from hydra_daemon.store.arctic import Store

DATA = Path(__file__).resolve().parents[1] / "data"


def _batch(schema: str) -> DecodedBatch:
    records = list(db.DBNStore.from_file(DATA / f"test_data.{schema}.dbn.zst"))
    return decode_records(records, SymbolMap({}), market="HE")


async def test_definitions_and_statistics_are_not_deliveries_quotes_are(store: Store, tmp_path: Path) -> None:
    """Definitions come when a session starts or an instrument is listed, statistics when a settlement is published:
    counted as deliveries, they made a market whose quotes had stopped look fresh at each one."""
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "storage": {"arctic_uri": store.uri},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    pipeline = OptionsIngestPipeline(config, store, ApiKey("db-DeliveryKey0123456789"))
    for schema in ("definition", "statistics"):
        batch = _batch(schema)
        assert batch.rows and await pipeline.persist(batch) > 0, f"{schema} records stored"
    assert pipeline.stats.markets == {} and pipeline.stats.last_record_time is None
    quotes = _batch("mbp-1")
    await pipeline.persist(quotes)
    newest = max(item.frame.index.max() for item in quotes.frames)
    assert pipeline.stats.markets["HE"].last_record_time == newest
    assert pipeline.stats.last_record_time == newest
