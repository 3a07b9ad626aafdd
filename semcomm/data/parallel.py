"""Running one function over many tasks on a pool of processes, results in task order, with few in flight.

Decoding images is bound by the CPU, one core per process: :func:`ordered_map` spreads the tasks over ``workers``
processes (default: the cores this process may run on, ``os.sched_getaffinity``) and yields each result in the
order of the tasks, keeping at most ``2 * workers`` tasks submitted and unread, so that memory stays bounded
however many tasks there are. One worker, or one task, runs in this process. Processes are forked where the
platform can (no re-import of the library in each); elsewhere spawned.
"""
from __future__ import annotations

import multiprocessing
import numbers
import os
from collections import deque
from itertools import islice
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")
IN_FLIGHT = 2  # tasks per worker submitted ahead of the one being read


def available_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count()`` where that is missing)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def check_workers(workers) -> int:
    """``workers`` as a number of processes: None -> :func:`available_cores`; else a positive int, or a ValueError
    saying what was given."""
    if workers is None:
        return available_cores()
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be a positive number of processes, got {workers!r}")
    return int(workers)


def ordered_map(fn: Callable[[T], R], tasks: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``fn(task)`` for every task, in the tasks' order, over ``workers`` processes (see the module docstring).

    ``fn`` and the tasks must pickle (a module-level function, or a ``functools.partial`` of one). An exception
    raised by ``fn`` is raised here, at its task's turn, and the tasks not started are cancelled.
    """
    workers = check_workers(workers)
    tasks = list(tasks)
    if workers == 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context(method))
    try:
        queued = iter(tasks)
        pending = deque(pool.submit(fn, task) for task in islice(queued, IN_FLIGHT * workers))
        while pending:
            result = pending.popleft().result()
            for task in queued:  # refill: one submitted for each read
                pending.append(pool.submit(fn, task))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
