"""Decode ahead and encode behind the network, in a few threads, with a hard cap on what is held.

PNG/JPEG/WebP codecs in Pillow (and zlib) release the GIL, so a couple of threads decode the next
images and encode the previous ones while the network runs: the CPU or GPU stops waiting for codecs.
Both sides are bounded (``ahead`` decoded images, ``pending`` images waiting to be written), so
memory is a few images whatever the size of the folder. ``threads=0`` runs everything inline, in
order, in the calling thread: the plain one-at-a-time loop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import RestorekitError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Result(Generic[T, R]):
    """``fn(item)``: its ``value``, or the ``error`` it raised; ``seconds`` it took in its thread."""

    item: T
    value: R | None
    error: Exception | None
    seconds: float


def _timed(fn: Callable[[T], R], item: T) -> Result[T, R]:
    started = time.perf_counter()
    try:
        value = fn(item)
    except Exception as exc:  # noqa: BLE001 - handed to the caller with its item, who decides
        return Result(item, None, exc, time.perf_counter() - started)
    return Result(item, value, None, time.perf_counter() - started)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int, ahead: int) -> Iterator[Result[T, R]]:
    """``fn`` over ``items`` in ``threads`` threads, results in input order, at most ``ahead`` in flight.

    ``items`` is consumed lazily (never listed), and a result is only computed ``ahead`` items before
    the caller asks for it, so held memory does not grow with the input. Closing the iterator early
    cancels what has not started.
    """
    if threads < 0 or ahead < 1:
        raise RestorekitError(f"reader threads must be >= 0 and look-ahead >= 1 (got {threads}, {ahead})")
    if threads == 0:
        for item in items:
            yield _timed(fn, item)
        return
    source = iter(items)
    pending: deque[Future[Result[T, R]]] = deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="restorekit-read")
    try:
        for item in source:
            pending.append(pool.submit(_timed, fn, item))
            if len(pending) >= ahead:
                break
        while pending:
            result = pending.popleft().result()
            for item in source:  # refill one slot: keeps ``ahead`` in flight
                pending.append(pool.submit(_timed, fn, item))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class BoundedWriter:
    """Runs jobs (encode + atomic write) in ``threads`` background threads, at most ``pending`` queued.

    ``submit`` blocks while ``pending`` jobs are unfinished, which is what bounds memory: a restored
    image waits in at most one queue slot. Each job's ``Result`` goes to ``done`` in the worker thread.
    ``threads=0`` runs each job inline.
    """

    def __init__(self, done: Callable[[Result], None], threads: int, pending: int) -> None:
        if threads < 0 or pending < 1:
            raise RestorekitError(f"writer threads must be >= 0 and queue >= 1 (got {threads}, {pending})")
        self._done = done
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="restorekit-write") if threads else None
        self._slots = threading.BoundedSemaphore(pending)

    def submit(self, fn: Callable[[T], object], item: T) -> None:
        if self._pool is None:
            self._done(_timed(fn, item))
            return
        self._slots.acquire()
        try:
            future = self._pool.submit(_timed, fn, item)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._finish)

    def _finish(self, future: Future) -> None:
        try:
            if not future.cancelled():
                self._done(future.result())
        finally:
            self._slots.release()

    def close(self) -> None:
        """Wait for every submitted job (an interrupted run still finishes the writes it started)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
