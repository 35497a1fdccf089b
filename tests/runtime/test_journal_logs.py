"""`hydra-daemon run` as a real subprocess against the simulated venue, logging to a stream systemd would call the
journal: every stderr line is `<priority>` + one JSON object, and a terminal's Ctrl-C (SIGINT to the foreground
process group) stops it cleanly — no traceback from the daemon or from its Live client launcher."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from hydra_daemon.runtime.health_client import query_health
from hydra_daemon.sim.venue import VenueThread
from hydra_daemon.store.resident import ARENAS, malloc_arenas
from tests.helpers import fast_config, process_tree, wait_until

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"<([0-7])>(\{.*\})")


def _config(venue: VenueThread, tmp_path: Path) -> Path:
    info = venue.info
    (tmp_path / "run").mkdir()
    path = tmp_path / "config.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'health_socket = "{tmp_path / "run" / "health.sock"}"\n'
        "[databento]\n"
        f'live_gateway = "{info.live_host}"\nlive_port = {info.live_port}\n'
        f'historical_url = "{info.historical_url}"\n'
        'futures_schemas = ["ohlcv-1m"]\nheartbeat_interval_s = 1\n'
        "[storage]\nflush_interval_s = 0.25\n"
        "[cot]\nenabled = false\n"
        '[[markets]]\nname = "HE"\nfutures_root = "HE"\noptions_root = "HE"\ncftc_code = "054642"\n'
    )
    return path


def _futures_records(socket: Path) -> int:
    try:
        return int(query_health(socket, timeout_s=2.0)["pipelines"]["futures"]["records"])
    except (OSError, ValueError, KeyError):
        return 0


def test_stderr_is_prefixed_json_lines_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    with VenueThread(fast_config(seed=9)) as venue:
        config = _config(venue, tmp_path)
        read_end, write_end = os.pipe()
        stream = os.fstat(write_end)
        env = {
            **os.environ,
            "DATABENTO_API_KEY": venue.info.api_key,
            "JOURNAL_STREAM": f"{stream.st_dev}:{stream.st_ino}",
            "PYTHONWARNINGS": "always::DeprecationWarning",  # whatever warns is shown: it must be a JSON line too
        }
        command = [sys.executable, "-m", "hydra_daemon.cli", "run", "--config", str(config)]
        daemon = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_end,
            start_new_session=True,  # its own process group, like a shell's foreground job
        )  # fmt: skip
        os.close(write_end)
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(read_end, 65536), b"")))
        reader.start()
        try:
            wait_until(lambda: _futures_records(tmp_path / "run" / "health.sock") > 0, "futures rows", timeout=120)
            arenas = {pid: malloc_arenas(pid) for pid in process_tree(daemon.pid)}  # daemon, launcher, Live child
            assert len(arenas) >= 3 and max(arenas.values()) <= ARENAS - 1, f"resident.bound_heap: {arenas}"
            os.killpg(daemon.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            assert daemon.wait(timeout=60) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            reader.join(timeout=30)  # EOF once the daemon and its launcher closed the pipe
            os.close(read_end)
    text = b"".join(chunks).decode()
    lines = text.splitlines()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    bad = [line for line in lines if not LINE.fullmatch(line)]
    assert not bad, f"not <N>{{json}}: {bad[:3]}"
    events = [(int(m[1]), json.loads(m[2])) for m in map(LINE.fullmatch, lines) if m]
    assert all(isinstance(event, dict) and "event" in event for _, event in events)
    by_name = {event["event"]: priority for priority, event in events}
    assert by_name["daemon_starting"] == 6
    assert by_name["shutdown_requested"] == 6
    for priority, event in events:
        assert priority == {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}[event["level"]], event
