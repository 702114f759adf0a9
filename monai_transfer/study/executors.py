"""Where cells run: this process, N local processes, or a Ray cluster.

An executor maps a picklable function over plain-data payloads and yields each result as it finishes (the runner
stores it at once and shows the progress: :mod:`monai_transfer.study.console`). Results are the same whichever executor
runs them: a cell's outcome depends only on its payload (seeded data, initialisation and order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

__all__ = ["make_executor", "LocalExecutor", "ProcessExecutor", "RayExecutor"]


class LocalExecutor:
    """Cells one after another in this process."""

    def map(self, fn: Callable, payloads: Sequence[Any]) -> Iterator[Any]:
        for p in payloads:
            yield fn(p)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # N workers share the cores instead of each taking all of them


class ProcessExecutor:
    """Cells in ``workers`` spawned processes (each limited to its share of the CPU threads)."""

    def __init__(self, workers: int):
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // workers)
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                        initargs=(threads,))  # fmt: skip
        self.workers = workers

    def map(self, fn: Callable, payloads: Sequence[Any]) -> Iterator[Any]:
        queue = list(payloads)
        running = {self.pool.submit(fn, queue.pop(0)) for _ in range(min(self.workers, len(queue)))}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                if queue:
                    running.add(self.pool.submit(fn, queue.pop(0)))
                yield f.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Cells as Ray tasks (``threads`` CPUs each) on the cluster at ``address`` (None: a local one, started and stopped here)."""

    def __init__(self, address: str | None = None, threads: int = 1):
        self.threads = threads
        try:
            import ray
        except ImportError:
            raise ImportError("the Ray executor needs Ray: pip install 'monai_transfer[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     **({} if address else {"_node_ip_address": "127.0.0.1"}))  # fmt: skip

    def map(self, fn: Callable, payloads: Sequence[Any]) -> Iterator[Any]:
        remote = self.ray.remote(num_cpus=self.threads, max_retries=0)(fn)
        pending = [remote.remote(p) for p in payloads]
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield self.ray.get(done[0])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


@contextmanager
def make_executor(kind: str = "local", workers: int = 1, address: str | None = None, threads: int = 1):
    """``"local"`` with ``workers`` processes (1: this process) or ``"ray"`` (``address`` of a running cluster)."""
    if kind == "local":
        ex: Any = LocalExecutor() if workers <= 1 else ProcessExecutor(workers)
    elif kind == "ray":
        ex = RayExecutor(address, threads)
    else:
        raise ValueError(f"executor must be 'local' or 'ray', got {kind!r}")
    try:
        yield ex
    finally:
        close = getattr(ex, "close", None)
        if close:
            close()
