"""CFTC Commitments-of-Traders capture: release calendar, parsing, fetching."""

from hydra_daemon.cot.calendar import release_time

__all__ = ["release_time"]
