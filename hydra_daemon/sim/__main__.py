"""`python -m hydra_daemon.sim`: the same as `hydra-daemon sim`, logging to stderr (light: no store imports)."""

from __future__ import annotations

import argparse
import sys

import structlog

from hydra_daemon.sim.command import configure, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m hydra_daemon.sim", description=__doc__)
    configure(parser)
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
