"""A bounded local cache of DICOM series on disk, shared safely by several processes.

Layout under ``root``::

    series/<key>/            complete entries: one ``<SOPInstanceUID>.dcm`` per instance and ``manifest.json``
    partial/<key>/           a download in progress (or interrupted): completed instances and ``journal.jsonl``
    trash/                   entries being deleted (renamed here first, so a deletion is atomic too)
    locks/<key>.fetch        held (exclusive) while one process fills ``partial/<key>``
    locks/<key>.pin          held (shared) while a run uses ``series/<key>``: such an entry is never evicted
    .lock                    held (exclusive) while entries are committed, evicted or cleaned

Entries appear only by renaming a complete ``partial/<key>`` onto ``series/<key>``, so a half-written series is never
visible. An interrupted download keeps its completed instances (each recorded with its size and SHA-256 in a journal),
so the next fetch of the series skips them. Nothing is fsync-ed (a sync per instance halved the throughput): after a
power loss, resumed instances are re-hashed against the journal and entries against their manifest, so a file the
disk lost is fetched again rather than trusted. The limit bounds the bytes of complete entries; least recently used entries are
evicted first, never one that is pinned. Locks are ``fcntl.flock`` locks: the kernel drops them when a process dies, so
a crashed run never leaves a series pinned or a fetch locked. POSIX only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SeriesCache", "PartialSeries", "SeriesLease", "CacheEntry", "InstanceRecord", "CacheError"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
JOURNAL = "journal.jsonl"
_SAFE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")


class CacheError(RuntimeError):
    """A cache entry cannot be made or used (said in one sentence)."""


@dataclass(frozen=True)
class InstanceRecord:
    """One stored instance: its SOPInstanceUID, file name (inside the entry), size in bytes and SHA-256."""

    sop_instance_uid: str
    file: str
    size: int
    sha256: str


@dataclass(frozen=True)
class CacheEntry:
    """A complete series in the cache."""

    key: str
    path: Path
    bytes: int
    n_instances: int
    last_used: float


def _check_name(name: str, what: str) -> str:
    # keys and UIDs become file names: refuse anything that could leave the folder or collide after case folding
    if not isinstance(name, str) or not _SAFE.match(name) or name in (".", ".."):
        raise ValueError(f"{what} {name!r} is not usable as a file name (letters, digits, '.', '_', '-' only)")
    return name


class _FileLock:
    """An ``fcntl.flock`` on a file, opened per acquisition (flock conflicts between open files, even in one process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, shared: bool = False, blocking: bool = True) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class PartialSeries:
    """The download folder of one series, handed to a fetch function: it writes instances here, one file each.

    Instances already completed by an earlier, interrupted fetch are listed by :meth:`completed`; a fetch skips them.
    :meth:`write_instance` is thread-safe, so instances may be fetched concurrently.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._records: dict[str, InstanceRecord] = {}
        self._load_journal()

    def _load_journal(self) -> None:
        journal = self.path / JOURNAL
        if not journal.is_file():
            return
        kept: dict[str, InstanceRecord] = {}
        for line in journal.read_text().splitlines():
            try:
                rec = InstanceRecord(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut by a crash: its instance is fetched again
            f = self.path / rec.file
            if f.is_file() and f.stat().st_size == rec.size and _sha256(f) == rec.sha256:
                kept[rec.sop_instance_uid] = rec
        self._records = kept
        # rewrite the journal with only what is really there, so later appends follow whole lines
        with open(journal, "w") as fh:
            for rec in kept.values():
                fh.write(json.dumps(rec.__dict__) + "\n")
        for f in self.path.iterdir():
            if f.name not in (JOURNAL,) and f.name not in {r.file for r in kept.values()}:
                f.unlink(missing_ok=True)  # half-written instances of the interrupted fetch

    def completed(self) -> dict[str, InstanceRecord]:
        """The instances already stored, by SOPInstanceUID."""
        with self._lock:
            return dict(self._records)

    def write_instance(
        self,
        chunks: Iterable[bytes],
        check: Callable[[Path], str] | None = None,
        sop_instance_uid: str | None = None,
    ) -> InstanceRecord:
        """Stream ``chunks`` to a temporary file, check it, and record it as a completed instance.

        Args:
            chunks: the instance's bytes, in pieces (never held whole).
            check: called on the written file; returns its SOPInstanceUID, raises if the file is unusable (truncated).
            sop_instance_uid: the expected SOPInstanceUID; required when ``check`` is not given. A mismatch with the
                one ``check`` returns raises :class:`CacheError`.

        Returns:
            the instance's record. The temporary file is removed whenever anything raises.
        """
        if check is None and sop_instance_uid is None:
            raise ValueError("write_instance needs sop_instance_uid or a check that reads it")
        tmp = self.path / f".{uuid.uuid4().hex}.part"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            sop = check(tmp) if check is not None else sop_instance_uid
            if sop_instance_uid is not None and sop != sop_instance_uid:
                raise CacheError(f"the server sent instance {sop} where {sop_instance_uid} was asked for")
            rec = InstanceRecord(_check_name(str(sop), "SOPInstanceUID"), f"{sop}.dcm", size, digest.hexdigest())
            os.replace(tmp, self.path / rec.file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            with open(self.path / JOURNAL, "a") as fh:
                fh.write(json.dumps(rec.__dict__) + "\n")
            self._records[rec.sop_instance_uid] = rec
        return rec


#: fetch(partial) writes the series' instances into ``partial`` and returns the SOPInstanceUIDs the series has
#: (checked against what was written before the entry is committed), or None to accept what was written.
FetchFn = Callable[[PartialSeries], "Iterable[str] | None"]


class SeriesLease:
    """A pinned cache entry: while held, no process evicts it. Release it, or use it as a context manager."""

    def __init__(self, key: str, path: Path, lock: _FileLock, cache: SeriesCache) -> None:
        self.key, self.path, self._lock, self._cache = key, path, lock, cache

    def release(self) -> None:
        """Unpin the entry; the cache then evicts down to its limit if pins held it above."""
        if self._lock.held:
            self._lock.release()
            self._cache.enforce_limit()

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: Any) -> None:
        self.release()


class SeriesCache:
    """A bounded on-disk cache of DICOM series with LRU eviction, pins, atomic entries and content checks.

    Args:
        root: the cache folder (created). Several processes may share it.
        max_bytes: limit on the bytes of complete entries; least recently used unpinned entries are evicted beyond it.
        verify: what is checked when an entry is reused: ``"hash"`` (size and SHA-256 of every instance) or
            ``"size"`` (file sizes only, no reading). A corrupt entry is logged and fetched again.
        partial_ttl_s: an interrupted download untouched for this long is deleted at start-up rather than kept for a
            resume (partial downloads are not counted in ``max_bytes``; this bounds what abandoned ones hold).

    Example::

        cache = SeriesCache("~/.cache/monai_transfer/dicomweb", max_bytes=20 * 2**30)
        with cache.open(series_uid, fetch) as folder:   # pinned while inside
            img = load_series_from_folder(folder)
    """

    def __init__(
        self, root: str | os.PathLike, max_bytes: int, verify: str = "hash", partial_ttl_s: float = 7 * 24 * 3600
    ) -> None:
        if int(max_bytes) <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if verify not in ("hash", "size"):
            raise ValueError(f"verify must be 'hash' or 'size', got {verify!r}")
        self.root = Path(root).expanduser().resolve()
        self.max_bytes = int(max_bytes)
        self.verify = verify
        self.partial_ttl_s = float(partial_ttl_s)
        for sub in ("series", "partial", "trash", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._global = self.root / ".lock"
        self.clean()

    # --- locks -------------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = _FileLock(self._global)
        lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _lock(self, key: str, kind: str) -> _FileLock:
        return _FileLock(self.root / "locks" / f"{key}.{kind}")

    # --- housekeeping ------------------------------------------------------------------------------------------

    def clean(self) -> None:
        """Remove leftovers of crashed processes: trash, half-written instance files and partials already complete.

        Completed instances of an interrupted download stay (the next fetch resumes from them) unless the download was
        abandoned (untouched for ``partial_ttl_s``); a partial folder that another live process is filling is left
        alone.
        """
        now = time.time()
        with self._locked():
            for t in (self.root / "trash").iterdir():
                shutil.rmtree(t, ignore_errors=True)
            for p in (self.root / "partial").iterdir():
                fetch = self._lock(p.name, "fetch")
                if not fetch.acquire(blocking=False):
                    continue  # a live fetch owns it
                try:
                    if (self.root / "series" / p.name).is_dir() or now - _newest_mtime(p) > self.partial_ttl_s:
                        self._trash(p)
                    else:
                        for f in p.glob(".*.part"):  # half-written instances (the journal is checked on resume)
                            f.unlink(missing_ok=True)
                finally:
                    fetch.release()
            for e in (self.root / "series").iterdir():
                if not (e / MANIFEST).is_file():  # not made by this cache (or damaged by hand): never trusted
                    self._trash(e)

    def _trash(self, path: Path) -> None:
        dest = self.root / "trash" / f"{path.name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, dest)
        shutil.rmtree(dest, ignore_errors=True)

    # --- queries -----------------------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives (whether or not it exists)."""
        return self.root / "series" / _check_name(key, "cache key")

    def contains(self, key: str) -> bool:
        """Whether a complete entry exists for ``key`` (not checked)."""
        return (self.path(key) / MANIFEST).is_file()

    def entries(self) -> list[CacheEntry]:
        """Complete entries, least recently used first."""
        out = []
        for e in (self.root / "series").iterdir():
            try:
                m = json.loads((e / MANIFEST).read_text())
                used = (e / MANIFEST).stat().st_mtime
            except (OSError, ValueError):
                continue  # being evicted right now
            out.append(CacheEntry(e.name, e, int(m["bytes"]), len(m["instances"]), used))
        return sorted(out, key=lambda c: (c.last_used, c.key))

    def total_bytes(self) -> int:
        """Bytes held by complete entries."""
        return sum(e.bytes for e in self.entries())

    def manifest(self, key: str) -> dict[str, Any]:
        """The manifest of a complete entry: ``key``, ``bytes``, ``instances`` (records as dicts)."""
        return json.loads((self.path(key) / MANIFEST).read_text())

    # --- checks ------------------------------------------------------------------------------------------------

    def check(self, key: str, verify: str | None = None) -> str | None:
        """Check a complete entry against its manifest; return None when sound, else the first problem found."""
        entry = self.path(key)
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            return f"unreadable manifest ({type(e).__name__})"
        names = {r["file"] for r in manifest["instances"]}
        extra = sorted(p.name for p in entry.iterdir() if p.name != MANIFEST and p.name not in names)
        if extra:
            return f"unexpected file {extra[0]}"
        for r in manifest["instances"]:
            f = entry / r["file"]
            if not f.is_file():
                return f"instance {r['sop_instance_uid']} is missing"
            if f.stat().st_size != r["size"]:
                return f"instance {r['sop_instance_uid']} has {f.stat().st_size} bytes, the manifest says {r['size']}"
            if (verify or self.verify) == "hash" and _sha256(f) != r["sha256"]:
                return f"instance {r['sop_instance_uid']} does not match its SHA-256"
        return None

    # --- use ---------------------------------------------------------------------------------------------------

    def acquire(self, key: str, fetch: FetchFn) -> SeriesLease:
        """Pin the entry of ``key``, fetching it first when it is absent or corrupt; release the lease when done."""
        pin = self._lock(_check_name(key, "cache key"), "pin")
        pin.acquire(shared=True)  # before looking: an evictor skips pinned entries, so what we find stays
        try:
            if self.contains(key):
                problem = self.check(key)
                if problem is None:
                    self._touch(key)
                    return SeriesLease(key, self.path(key), pin, self)
                logger.warning("cache entry %s is corrupt (%s); fetching it again", key, problem)
                self._drop_corrupt(key)
            self._fetch(key, fetch)
            return SeriesLease(key, self.path(key), pin, self)
        except BaseException:
            pin.release()
            raise

    @contextmanager
    def open(self, key: str, fetch: FetchFn) -> Iterator[Path]:
        """Context manager: the entry's folder, pinned (never evicted) while inside; fetched first when needed."""
        lease = self.acquire(key, fetch)
        try:
            yield lease.path
        finally:
            lease.release()

    def get(self, key: str, fetch: FetchFn) -> Path:
        """The entry's folder, fetched first when needed; not pinned (prefer :meth:`open` while reading it)."""
        lease = self.acquire(key, fetch)
        lease.release()
        return lease.path

    def evict(self, key: str) -> bool:
        """Remove the entry of ``key`` unless it is pinned; returns whether it was removed."""
        with self._locked():
            return self._evict_if_unpinned(self.path(key))

    def clear(self) -> int:
        """Remove every unpinned entry; returns how many were removed."""
        with self._locked():
            return sum(self._evict_if_unpinned(e.path) for e in self.entries())

    def enforce_limit(self, protect: str | None = None) -> list[str]:
        """Evict least recently used unpinned entries until the total fits ``max_bytes``; returns the evicted keys."""
        evicted: list[str] = []
        with self._locked():
            entries = self.entries()
            total = sum(e.bytes for e in entries)
            for e in entries:
                if total <= self.max_bytes:
                    break
                if e.key != protect and self._evict_if_unpinned(e.path):
                    total -= e.bytes
                    evicted.append(e.key)
            if total > self.max_bytes:
                logger.warning(
                    "series cache %s holds %d bytes, above its limit of %d: the rest is in use by running processes",
                    self.root,
                    total,
                    self.max_bytes,
                )
        for key in evicted:
            logger.info("evicted series %s from the cache", key)
        return evicted

    # --- internals ---------------------------------------------------------------------------------------------

    def _touch(self, key: str) -> None:
        # the manifest's mtime is the entry's last use (LRU); a touch needs no lock and writes no content
        try:
            os.utime(self.path(key) / MANIFEST)
        except FileNotFoundError:
            pass

    def _evict_if_unpinned(self, entry: Path) -> bool:
        if not entry.is_dir():
            return False
        pin = self._lock(entry.name, "pin")
        if not pin.acquire(blocking=False):
            return False
        try:
            self._trash(entry)
            return True
        finally:
            pin.release()

    def _drop_corrupt(self, key: str) -> None:
        # we hold a shared pin ourselves, so the normal (pin-respecting) eviction would refuse: trash under the lock
        with self._locked():
            if self.path(key).is_dir():
                self._trash(self.path(key))

    def _fetch(self, key: str, fetch: FetchFn) -> None:
        lock = self._lock(key, "fetch")
        lock.acquire()  # one fetcher per series; others wait here, then find the entry
        try:
            if self.contains(key) and self.check(key) is None:
                self._touch(key)
                return
            part_dir = self.root / "partial" / key
            part_dir.mkdir(exist_ok=True)
            partial = PartialSeries(part_dir)
            n_before = len(partial.completed())
            if n_before:
                logger.info("resuming series %s: %d instance(s) already fetched", key, n_before)
            expected = fetch(partial)
            self._commit(key, partial, expected)
        finally:
            lock.release()
        self.enforce_limit(protect=key)

    def _commit(self, key: str, partial: PartialSeries, expected: Iterable[str] | None) -> None:
        records = partial.completed()
        if expected is not None:
            missing = sorted(set(expected) - set(records))
            if missing:
                raise CacheError(
                    f"series {key} is incomplete: {len(missing)} of {len(set(expected))} instances were not fetched "
                    f"(first: {missing[0]})"
                )
            records = {k: records[k] for k in expected}
        if not records:
            raise CacheError(f"series {key} has no instances to cache")
        total = sum(r.size for r in records.values())
        if total > self.max_bytes:
            self._trash(partial.path)  # it can never be committed: keeping it for a resume would only hold the disk
            raise CacheError(f"series {key} ({total} bytes) is larger than the cache limit ({self.max_bytes} bytes)")
        manifest = {
            "key": key,
            "bytes": total,
            "instances": [r.__dict__ for r in sorted(records.values(), key=lambda r: r.sop_instance_uid)],
        }
        _write_json(partial.path / MANIFEST, manifest)
        (partial.path / JOURNAL).unlink(missing_ok=True)
        keep = {r.file for r in records.values()} | {MANIFEST}
        for f in partial.path.iterdir():
            if f.name not in keep:
                f.unlink()
        with self._locked():
            dest = self.path(key)
            if dest.exists():
                self._trash(dest)  # a stale or corrupt entry another process left; ours is checked and complete
            os.rename(partial.path, dest)


def _newest_mtime(folder: Path) -> float:
    return max([folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.iterdir())])


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
