"""Test-only entry point: `python tests/runtime/runtime_app.py CONFIG WORKDIR [options]` runs `run_daemon` for real.

Its pipelines are real `IngestPipeline`s over a trivial source: a local counter whose values are appended, once
each, to `WORKDIR/<name>.out` (the "store"; a restart resumes after the last stored value, like a watermark).
`--flaky NAME` fails on every instance's 2nd batch with an error that quotes the API key; `--wedge NAME` stops
producing after `--wedge-after` batches (a hung source). This mirrors what `hydra-daemon run` does at startup.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import anyio

from hydra_daemon.config import load_config
from hydra_daemon.ingest import IngestPipeline, Problem
from hydra_daemon.logging_setup import configure_logging
from hydra_daemon.runtime.daemon import RuntimeOptions, protect_secrets, run_daemon
from hydra_daemon.runtime.supervisor import PipelineFactory, RestartPolicy
from hydra_daemon.secrets import ApiKey, load_api_key

CLOSED_MARKER = "# closed"


def stored_values(out: Path) -> list[int]:
    """The counter values stored in `out`, in order."""
    if not out.exists():
        return []
    return [int(line) for line in out.read_text().splitlines() if line and not line.startswith("#")]


class CounterPipeline(IngestPipeline[list[int]]):
    """Counts up from the last stored value; each batch is two consecutive values appended to the out file."""

    def __init__(self, name: str, out: Path, interval_s: float) -> None:
        super().__init__(markets=("TEST",), schema="counter")
        self.name = name
        self.out = out
        self.interval_s = interval_s
        values = stored_values(out)
        self.next_value = values[-1] + 1 if values else 0
        self.batches_fetched = 0

    async def fetch(self) -> AsyncIterator[list[int]]:
        try:
            while True:
                await anyio.sleep(self.interval_s)
                self.batches_fetched += 1
                await self.before_batch()
                yield [self.next_value, self.next_value + 1]
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._append, [CLOSED_MARKER])

    async def before_batch(self) -> None:
        """Hook for the failing and wedging variants."""

    def validate(self, batch: list[int]) -> tuple[list[int], list[Problem]]:
        return [v for v in batch if v >= self.next_value], []

    async def persist(self, clean: list[int]) -> int:
        await anyio.to_thread.run_sync(self._append, [str(v) for v in clean])
        self.next_value = clean[-1] + 1
        return len(clean)

    def _append(self, lines: list[str]) -> None:
        with self.out.open("a") as handle:
            handle.write("".join(line + "\n" for line in lines))


class FlakyPipeline(CounterPipeline):
    """Fails on each instance's 2nd batch, quoting the API key as a careless client library might."""

    def __init__(self, name: str, out: Path, interval_s: float, api_key: ApiKey) -> None:
        super().__init__(name, out, interval_s)
        self.api_key = api_key

    async def before_batch(self) -> None:
        if self.batches_fetched == 2:
            raise ConnectionError(f"venue dropped session for key {self.api_key.reveal()}")


class WedgingPipeline(CounterPipeline):
    """Stops producing (awaits forever) after `wedge_after` batches."""

    def __init__(self, name: str, out: Path, interval_s: float, wedge_after: int) -> None:
        super().__init__(name, out, interval_s)
        self.wedge_after = wedge_after

    async def before_batch(self) -> None:
        if self.batches_fetched > self.wedge_after:
            await anyio.sleep_forever()


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--counter", action="append", default=[])
    parser.add_argument("--flaky", action="append", default=[])
    parser.add_argument("--wedge", action="append", default=[])
    parser.add_argument("--wedge-after", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--backoff", type=float, default=0.05)
    parser.add_argument("--stall-after", type=float, default=600.0)
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    configure_logging(json=True)
    config = load_config(args.config)
    api_key = load_api_key(config.databento)
    protect_secrets(config, api_key)
    out = args.workdir.joinpath
    builders: list[tuple[str, Callable[[str], IngestPipeline[list[int]]]]] = [
        *((n, lambda n: CounterPipeline(n, out(f"{n}.out"), args.interval)) for n in args.counter),
        *((n, lambda n: FlakyPipeline(n, out(f"{n}.out"), args.interval, api_key)) for n in args.flaky),
        *((n, lambda n: WedgingPipeline(n, out(f"{n}.out"), args.interval, args.wedge_after)) for n in args.wedge),
    ]
    factories: list[tuple[str, PipelineFactory]] = [(name, partial(build, name)) for name, build in builders]
    options = RuntimeOptions(
        restart=RestartPolicy(initial_s=args.backoff, max_s=args.backoff * 64, healthy_after_s=30.0),
        ready_timeout_s=args.ready_timeout,
        stall_after_s=args.stall_after,
        monitor_interval_s=0.05,
    )
    anyio.run(partial(run_daemon, config, factories, options=options))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
