"""Decoding in worker processes: results in input order, a bounded number in flight, a dead worker one error.

``multiprocessing.Pool`` waits forever for the result of a worker that died (a native crash in a
video library, the out-of-memory killer), so ``data scan``, ``data cache`` and batch prediction
hung. ``concurrent.futures`` notices the death and breaks the pool; ``ordered_map`` turns that
into ``WorkerCrashError``, one line at the command line.
"""

from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from actionmoe.errors import WorkerCrashError

Job = TypeVar("Job")
Result = TypeVar("Result")


def ordered_map(
    function: Callable[[Job], Result], jobs: Iterable[Job], workers: int, in_flight: int | None = None
) -> Iterator[Result]:
    """``map(function, jobs)`` in ``workers`` processes (0: here), in order, at most ``in_flight`` jobs ahead.

    ``function`` must be importable by name (a module-level function), as for any process pool.

    Raises:
        WorkerCrashError: a worker process died before returning its result.
    """
    if workers <= 0:
        yield from map(function, jobs)
        return
    limit = max(1, in_flight or 4 * workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context())
    pending: collections.deque[Future] = collections.deque()
    remaining = iter(jobs)
    done = 0
    try:
        for job in remaining:
            pending.append(pool.submit(function, job))
            if len(pending) >= limit:
                break
        while pending:
            result = pending.popleft().result()
            done += 1
            for job in remaining:
                pending.append(pool.submit(function, job))
                break
            yield result
    except BrokenProcessPool:
        raise WorkerCrashError(
            f"a decoding process died after {done} results (a crash inside the video library, or out of "
            "memory); run again with --workers 0 or 1 to find the file, or `actionmoe data scan` it"
        ) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def batched(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    """``items`` in lists of ``size`` (the last may be shorter); ``itertools.batched`` from Python 3.12."""
    batch: list[Job] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
