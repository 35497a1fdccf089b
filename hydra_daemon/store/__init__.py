"""ArcticDB storage: store URIs and the writer lease (`arctic`, `lease`, `uri`), UTC/dtype rules (`frames`), the
exactly-once stream writer (`writer`, `watermark`), bitemporal tables (`bitemporal`, `bitemporal_table`), the feature
store (`features`) and the Parquet lake (`lake`). Everything here blocks: call it from worker threads.

Import from the submodules; this package stays empty so that `hydra_daemon.store.uri` loads without ArcticDB."""
