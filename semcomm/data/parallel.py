"""Running one function over many tasks in parallel, results in task order, with few in flight: on a pool of local
processes, or as Ray tasks (on a cluster).

Decoding images is bound by the CPU, one core per task: :func:`ordered_map` spreads the tasks over ``workers``
processes (default: the cores this process may run on, ``os.sched_getaffinity``), or with ``engine="ray"`` over
Ray workers (default: the CPUs of the Ray cluster), and yields each result in the order of the tasks, keeping at
most ``2 * workers`` tasks submitted and unread, so that memory stays bounded however many tasks there are.

* ``engine="processes"`` (default): one worker, or one task, runs in this process. Processes are forked where the
  platform can (no re-import of the library in each); elsewhere spawned.
* ``engine="ray"``: Ray is joined if this process has already started or joined it (``ray.init(address=...)`` joins
  a cluster), else a local instance of ``workers`` CPUs (default: every core) is started for the map and stopped
  after it. Every task takes one CPU. The workers run ``fn`` where Ray places them: they must import this library
  (the same version) and, on a cluster, read the tasks' inputs where the tasks name them (image files: a file
  system shared by every node, mounted at the same path).
"""
from __future__ import annotations

import multiprocessing
import numbers
import os
from collections import deque
from itertools import islice
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")
IN_FLIGHT = 2  # tasks per worker submitted ahead of the one being read
ENGINES = ("processes", "ray")


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


def check_engine(engine) -> str:
    """``engine`` if it is one of :data:`ENGINES`; else a ValueError naming them."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    return engine


def ordered_map(fn: Callable[[T], R], tasks: Iterable[T], workers: int | None = None,
                engine: str = "processes") -> Iterator[R]:
    """``fn(task)`` for every task, in the tasks' order, over ``workers`` processes or Ray workers (see the module
    docstring; ``workers`` None: every core here, or with ``engine="ray"`` every CPU of the Ray cluster).

    ``fn`` and the tasks must pickle (a module-level function, or a ``functools.partial`` of one). An exception
    raised by ``fn`` is raised here, at its task's turn, and the tasks not started are cancelled.
    """
    if check_engine(engine) == "ray":
        yield from _ray_map(fn, list(tasks), None if workers is None else check_workers(workers))
        return
    workers = check_workers(workers)
    tasks = list(tasks)
    if workers == 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context(method))
    try:
        yield from _in_order(lambda task: pool.submit(fn, task), lambda future: future.result(),
                             lambda future: future.cancel(), tasks, IN_FLIGHT * workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_order(submit: Callable[[T], Any], collect: Callable[[Any], R], cancel: Callable[[Any], Any],
              tasks: list[T], ahead: int) -> Iterator[R]:
    """``collect(submit(task))`` for every task in order, with at most ``ahead`` submitted and not yet collected;
    those still pending when it stops (an error, or the caller stopped reading) are ``cancel``-ed."""
    queued = iter(tasks)
    pending = deque()
    try:
        pending.extend(submit(task) for task in islice(queued, ahead))
        while pending:
            result = collect(pending.popleft())
            for task in queued:  # refill: one submitted for each read
                pending.append(submit(task))
                break
            yield result
    finally:
        for handle in pending:
            cancel(handle)


def _call(fn: Callable[[T], R], task: T) -> R:
    """What a Ray task runs: ``fn(task)``."""
    return fn(task)


def _ray_map(fn: Callable[[T], R], tasks: list[T], workers: int | None) -> Iterator[R]:
    """:func:`ordered_map` over Ray: ``workers`` tasks at a time (None: the cluster's CPUs), two each in flight."""
    if not tasks:
        return
    from channels.montecarlo import start_or_join_ray

    ray, started = start_or_join_ray(None, 10.0, workers, None, needed_by="decoding with engine='ray'")
    try:
        from ray.exceptions import RayTaskError

        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(_call).options(num_cpus=1, max_retries=0)
        shared = ray.put(fn)  # sent once, not with every task

        def collect(ref):
            try:
                return ray.get(ref)
            except RayTaskError as err:  # the task's own exception, as the pool raises it
                cause = getattr(err, "cause", None)
                raise (cause if isinstance(cause, Exception) else err) from None

        yield from _in_order(lambda task: remote.remote(shared, task), collect,
                             ray.cancel, tasks, IN_FLIGHT * workers)
    finally:
        if started:
            ray.shutdown()
