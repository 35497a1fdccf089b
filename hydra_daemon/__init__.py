"""hydra-daemon: bitemporal capture of CME market data and CFTC COT reports into ArcticDB."""
