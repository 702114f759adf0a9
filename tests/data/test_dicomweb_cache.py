"""``SeriesCache``: LRU eviction under a byte limit, pins, atomic entries, content checks, resume, two processes."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from monai_transfer.data.dicomweb.cache import CacheError, PartialSeries, SeriesCache


def _fake_fetch(n: int, size: int = 100, calls: list | None = None, fail_after: int | None = None, tag: str = "s"):
    """A fetch that writes ``n`` instances of ``size`` bytes, skipping completed ones; may fail after k writes."""

    def fetch(partial: PartialSeries):
        done = partial.completed()
        written = 0
        for i in range(n):
            sop = f"1.2.{tag}.{i}"
            if sop in done:
                continue
            if fail_after is not None and written >= fail_after:
                raise ConnectionError("server went away")
            partial.write_instance([bytes([i % 256]) * (size // 2), bytes([i % 256]) * (size - size // 2)], None, sop)
            written += 1
            if calls is not None:
                calls.append(sop)
        return [f"1.2.{tag}.{i}" for i in range(n)]

    return fetch


def test_fetch_once_then_reuse(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)
    calls: list = []
    p = cache.get("1.2.3", _fake_fetch(5, calls=calls))
    assert sorted(f.name for f in p.iterdir()) == sorted([f"1.2.s.{i}.dcm" for i in range(5)] + ["manifest.json"])
    assert cache.get("1.2.3", _fake_fetch(5, calls=calls)) == p
    assert len(calls) == 5  # the second get fetched nothing
    m = cache.manifest("1.2.3")
    assert m["bytes"] == 500 and len(m["instances"]) == 5 and len(m["instances"][0]["sha256"]) == 64
    assert cache.total_bytes() == 500 and cache.contains("1.2.3")


def test_lru_eviction_under_a_small_limit(tmp_path: Path):
    cache2 = SeriesCache(tmp_path / "d", max_bytes=1000)
    cache2.get("a", _fake_fetch(4, tag="a"))
    cache2.get("b", _fake_fetch(4, tag="b"))
    os.utime(cache2.path("a") / "manifest.json", (0, 10))
    os.utime(cache2.path("b") / "manifest.json", (0, 20))
    cache2.get("a", _fake_fetch(4, tag="a"))  # reuse makes "a" the most recent
    cache2.get("c", _fake_fetch(4, tag="c"))
    assert cache2.contains("a") and cache2.contains("c") and not cache2.contains("b")
    assert cache2.total_bytes() == 800


def test_pinned_entries_are_never_evicted(tmp_path: Path, caplog):
    cache = SeriesCache(tmp_path / "c", max_bytes=1000)
    with cache.open("a", _fake_fetch(6, tag="a")) as pa:
        with caplog.at_level(logging.WARNING):
            with cache.open("b", _fake_fetch(6, tag="b")) as pb:
                assert pa.is_dir() and pb.is_dir()  # both pinned: the limit is exceeded, with a warning
                assert "above its limit" in caplog.text
                assert not cache.evict("a")
        # "b" released: the cache evicts down to its limit, never "a" (still pinned)
        assert cache.contains("a") and not cache.contains("b")
    assert cache.evict("a") and cache.total_bytes() == 0


def test_a_series_larger_than_the_cache_is_named(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=300)
    with pytest.raises(CacheError, match="larger than the cache limit"):
        cache.get("big", _fake_fetch(5))
    assert not cache.contains("big") and not (tmp_path / "c" / "partial" / "big").exists()


def test_abandoned_partials_are_removed_at_start(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)
    with pytest.raises(ConnectionError):
        cache.get("k", _fake_fetch(5, fail_after=2))
    part = tmp_path / "c" / "partial" / "k"
    SeriesCache(tmp_path / "c", max_bytes=10_000)
    assert part.is_dir()  # recent: kept for a resume
    for f in [part, *part.iterdir()]:
        os.utime(f, (0, 1000))
    SeriesCache(tmp_path / "c", max_bytes=10_000, partial_ttl_s=3600)
    assert not part.exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "extra"])
def test_corrupt_entry_is_refetched_and_logged(tmp_path: Path, caplog, damage: str):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)
    p = cache.get("k", _fake_fetch(3))
    f = p / "1.2.s.1.dcm"
    if damage == "flip":
        f.write_bytes(b"\xff" + f.read_bytes()[1:])
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:10])
    elif damage == "delete":
        f.unlink()
    else:
        (p / "stray.dcm").write_bytes(b"x")
    calls: list = []
    with caplog.at_level(logging.WARNING):
        p2 = cache.get("k", _fake_fetch(3, calls=calls))
    assert "cache entry k is corrupt" in caplog.text
    assert len(calls) == 3 and cache.check("k") is None and p2 == p


def test_size_verification_misses_a_same_size_flip_but_hash_does_not(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000, verify="size")
    p = cache.get("k", _fake_fetch(2))
    f = p / "1.2.s.0.dcm"
    f.write_bytes(b"\xff" + f.read_bytes()[1:])
    assert cache.check("k") is None
    assert "SHA-256" in cache.check("k", verify="hash")


def test_interrupted_fetch_resumes_without_refetching(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)
    calls: list = []
    with pytest.raises(ConnectionError):
        cache.get("k", _fake_fetch(10, calls=calls, fail_after=4))
    assert not cache.contains("k") and not cache.path("k").exists()  # nothing half-visible
    assert len(calls) == 4
    # a new process (a new cache object) resumes: only the 6 missing instances are fetched
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)
    calls2: list = []
    cache.get("k", _fake_fetch(10, calls=calls2))
    assert len(calls2) == 6 and not set(calls) & set(calls2)
    assert len(cache.manifest("k")["instances"]) == 10 and not (tmp_path / "c" / "partial" / "k").exists()


def test_half_written_files_are_cleaned_at_start(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)
    with pytest.raises(ConnectionError):
        cache.get("k", _fake_fetch(5, fail_after=2))
    part = tmp_path / "c" / "partial" / "k"
    (part / ".deadbeef.part").write_bytes(b"half")  # a crash mid-instance
    with open(part / "journal.jsonl", "a") as fh:
        fh.write('{"sop_instance_uid": "1.2.s.2", "fi')  # a crash mid-line
    (tmp_path / "c" / "series" / "junk").mkdir()  # an entry without a manifest is never trusted
    (tmp_path / "c" / "trash" / "old-1234").mkdir()
    SeriesCache(tmp_path / "c", max_bytes=10_000)
    assert sorted(f.name for f in part.iterdir()) == ["1.2.s.0.dcm", "1.2.s.1.dcm", "journal.jsonl"]
    assert not (tmp_path / "c" / "series" / "junk").exists() and not any((tmp_path / "c" / "trash").iterdir())


def test_incomplete_fetch_is_refused(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)

    def fetch(partial):
        partial.write_instance([b"x" * 10], None, "1.1")
        return ["1.1", "1.2"]

    with pytest.raises(CacheError, match="1 of 2 instances were not fetched"):
        cache.get("k", fetch)
    assert not cache.contains("k")


def test_check_function_names_the_instance(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10_000)

    def fetch(partial):
        partial.write_instance([b"x" * 10], check=lambda p: "9.9", sop_instance_uid="1.1")

    with pytest.raises(CacheError, match="sent instance 9.9 where 1.1 was asked for"):
        cache.get("k", fetch)
    assert [f.name for f in (tmp_path / "c" / "partial" / "k").iterdir()] == []


def test_bad_keys_are_refused(tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", max_bytes=10)
    for key in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError, match="not usable as a file name"):
            cache.path(key)


def _hold_pin(root: str, key: str, ready, release) -> None:
    cache = SeriesCache(root, max_bytes=1000)
    with cache.open(key, _fake_fetch(6, tag=key)):
        ready.set()
        release.wait(60)


@pytest.mark.slow  # spawned interpreters import MONAI and torch through monai_transfer.data
def test_a_pin_held_by_another_process_prevents_eviction(tmp_path: Path):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_pin, args=(str(tmp_path / "c"), "a", ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        cache = SeriesCache(tmp_path / "c", max_bytes=1000)
        cache.get("b", _fake_fetch(6, tag="b"))  # 600 + 600 > 1000: "a" is LRU but pinned elsewhere, "b" is newest
        assert cache.contains("a") and not cache.evict("a")
    finally:
        release.set()
        holder.join(60)
    assert cache.evict("a")  # the holder ended: the kernel dropped its lock


def _worker(root: str, key: str, q) -> None:
    cache = SeriesCache(root, max_bytes=100_000)
    calls: list = []
    cache.get(key, _fake_fetch(20, size=1000, calls=calls))
    q.put(len(calls))


@pytest.mark.slow  # spawned interpreters import MONAI and torch through monai_transfer.data
def test_two_processes_fetch_one_series_once(tmp_path: Path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "c"), "shared", q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    counts = sorted(q.get(timeout=5) for _ in procs)
    assert counts == [0, 20]  # one fetched, the other waited on the fetch lock and reused the entry
    assert SeriesCache(tmp_path / "c", max_bytes=100_000).check("shared") is None
