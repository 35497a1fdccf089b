"""Store opening and the single-writer lease: LMDB flock (also across processes and kill -9) and the S3 lease."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from hydra_daemon.errors import UserError
from hydra_daemon.store.arctic import Store, StoreLockedError, StoreReadOnlyError, StoreUnwritableError, lock_path
from hydra_daemon.store.lease import LEASE_OBJECT, LeaseHolder, LeaseLostError, S3Lease
from hydra_daemon.store.symbols import COT, FUTURES
from tests.conftest import S3_ACCESS, S3_SECRET
from tests.helpers import set_immutable, store_paths, wait_until
from tests.s3_fault_proxy import Fault, ProxyProcess, Rule

PROCS = Path(__file__).with_name("store_procs.py")


def _frame(start: str, periods: int) -> pd.DataFrame:
    index = pd.date_range(start, periods=periods, freq="min", tz="UTC", name="ts_event")
    return pd.DataFrame({"close": range(periods)}, index=index, dtype="float64")


def _start_holder(uri: str) -> tuple[subprocess.Popen[str], int]:
    holder = subprocess.Popen(
        [sys.executable, str(PROCS), "hold", uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line.startswith("ready"), f"holder failed to start: {line!r}"
    return holder, int(line.split()[1])


def test_second_writer_in_same_process_is_refused_until_first_closes(lmdb_uri: str) -> None:
    first = Store.open(lmdb_uri, writer=True)
    with pytest.raises(StoreLockedError) as refused:
        Store.open(lmdb_uri, writer=True)
    message = str(refused.value)
    assert "arctic" in message and f"pid {os.getpid()}" in message and socket.gethostname() in message
    first.close()
    with Store.open(lmdb_uri, writer=True) as second:
        assert second.writer


def test_a_second_writer_through_a_symlinked_store_directory_is_refused(tmp_path: Path) -> None:
    """`/var/lib/hydra/arctic -> /data/arctic`: both names are one store, so one lease (found by a review helper:
    the lock file was named after the path as written, and a backfill through the other name wrote beside the
    daemon)."""
    real = tmp_path / "data" / "arctic"
    real.mkdir(parents=True)
    alias = tmp_path / "arctic-link"
    alias.symlink_to(real, target_is_directory=True)
    holder, pid = _start_holder(f"lmdb://{real}")
    try:
        with pytest.raises(StoreLockedError, match=f"pid {pid}"):
            Store.open(f"lmdb://{alias}", writer=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_second_writer_process_refused_and_lease_freed_by_sigkill(lmdb_uri: str) -> None:
    holder, pid = _start_holder(lmdb_uri)
    try:
        with pytest.raises(StoreLockedError, match=f"pid {pid} on host {socket.gethostname()}"):
            Store.open(lmdb_uri, writer=True)
        with Store.open(lmdb_uri, writer=False) as reader:
            assert not reader.writer
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    with Store.open(lmdb_uri, writer=True) as store:
        store.library(FUTURES).write("HE.ohlcv-1d", _frame("2024-01-02", 3))


def test_lease_free_after_writer_process_closes(lmdb_uri: str) -> None:
    holder, _ = _start_holder(lmdb_uri)
    holder.communicate("")
    assert holder.returncode == 0
    with Store.open(lmdb_uri, writer=True) as store:
        assert store.writer


def test_a_lock_file_removed_under_a_writer_lets_in_no_second_writer_unnoticed(tmp_path: Path) -> None:
    """A flock belongs to the file: an operator removing a "stale" lock file under a live writer let the next writer
    create and lock a new one, and both wrote. The holder now sees its file gone and stops writing, saying why
    (found by a review helper)."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=64MB"
    with Store.open(uri, writer=True) as first:
        lock_path((tmp_path / "arctic").resolve()).unlink()
        with pytest.raises(LeaseLostError, match="was removed or replaced while this daemon held it"):
            first.require_writable()
        assert "removed or replaced" in (first.usage().problem or "")


def test_a_store_directory_that_may_not_be_written_is_one_clear_error(tmp_path: Path) -> None:
    """The lock file is the first thing a writer creates in the store: a store directory it may not write (under
    ProtectSystem=strict without ReadWritePaths= for it) was a bare PermissionError, a traceback and a restart loop
    (found by a review helper)."""
    store = tmp_path / "arctic"
    store.mkdir()
    set_immutable([store], True)
    try:
        with pytest.raises(
            StoreUnwritableError, match=r"writer lock file .*arctic/hydra-writer\.lock .*ReadWritePaths="
        ):
            Store.open(f"lmdb://{store}?map_size=64MB", writer=True)
    finally:
        set_immutable([store], False)


