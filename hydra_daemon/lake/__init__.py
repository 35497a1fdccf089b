"""The daemon's own Parquet lake export: when a day is complete (`schedule`) and the job exporting it (`exporter`)."""
