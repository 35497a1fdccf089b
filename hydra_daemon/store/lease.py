"""The single-writer lease of a store: one writing daemon per store, readers never involved.

LMDB: an exclusive ``flock`` on ``<store dir>/hydra-writer.lock`` held for the life of the process; the kernel drops
it when the process dies, even on ``kill -9``. The file records the holder (pid, host) for the error message. Inside
the store directory, not beside it: a store bind-mounted into a container, or named through a symlink, is one lock.

S3: a lease object ``<path_prefix>/hydra-writer.lease`` = JSON ``{owner, pid, host, acquired_at, expires_at}``,
created with ``If-None-Match: *`` and renewed or taken over with ``If-Match: <etag>``, so of two racing processes
exactly one wins. A live lease of another owner refuses the open. One that looks expired, or that expires further
ahead than its holder's TTL allows (a holder whose clock ran ahead), is taken over only once its object stayed
unchanged for the holder's whole TTL, watched on this host's monotonic clock: hosts' wall clocks are never compared
(a host whose clock runs ahead would otherwise see a lease renewed on schedule as expired and take it from a live
writer; one whose clock ran behind would lock the store long after its holder died). A daemon thread renews every
``ttl/3``; :meth:`S3Lease.check` (called before every write) fails once renewal has failed or the lease is within
``ttl/6`` of expiring by this host's monotonic clock (a wall clock stepped back would extend it), so a holder that
stopped renewing stops writing before a watcher's TTL is over. A lost lease is free again (:meth:`S3Lease.free_again`)
when its object is gone or stayed unchanged for its holder's TTL, watched the same way.

Residual risk (S3): the lease guards the lease object, not the ArcticDB writes. A writer frozen longer than the TTL
(SIGSTOP, VM pause) after its last ``check()`` can finish an in-flight append after another process took over. Keep
the TTL far above the time one flush takes.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import boto3
import structlog
from botocore.exceptions import ClientError

from hydra_daemon.errors import UserError
from hydra_daemon.store.uri import S3Location

log = structlog.get_logger()

LEASE_OBJECT = "hydra-writer.lease"
DEFAULT_TTL_S = 30.0
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class StoreLockedError(UserError, RuntimeError):
    """Another process holds the writer lease of the store."""


class LeaseLostError(StoreLockedError):
    """This process no longer holds the writer lease; it must stop writing."""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease, as recorded in the lock file or lease object."""

    owner: str
    pid: int
    host: str
    acquired_at: float
    expires_at: float | None = None
    ttl_s: float | None = None
    """How long the holder's lease lasts from each renewal (None: a lease object of an earlier version)."""

    @classmethod
    def mine(cls, ttl_s: float | None = None) -> LeaseHolder:
        now = time.time()
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        expires = None if ttl_s is None else now + ttl_s
        return cls(owner, os.getpid(), socket.gethostname(), now, expires, ttl_s)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.acquired_at))
        text = f"pid {self.pid} on host {self.host} (since {since}"
        if self.expires_at is not None:
            text += f", lease expires {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.expires_at))}"
        return text + ")"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LeaseHolder | None:
        try:
            fields = json.loads(raw)
            return cls(
                str(fields["owner"]),
                int(fields["pid"]),
                str(fields["host"]),
                float(fields["acquired_at"]),
                fields.get("expires_at"),
                fields.get("ttl_s"),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _locked_message(store: str, holder: LeaseHolder | None) -> str:
    who = holder.describe() if holder else "an unidentified process"
    return (
        f"store {store} is already open for writing by {who}; only one writer per store is allowed. "
        "Stop it first (e.g. `systemctl stop hydra-daemon`); reading needs no lease (`hydra-daemon export`, "
        "hydra_daemon.reader.Reader)."
    )


class FileLease:
    """Exclusive flock on a lock file in an LMDB store, held until :meth:`release` or process exit.

    A flock belongs to the file, not to its name: a lock file removed (or replaced) under a holder lets the next
    writer create and lock a new one. So the lease is the locked file still being the one at the path: `acquire`
    checks it after locking (the file may go between open and lock) and `check` before every write."""

    def __init__(self, fd: int, path: Path, holder: LeaseHolder) -> None:
        self._fd: int | None = fd
        self.path = path
        self.holder = holder
        self._lost: str | None = None

    @classmethod
    def acquire(cls, path: Path, store: str) -> FileLease:
        """Take the lock or raise :class:`StoreLockedError` naming the holder; never waits."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LeaseHolder.from_json(os.pread(fd, 4096, 0))
                os.close(fd)
                raise StoreLockedError(_locked_message(store, holder)) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # removed or replaced between open and lock: lock the file now at the path
        else:
            raise StoreLockedError(f"store {store}: its writer lock file {path} keeps being replaced; stop what does")
        holder = LeaseHolder.mine()
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_json(), 0)
        os.fsync(fd)
        return cls(fd, path, holder)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the locked file is no longer the one at the path (removed or replaced):
        another writer may have locked a new one."""
        if self._lost is None and self._fd is not None and not _same_file(self._fd, self.path):
            self._lost = (
                f"writer lock file {self.path} was removed or replaced while this daemon held it, so another writer "
                "may hold a new one; this daemon stopped writing (two writers on one store lose data). Stop every "
                "other writer of the store, then restart hydra-daemon"
            )
        if self._lost is not None:
            raise LeaseLostError(self._lost)

    def renew(self) -> None:
        """A flock does not expire; nothing to renew."""

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


LEGACY_LOCK_SUFFIX = ".writer.lock"
"""Releases before 2026-12 locked ``<store dir>.writer.lock``, beside the store."""


def refuse_if_legacy_writer(store_dir: Path, store: str) -> None:
    """Raise :class:`StoreLockedError` if a daemon of an earlier release writes the store: it holds the lock file
    beside the store, which this release no longer takes (an upgrade that started the new daemon before the old one
    stopped would otherwise have two writers). Probing needs only read access and leaves the file as it is."""
    legacy = store_dir.with_name(store_dir.name + LEGACY_LOCK_SUFFIX)
    try:
        fd = os.open(legacy, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no earlier release ran here (or its file is unreadable: then nothing to probe)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two daemons of this release probing never collide
    except BlockingIOError:
        holder = LeaseHolder.from_json(os.pread(fd, 4096, 0))
        raise StoreLockedError(
            f"{_locked_message(store, holder)} (a daemon of an earlier release, holding {legacy}: stop it before "
            "starting this one)"
        ) from None
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def s3_client(location: S3Location) -> Any:
    """A boto3 S3 client for the location (URI credentials if given, else the default AWS chain)."""
    session = boto3.session.Session(profile_name=location.aws_profile) if location.aws_profile else boto3
    return session.client(
        "s3",
        endpoint_url=location.endpoint_url,
        aws_access_key_id=location.access,
        aws_secret_access_key=location.secret,
        region_name=location.region or "us-east-1",
    )


def lease_key(location: S3Location) -> str:
    return f"{location.path_prefix}/{LEASE_OBJECT}" if location.path_prefix else LEASE_OBJECT


def _is_conflict(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _CONFLICT_CODES


class S3Lease:
    """Lease object with expiry in the store's bucket; renewed by a daemon thread."""

    def __init__(self, client: Any, bucket: str, key: str, holder: LeaseHolder, etag: str, ttl_s: float) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self.holder = holder
        self._etag = etag
        self._ttl_s = ttl_s
        self._deadline = time.monotonic() + ttl_s  # set again, from before the request, by each renewal
        self._watched: tuple[str, float] | None = None  # a lost lease's object: (etag, monotonic time first seen)
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_loop, name="hydra-s3-lease", daemon=True)
        self._renewer.start()

    @classmethod
    def acquire(cls, client: Any, bucket: str, key: str, store: str, ttl_s: float = DEFAULT_TTL_S) -> S3Lease:
        """Create the lease, or take over an expired one; :class:`StoreLockedError` if another owner holds it."""
        for _ in range(3):
            sent = time.monotonic()
            current = _read_lease(client, bucket, key)
            if current is not None:
                holder, etag = current
                if holder is not None and _live(holder):
                    raise StoreLockedError(_locked_message(store, holder))
                watched = _watch(client, bucket, key, etag, (holder.ttl_s if holder else None) or ttl_s)
                if watched is _Watched.GONE:
                    continue
                if watched is _Watched.RENEWED:  # alive: its clock runs behind ours
                    latest = _read_lease(client, bucket, key)
                    raise StoreLockedError(_locked_message(store, latest[0] if latest else holder))
                condition = {"IfMatch": etag}
            else:
                condition = {"IfNoneMatch": "*"}
            mine = LeaseHolder.mine(ttl_s)
            try:
                response = client.put_object(Bucket=bucket, Key=key, Body=mine.to_json(), **condition)
            except ClientError as error:
                if _is_conflict(error):
                    continue
                raise
            if current is not None:
                log.warning("store.lease_taken_over", store=store, previous=current[0] and current[0].describe())
            lease = cls(client, bucket, key, mine, response["ETag"], ttl_s)
            lease._deadline = sent + ttl_s
            return lease
        current = _read_lease(client, bucket, key)
        raise StoreLockedError(_locked_message(store, current[0] if current else None))

    def renew(self) -> None:
        """Extend the lease by the TTL; :class:`LeaseLostError` if another owner took it over."""
        with self._lock:
            if self._lost:
                raise LeaseLostError(self._lost)
            sent = time.monotonic()
            renewed = replace(self.holder, expires_at=time.time() + self._ttl_s)
            try:
                response = self._put_if_match(renewed)
            except ClientError as error:
                if not (_is_conflict(error) or _is_missing(error)):
                    raise
                current = _read_lease(self._client, self._bucket, self._key)
                if current is None or current[0] is None or current[0].owner != self.holder.owner:
                    self._lost = self._taken_over_message(current[0] if current else None)
                    raise LeaseLostError(self._lost) from error
                # Our own earlier renewal took effect but its response was lost: the object is ours, its ETag new.
                self._etag = current[1]
                response = self._put_if_match(renewed)
            self.holder = renewed
            self._etag = response["ETag"]
            self._deadline = sent + self._ttl_s

    def _put_if_match(self, holder: LeaseHolder) -> Any:
        return self._client.put_object(Bucket=self._bucket, Key=self._key, Body=holder.to_json(), IfMatch=self._etag)

    def _taken_over_message(self, holder: LeaseHolder | None) -> str:
        who = f"taken over by {holder.describe()}" if holder is not None else "deleted by another process"
        return (
            f"writer lease s3://{self._bucket}/{self._key} was {who}; this daemon stopped writing (two writers on one "
            "store lose data). Stop the other writer; once the lease is free this daemon exits with status 1 so "
            "systemd restarts it and capture resumes from its watermarks"
        )

    def free_again(self) -> bool:
        """True once the lease was lost to another process and is free now: deleted, or unchanged for its holder's
        TTL across calls (called every second), on this host's monotonic clock, as `acquire` would take it over.
        Reads the lease object."""
        with self._lock:
            if not self._lost or self._stop.is_set():
                return False
        current = _read_lease(self._client, self._bucket, self._key)
        if current is None:
            return True
        holder, etag = current
        now = time.monotonic()
        if self._watched is None or self._watched[0] != etag:
            self._watched = (etag, now)  # new or renewed: watch it afresh
            return False
        return now - self._watched[1] >= ((holder.ttl_s if holder else None) or self._ttl_s)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless the lease is held with at least ``ttl/6`` to spare."""
        if self._lost:
            raise LeaseLostError(self._lost)
        if self._deadline - time.monotonic() < self._ttl_s / 6:
            raise LeaseLostError(
                f"writer lease s3://{self._bucket}/{self._key} is about to expire (renewal failing); stop writing"
            )

    def release(self) -> None:
        """Stop renewing and delete the lease object if it is still ours."""
        self._stop.set()
        if self._renewer is not threading.current_thread():
            self._renewer.join()
        with self._lock:
            if self._lost:
                return
            try:
                self._client.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
            except ClientError as error:
                log.warning("store.lease_not_released", key=self._key, error=str(error))
            self._lost = "lease released"

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._ttl_s / 3):
            try:
                self.renew()
            except LeaseLostError as error:
                log.error("store.lease_lost", error=str(error))
                return
            except Exception as error:  # network trouble: keep trying; check() fails if it lasts
                log.warning("store.lease_renewal_failed", error=str(error))


def _live(holder: LeaseHolder) -> bool:
    """Whether a lease expires after this host's now, by no more than its holder's TTL when that is known (further
    ahead, only a holder whose clock ran ahead could have written it: `acquire` watches it instead)."""
    left = (holder.expires_at or 0) - time.time()
    return left > 0 and (holder.ttl_s is None or left <= holder.ttl_s + 1)


class _Watched(Enum):
    UNCHANGED = "unchanged"
    RENEWED = "renewed"
    GONE = "gone"


def _watch(client: Any, bucket: str, key: str, etag: str, seconds: float) -> _Watched:
    """Whether the lease object with `etag` stays unchanged for `seconds` of this host's monotonic clock, is
    renewed (written again) meanwhile, or is deleted."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, seconds / 10))
        current = _read_lease(client, bucket, key)
        if current is None:
            return _Watched.GONE
        if current[1] != etag:
            return _Watched.RENEWED
    return _Watched.UNCHANGED


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}


def _read_lease(client: Any, bucket: str, key: str) -> tuple[LeaseHolder | None, str] | None:
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise
    return LeaseHolder.from_json(response["Body"].read()), response["ETag"]