def test_lock_file_sits_inside_the_lmdb_directory(tmp_path: Path) -> None:
    with Store.open(f"lmdb://{tmp_path / 'state' / 'arctic'}", writer=True):
        lock = lock_path(tmp_path / "state" / "arctic")
        assert lock == tmp_path / "state" / "arctic" / "hydra-writer.lock"
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_second_writer_through_a_bind_mount_of_the_store_is_refused(tmp_path: Path) -> None:
    """A store bind-mounted into a container (or a second mount point) is the same directory under another path that
    `resolve()` cannot see through: the lock file beside the store was a different file there, so both writers
    wrote. Inside the store it is one file. The second writer runs in its own user and mount namespace, where the
    bind mount exists (`unshare -rm`: no root needed)."""
    real, mount = tmp_path / "arctic", tmp_path / "container-arctic"
    mount.mkdir()
    holder, pid = _start_holder(f"lmdb://{real}")
    try:
        script = (
            "import sys\n"
            "from hydra_daemon.store.arctic import Store, StoreLockedError\n"
            "try:\n"
            f"    Store.open('lmdb://{mount}', writer=True, quiet=True)\n"
            "except StoreLockedError as e:\n"
            "    print('refused', e)\n"
            "    sys.exit(0)\n"
            "print('opened')\n"
        )
        bound = subprocess.run(
            [
                "unshare",
                "-rm",
                "sh",
                "-c",
                'mount --bind "$1" "$2" && exec "$3" -c "$4"',
                "-",
                real,
                mount,
                sys.executable,
                script,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if bound.returncode != 0 and "mount" in bound.stderr and "opened" not in bound.stdout:
            pytest.skip(f"no user and mount namespaces here: {bound.stderr.strip()}")
        assert bound.stdout.startswith("refused") and f"pid {pid}" in bound.stdout, bound.stdout + bound.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_daemon_of_an_earlier_release_holding_the_old_lock_file_refuses_a_writer(tmp_path: Path) -> None:
    """Earlier releases locked `<store>.writer.lock`, beside the store: a new daemon started before the old one
    stopped (an upgrade) would take the new file and write beside it."""
    store = tmp_path / "arctic"
    legacy = tmp_path / "arctic.writer.lock"
    fd = os.open(legacy, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, LeaseHolder.mine().to_json(), 0)
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}.*earlier release.*arctic\\.writer\\.lock"):
            Store.open(f"lmdb://{store}", writer=True)
        with Store.open(f"lmdb://{store}", writer=False, quiet=True):  # readers never mind
            pass
    finally:
        os.close(fd)  # the old daemon stopped
    with Store.open(f"lmdb://{store}", writer=True) as opened:
        assert opened.writer


def test_reader_never_creates_libraries_and_cannot_write(lmdb_uri: str) -> None:
    with Store.open(lmdb_uri, writer=True) as writer:
        writer.library(FUTURES).write("HE.ohlcv-1d", _frame("2024-01-02", 3))
        with Store.open(lmdb_uri, writer=False) as reader:
            assert len(reader.library(FUTURES).read("HE.ohlcv-1d").data) == 3
            with pytest.raises(LookupError, match="no library 'cot'"):
                reader.library(COT)
            with pytest.raises(StoreReadOnlyError):
                reader.require_writable()
            with pytest.raises(StoreReadOnlyError):
                reader.snapshot("cycle", (FUTURES,))


def test_snapshot_pins_what_the_store_held(lmdb_uri: str) -> None:
    with Store.open(lmdb_uri, writer=True) as store:
        library = store.library(FUTURES)
        library.write("HE.ohlcv-1d", _frame("2024-01-02", 3))
        store.library(COT)  # empty library: nothing to pin, must not fail
        name = store.snapshot("ingest", (FUTURES, COT))
        library.append("HE.ohlcv-1d", _frame("2024-01-03", 2))
        assert name.startswith("ingest-") and name.endswith("Z")
        assert len(library.read("HE.ohlcv-1d", as_of=name).data) == 3
        assert len(library.read("HE.ohlcv-1d").data) == 5
        with pytest.raises(ValueError, match="snapshot label"):
            store.snapshot("bad label!", (FUTURES,))


def test_a_cycle_snapshot_pins_the_libraries_its_pipeline_writes_and_no_other(lmdb_uri: str) -> None:
    """A COT cycle's snapshot holds cot and features; options quotes pinned by it would keep their small intraday
    segments beside the merged ones until the daily snapshot (which holds every library)."""
    names = ("futures", "options", "cot", "features")
    with Store.open(lmdb_uri, writer=True) as store:
        for name in names:
            store.library(name).write("HE.x", _frame("2024-01-02", 3))
        snapshot = store.snapshot("cot", ("cot", "features"))
        for name in names:
            store.library(name).append("HE.x", _frame("2024-01-03", 2))
        pinned = {name: len(store.library(name).read("HE.x", as_of=snapshot).data) for name in ("cot", "features")}
        held = {name: snapshot in store.library(name).list_snapshots(load_metadata=False) for name in names}
    assert pinned == {"cot": 3, "features": 3}
    assert held == {"futures": False, "options": False, "cot": True, "features": True}


def test_s3_second_lease_holder_refused_and_free_after_close(s3_bucket: Any) -> None:
    s3_uri = s3_bucket.uri
    first = Store.open(s3_uri, writer=True)
    with pytest.raises(StoreLockedError) as refused:
        Store.open(s3_uri, writer=True)
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "s3://127.0.0.1:hydra-" in message
    assert s3_bucket.secret not in message
    with Store.open(s3_uri, writer=False) as reader:
        assert not reader.writer
    first.close()
    with Store.open(s3_uri, writer=True) as second:
        second.library(FUTURES).write("HE.ohlcv-1d", _frame("2024-01-02", 3))
        assert len(second.library(FUTURES).read("HE.ohlcv-1d").data) == 3


def test_s3_expired_lease_is_taken_over(s3_bucket: Any) -> None:
    """Once its object stayed unchanged for the holder's TTL (2 s here) on this host's monotonic clock."""
    s3_uri, bucket = s3_bucket.uri, s3_bucket.name
    stale = LeaseHolder("dead-host:1:x", 1, "dead-host", time.time() - 120, time.time() - 60, ttl_s=2.0)
    s3_bucket.client.put_object(Bucket=bucket, Key=LEASE_OBJECT, Body=stale.to_json())
    with Store.open(s3_uri, writer=True):
        body = s3_bucket.client.get_object(Bucket=bucket, Key=LEASE_OBJECT)["Body"].read()
        current = LeaseHolder.from_json(body)
        assert current is not None and current.pid == os.getpid()
        assert current.expires_at is not None and current.expires_at > time.time()


FAST_CLOCK_TAKER = """
import sys, time
import boto3
real = time.time
time.time = lambda: real() + 27.0  # this host's clock runs 27 s ahead (the TTL is 30 s)
from hydra_daemon.store.lease import S3Lease, StoreLockedError
endpoint, bucket, key, access, secret = sys.argv[1:]
client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                      region_name="us-east-1")
try:
    S3Lease.acquire(client, bucket, key, "test store", ttl_s=30).release()
except StoreLockedError:
    print("refused")
else:
    print("acquired")
"""


def test_s3_a_live_lease_is_not_taken_over_by_a_host_whose_clock_runs_ahead(s3_bucket: Any, moto_server: Any) -> None:
    """Renewed every 10 s, the lease object always shows 20-30 s left by its holder's clock: a host 27 s ahead saw it
    expired and took it from a live writer (found by a review helper). Wall clocks are no longer compared."""
    lease = S3Lease.acquire(s3_bucket.client, s3_bucket.name, LEASE_OBJECT, "test store", ttl_s=30)
    try:
        time.sleep(4)  # 26 s left by the holder's clock: expired by the taker's
        argv = [moto_server.endpoint, s3_bucket.name, LEASE_OBJECT, S3_ACCESS, S3_SECRET]
        taker = subprocess.run(
            [sys.executable, "-c", FAST_CLOCK_TAKER, *argv], capture_output=True, text=True, timeout=90, check=True
        )
        lease.check()
        assert taker.stdout.strip().splitlines()[-1] == "refused", taker.stdout + taker.stderr
    finally:
        lease.release()


def test_s3_live_lease_of_another_host_refused(s3_bucket: Any) -> None:
    s3_uri, bucket = s3_bucket.uri, s3_bucket.name
    live = LeaseHolder("other-host:42:y", 42, "other-host", time.time(), time.time() + 600)
    s3_bucket.client.put_object(Bucket=bucket, Key=LEASE_OBJECT, Body=live.to_json())
    with pytest.raises(StoreLockedError, match="pid 42 on host other-host"):
        Store.open(s3_uri, writer=True)


def test_s3_lease_renewal_detects_takeover(s3_bucket: Any) -> None:
    bucket = s3_bucket.name
    client = s3_bucket.client
    lease = S3Lease.acquire(client, bucket, LEASE_OBJECT, "test store", ttl_s=60)
    try:
        lease.renew()
        lease.check()
        intruder = LeaseHolder("other:7:z", 7, "other", time.time(), time.time() + 600)
        client.put_object(Bucket=bucket, Key=LEASE_OBJECT, Body=intruder.to_json())
        with pytest.raises(LeaseLostError, match="taken over"):
            lease.renew()
        with pytest.raises(LeaseLostError):
            lease.check()
    finally:
        lease.release()
    body = client.get_object(Bucket=bucket, Key=LEASE_OBJECT)["Body"].read()
    assert LeaseHolder.from_json(body) == intruder, "releasing a lost lease must not delete the new holder's"


def test_s3_lease_renewal_whose_response_was_lost_keeps_the_lease_and_a_lost_lease_is_free_once_deleted(
    s3_bucket: Any,
) -> None:
    bucket, client = s3_bucket.name, s3_bucket.client
    lease = S3Lease.acquire(client, bucket, LEASE_OBJECT, "test store", ttl_s=60)
    try:
        # A renewal S3 applied but whose response never arrived: the object is ours, with an ETag we never saw.
        client.put_object(Bucket=bucket, Key=LEASE_OBJECT, Body=lease.holder.to_json())
        lease.renew()
        lease.check()
        assert not lease.free_again(), "a lease still held is not 'free again'"
        intruder = LeaseHolder("other:7:z", 7, "other", time.time(), time.time() + 600)
        client.put_object(Bucket=bucket, Key=LEASE_OBJECT, Body=intruder.to_json())
        with pytest.raises(LeaseLostError, match=r"taken over by pid 7 on host other .*Stop the other writer"):
            lease.renew()
        assert not lease.free_again(), "the other holder's lease is live"
        client.delete_object(Bucket=bucket, Key=LEASE_OBJECT)
        assert lease.free_again()
    finally:
        lease.release()


def test_s3_a_lost_lease_renewed_by_a_holder_whose_clock_runs_behind_is_not_free_again(s3_bucket: Any) -> None:
    """B took A's lease and renews it on a clock 35 s behind A's: every `expires_at` B writes lies in A's past.
    Compared with A's wall clock the lease looked free, A exited for systemd to restart it, and each fresh process
    was refused (B is alive): a restart loop. Free again means unchanged for B's TTL (found by a review helper)."""
    bucket, client = s3_bucket.name, s3_bucket.client
    lease = S3Lease.acquire(client, bucket, LEASE_OBJECT, "test store", ttl_s=60)
    renewing = threading.Event()
    renewing.set()

    def renew_b() -> None:
        while renewing.is_set():
            behind = time.time() - 35
            b = LeaseHolder("b-host:7:b", 7, "b-host", behind, behind + 1.0, ttl_s=1.0)
            client.put_object(Bucket=bucket, Key=LEASE_OBJECT, Body=b.to_json())
            time.sleep(0.2)

    renewer = threading.Thread(target=renew_b, daemon=True)
    renewer.start()
    try:
        time.sleep(0.3)
        with pytest.raises(LeaseLostError, match="taken over"):
            lease.renew()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert not lease.free_again(), "B renews its lease: it is not free again"
            time.sleep(0.1)
        renewing.clear()
        renewer.join()
        wait_until(lease.free_again, "free again once B's object stays unchanged for its TTL", timeout=10)
    finally:
        renewing.clear()
        lease.release()


def test_s3_a_dead_holder_whose_clock_ran_ahead_does_not_lock_the_store_until_it_is_reached(s3_bucket: Any) -> None:
    """A holder with a 1 s TTL on a host an hour ahead, killed: its lease says it expires in an hour, further ahead
    than any renewal of its could by our clock. It is watched for its TTL and taken over, not refused for an hour
    (found by a review helper)."""
    bucket, client = s3_bucket.name, s3_bucket.client
    ahead = time.time() + 3600
    dead = LeaseHolder("fast-host:9:x", 9, "fast-host", ahead - 1.0, ahead, ttl_s=1.0)
    client.put_object(Bucket=bucket, Key=LEASE_OBJECT, Body=dead.to_json())
    S3Lease.acquire(client, bucket, LEASE_OBJECT, "test store", ttl_s=30).release()


def test_s3_a_holder_whose_wall_clock_steps_back_stops_writing_when_its_renewals_stop(
    s3_bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewals stopped (a partition from S3) and the wall clock stepped back a minute: measured on the wall clock
    the lease still had most of its life, so the holder kept writing after a watcher took it over (two writers).
    `check()` counts on the monotonic clock from before the last renewal (found by a review helper)."""
    lease = S3Lease.acquire(s3_bucket.client, s3_bucket.name, LEASE_OBJECT, "test store", ttl_s=1.0)
    lease._stop.set()
    lease._renewer.join()  # renewals stopped
    time.sleep(0.9)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 60)
    try:
        with pytest.raises(LeaseLostError, match="about to expire"):
            lease.check()
    finally:
        monkeypatch.undo()
        lease.release()


def test_s3_lease_renewals_failing_pause_writes_until_one_succeeds(s3_bucket: Any, s3_proxy: ProxyProcess) -> None:
    """S3 answering 503 to the lease's renewals past most of its TTL: `check()` refuses writes ("about to expire");
    once S3 answers again the next renewal succeeds (nobody took the lease over) and writes may go on."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_proxy.port}",
        aws_access_key_id=S3_ACCESS,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    lease = S3Lease.acquire(client, s3_bucket.name, LEASE_OBJECT, "test store", ttl_s=3)
    try:
        s3_proxy.fault(Rule(Fault.ERROR_503, ("PUT",), (LEASE_OBJECT,)))
        wait_until(lambda: _refused(lease), "writes refused while renewals fail", timeout=30)
        with pytest.raises(LeaseLostError, match="about to expire"):
            lease.check()
        s3_proxy.clear()
        wait_until(lambda: not _refused(lease), "writes allowed once a renewal succeeds", timeout=30)
        assert not lease.free_again(), "never lost: still ours"
    finally:
        lease.release()


def _refused(lease: S3Lease) -> bool:
    try:
        lease.check()
    except LeaseLostError:
        return True
    return False


def test_s3_lease_deleted_on_release(s3_bucket: Any) -> None:
    s3_uri, bucket = s3_bucket.uri, s3_bucket.name
    with Store.open(s3_uri, writer=True):
        assert s3_bucket.client.list_objects_v2(Bucket=bucket, Prefix=LEASE_OBJECT)["KeyCount"] == 1
    assert s3_bucket.client.list_objects_v2(Bucket=bucket, Prefix=LEASE_OBJECT)["KeyCount"] == 0


def test_writer_open_deletes_staged_segments_left_by_a_crash(lmdb_uri: str) -> None:
    with Store.open(lmdb_uri, writer=True) as store:
        store.library(FUTURES).stage("HE.trades", _frame("2024-01-02", 3))  # never finalised: a crash
        assert store.library(FUTURES).get_staged_symbols() == ["HE.trades"]
    with Store.open(lmdb_uri, writer=False) as reader:
        assert reader.library(FUTURES).get_staged_symbols() == ["HE.trades"], "readers leave them alone"
    with Store.open(lmdb_uri, writer=True) as store:
        assert store.library(FUTURES).get_staged_symbols() == []


def test_opening_a_read_only_lmdb_store_for_writing_is_one_user_error_saying_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "arctic"
    with Store.open(f"lmdb://{path}?map_size=64MB", writer=True) as store:
        store.library(FUTURES)
    set_immutable(store_paths(path), True)
    try:
        with pytest.raises(StoreUnwritableError, match=f"store {path} is not writable") as refused:
            Store.open(f"lmdb://{path}?map_size=64MB", writer=True)
        assert isinstance(refused.value, UserError) and "chattr -i" in str(refused.value)
    finally:
        set_immutable(store_paths(path), False)
    with Store.open(f"lmdb://{path}?map_size=64MB", writer=True) as store:  # the lease was released
        assert store.has_library(FUTURES)


@pytest.mark.parametrize("first", ["list", "create"])
def test_the_first_write_to_a_store_gone_read_only_is_a_recorded_fault_not_a_crash(tmp_path: Path, first: str) -> None:
    """ArcticDB's ``list_symbols`` compacts the symbol list of a library never listed and ignores that write's failure:
    the LMDB environment was poisoned unrecorded, and the next write crashed the daemon (SIGSEGV; the read-only store
    test failed half its runs). Creating a library writes ArcticDB's ``_arctic_cfg`` environment, outside any
    library. A child process, because that crash takes its process down."""
    path = tmp_path / "arctic"
    done = subprocess.run(
        [sys.executable, str(PROCS), "read-only-first", f"lmdb://{path}?map_size=64MB", first],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome[first].startswith("StoreUnwritableError: store writes stopped"), outcome
    what = "list_symbols" if first == "list" else "create library cot"
    assert "Operation not permitted" in outcome[first] and what in outcome[first], outcome
    assert outcome["write"].startswith("StoreUnwritableError: store writes stopped"), outcome
    assert outcome["problem"].startswith(f"store {path} is not writable"), outcome
