"""Where a sweep's tasks run: in this process one after the other, or as Ray tasks; resumable.

A sweep (:mod:`semcomm.experiments.sweep`, :mod:`semcomm.experiments.link_sweep`) is cut into tasks (any
object with an ``id``: a string naming its setting and its share of the images or conditions, the same
whatever the engine) and one module-level task function ``function(context, task) -> dict`` returning plain
JSON data; ``context`` is what every task reads (models, images, the edge pass). :func:`run_tasks` runs the
tasks not done yet on an engine and returns their results by id; the sweep assembles them in its own order, so
its result depends neither on the engine nor on the order the tasks finished in. Randomness a task draws comes
from :func:`task_seed` (the run's seed and the task's identity), never from a generator shared by tasks.

* :class:`LocalTasks` runs the tasks in order in this process; an error stops the run.
* :class:`RayTasks` runs each task as a Ray task (one CPU, so one torch thread): the context is put in Ray's
  object store once and deserialised once per worker process. A task whose worker or node dies is retried
  (``max_retries``); if it still fails it is left out, the others finish, and :attr:`TaskRun.missing` names it.
  An error raised by the task function itself (the same on any worker) is not retried and stops the run.

A :class:`TaskStore` (JSON lines, e.g. beside the sweep's output) keeps every finished task's result under a key
of the sweep's configuration and data: a rerun of the same sweep skips them.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

ENGINES = ("local", "ray")


class Task(Protocol):
    """What an engine needs of a task: its id (unique within a sweep, the same for every engine)."""

    @property
    def id(self) -> str: ...


OnResult = Callable[[Task, dict, str], None]  # (task, its result, the node that ran it)


def task_seed(seed: int, identity: str) -> int:
    """A 63-bit seed for the task (or setting) named ``identity`` of a run seeded with ``seed``: NumPy's
    ``SeedSequence`` of the seed and the name's SHA-256, so it depends on nothing else (not on the other
    tasks, their order or the engine)."""
    words = np.frombuffer(hashlib.sha256(identity.encode()).digest(), dtype=np.uint32)
    state = np.random.SeedSequence(int(seed) % 2 ** 64, spawn_key=tuple(int(w) for w in words))
    return int(state.generate_state(1, np.uint64)[0]) & (2 ** 63 - 1)


def plain_key(*parts: Any) -> str:
    """A hex key of plain parts (dataclasses as their fields, functions by their names): what a store is keyed by."""
    text = json.dumps(parts, sort_keys=True, default=lambda v: getattr(v, "__qualname__", None) or str(v))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class TaskStore:
    """Finished tasks' results in a JSON-lines file, one ``{"key", "task", "result"}`` per line.

    ``key`` identifies what a task's result depends on (the sweep's configuration and data): one key for every
    task, or a key per task id (a task id not in it has no saved result). Only lines whose key is their task's
    count: the others (another configuration's) are dropped from the file when it is opened, as is a line cut
    short (a run killed while writing).
    """

    def __init__(self, path: str | Path, key: str | Mapping[str, str]):
        self.path, self.key = Path(path), key
        self._results: dict[str, dict] = {}
        rewrite = False
        if self.path.is_file():
            text = self.path.read_text()
            rewrite = bool(text) and not text.endswith("\n")  # a line cut short: appending would glue onto it
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    rewrite = True
                    continue
                if isinstance(entry, dict) and entry.get("key") is not None and entry.get("key") == self._key(
                        entry.get("task")):
                    self._results[entry["task"]] = entry["result"]
                else:
                    rewrite = True
        if rewrite:  # keep whole lines of these keys only
            self.path.write_text("".join(self._line(t, r) for t, r in self._results.items()))

    def _key(self, task_id: str) -> str | None:
        return self.key if isinstance(self.key, str) else self.key.get(task_id)

    def results(self) -> dict[str, dict]:
        """Task id -> result of every task finished under its key."""
        return dict(self._results)

    def add(self, task_id: str, result: dict) -> None:
        """Save one finished task's result (appended and flushed at once)."""
        if self._key(task_id) is None:
            raise KeyError(f"task {task_id!r} has no key in this store")
        self._results[task_id] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(self._line(task_id, result))

    def _line(self, task_id: str, result: dict) -> str:
        return json.dumps(dict(key=self._key(task_id), task=task_id, result=result)) + "\n"


@dataclass
class TaskRun:
    """What :func:`run_tasks` returns.

    Attributes:
        results: task id -> result, of every task finished now or before (resumed).
        engine: the engine's name (``local``, ``ray``).
        tasks: tasks of the sweep; resumed: of them found finished in the store.
        tasks_per_node: tasks run now per node (Ray's node id; ``local`` for this process).
        missing: ids of tasks that failed on every try (Ray), in the sweep's order; failures: why, per id.
        retries: tries Ray had after the first (0 locally).
    """

    results: dict[str, dict]
    engine: str
    tasks: int
    resumed: int = 0
    tasks_per_node: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    retries: int = 0

    def metadata(self) -> dict:
        """The run as plain data for a result's JSON: engine, nodes that ran tasks, tasks (all, resumed, per node)
        and the missing tasks."""
        return dict(engine=self.engine, nodes=len(self.tasks_per_node), tasks=self.tasks, resumed=self.resumed,
                    tasks_per_node=dict(self.tasks_per_node), missing=list(self.missing))

    def missing_note(self, what: str, store: TaskStore | None) -> str:
        """One sentence naming what is missing (``what``: the settings left out) and how to resume."""
        reasons = sorted(set(self.failures.values()))
        saved = (f"rerun the same sweep to resume: its {len(self.results)} finished tasks are saved in {store.path}"
                 if store is not None else "no task file was given, so a rerun starts over (a state file, or "
                 "--json on the command line, lets a rerun resume)")
        return (f"{len(self.missing)} of {self.tasks} tasks failed on every one of their {self.retries + 1} tries on "
                f"Ray ({'; '.join(reasons)}); left out: {what}; {saved}")


class LocalTasks:
    """Runs the tasks in order in this process (the default engine)."""

    name = "local"
    retries = 0

    def run(self, function: Callable, context: Any, tasks: Sequence[Task], on_result: OnResult) -> dict[str, str]:
        for task in tasks:
            on_result(task, function(context, task), "local")
        return {}

    def shutdown(self) -> None:
        """Nothing to stop."""


_CONTEXTS: dict[str, Any] = {}  # in a Ray worker: the context of the run under way, by its object's id


def _run_on_worker(function: Callable, boxed: list, task: Task) -> tuple[dict, str]:
    """A Ray task: ``function(context, task)`` and the node it ran on. The context's reference comes in a list, so
    Ray does not resolve it per task: the worker fetches and deserialises it once and keeps it for its next tasks."""
    import ray

    ref = boxed[0]
    if ref.hex() not in _CONTEXTS:
        _CONTEXTS.clear()  # an earlier run's context
        _CONTEXTS[ref.hex()] = ray.get(ref)
    return function(_CONTEXTS[ref.hex()], task), ray.get_runtime_context().get_node_id()


class RayTasks:
    """Runs each task as a Ray task (module docstring).

    Ray is imported on the first :meth:`run`. With no ``address`` and no Ray running in this process a local
    instance is started (``num_cpus``, ``object_store_memory`` bytes, no dashboard), kept for later runs and
    stopped by :meth:`shutdown`; with ``address`` (``host:port``, ``ray://host:port`` or ``auto``) the cluster
    there is joined, and one that does not answer within ``connect_timeout_s`` is a ConnectionError naming it.
    If this process already called ``ray.init``, that instance is used. The nodes need semcomm installed.

    Args:
        max_retries: tries after the first for a task whose worker or node died.
        cpus_per_task: CPUs each task asks for (torch in the task uses as many threads).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 object_store_memory: int = 200 * 2 ** 20, connect_timeout_s: float = 5.0, max_retries: int = 2,
                 cpus_per_task: float = 1.0):
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address must be a Ray cluster's address such as '127.0.0.1:6379' or None, got "
                             f"{address!r}")
        if max_retries < 0 or cpus_per_task <= 0 or connect_timeout_s <= 0:
            raise ValueError(f"need max_retries >= 0, cpus_per_task > 0 and connect_timeout_s > 0, got "
                             f"{max_retries!r}, {cpus_per_task!r}, {connect_timeout_s!r}")
        self.address, self.num_cpus, self.object_store_memory = address, num_cpus, int(object_store_memory)
        self.connect_timeout_s, self.retries, self.cpus_per_task = connect_timeout_s, int(max_retries), cpus_per_task
        self._started = False

    def connect(self):
        """Join or start Ray (class docstring); returns the ``ray`` module."""
        from channels.montecarlo import start_or_join_ray

        ray, started = start_or_join_ray(self.address, self.connect_timeout_s, self.num_cpus,
                                         self.object_store_memory, "the sweep's Ray engine")
        self._started = self._started or started
        return ray

    def shutdown(self) -> None:
        """Stop the local Ray instance if this engine started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def run(self, function: Callable, context: Any, tasks: Sequence[Task], on_result: OnResult) -> dict[str, str]:
        """Run ``tasks``; ``on_result`` is called in this process as each finishes. Returns why each task that
        failed on every try failed (task id -> one line)."""
        ray = self.connect()
        from ray import exceptions as rx

        remote = ray.remote(_run_on_worker).options(num_cpus=self.cpus_per_task, max_retries=self.retries,
                                                    retry_exceptions=False)
        boxed = [ray.put(context)]
        pending = {remote.remote(function, boxed, task): task for task in tasks}
        failures = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                try:
                    result, node = ray.get(ready[0])
                except rx.RayTaskError as err:  # the task function raised: it would on any worker
                    raise err.cause from err
                except rx.RayError as err:  # its worker or node died (after max_retries), it ran out of memory, ...
                    failures[task.id] = f"{type(err).__name__}: {_first_line(err)}"
                    continue
                on_result(task, result, node)
        finally:
            for ref in pending:
                ray.cancel(ref)
        return failures


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def task_engine(name: str = "local", address: str | None = None) -> LocalTasks | RayTasks:
    """The engine called ``name`` (``local`` or ``ray``; ``address``: the Ray cluster's, None for a local one)."""
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if name == "local":
        if address is not None:
            raise ValueError("an address is the Ray cluster of engine 'ray'; the local engine takes none")
        return LocalTasks()
    return RayTasks(address)


def run_tasks(function: Callable, context: Any, tasks: Sequence[Task],
              engine: str | LocalTasks | RayTasks | None = None, store: TaskStore | None = None, progress: bool = True,
              desc: str = "tasks", device: torch.device | None = None) -> TaskRun:
    """Run the tasks of ``tasks`` not finished in ``store`` on ``engine`` (default local; a name: an engine
    started and stopped here), saving each result in ``store`` as it arrives; one progress bar over all tasks.
    ``device``: where the context's models are; the Ray engine refuses any but the CPU (its tasks ask for CPUs)."""
    if device is not None and device.type != "cpu" and (engine == "ray" or isinstance(engine, RayTasks)):
        raise ValueError(f"the Ray engine's tasks run on CPU workers, but the models are on {device}: run them on "
                         "the CPU (device='cpu', --device cpu) or use the local engine")
    ids = [task.id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"task ids must be unique, got {sorted(i for i, n in Counter(ids).items() if n > 1)}")
    own = engine is None or isinstance(engine, str)
    engine = task_engine(engine or "local") if own else engine
    wanted = set(ids)
    done = {i: r for i, r in (store.results() if store is not None else {}).items() if i in wanted}
    run = TaskRun(done, engine.name, len(tasks), resumed=len(done), retries=engine.retries)
    per_node = Counter()
    bar = tqdm(total=len(tasks), initial=len(done), desc=desc, disable=not progress)

    def on_result(task: Task, result: dict, node: str) -> None:
        run.results[task.id] = result
        per_node[node] += 1
        if store is not None:
            store.add(task.id, result)
        bar.update()

    try:
        run.failures = engine.run(function, context, [t for t in tasks if t.id not in done], on_result)
    finally:
        bar.close()
        if own:
            engine.shutdown()
    run.tasks_per_node = dict(sorted(per_node.items()))
    run.missing = [i for i in ids if i in run.failures]
    return run


def state_path(output: str | Path | None) -> Path | None:
    """The task file beside a sweep's JSON output (``r.json`` -> ``r.tasks.jsonl``; None without one)."""
    return None if output is None else Path(output).with_suffix(".tasks.jsonl")


def engine_line(metadata: dict) -> str:
    """A run's :meth:`TaskRun.metadata` in words, e.g. ``ray engine: 18 tasks on 2 nodes, 4 resumed``."""
    nodes = metadata["nodes"]
    resumed = f", {metadata['resumed']} resumed" if metadata["resumed"] else ""
    return (f"{metadata['engine']} engine: {metadata['tasks']} tasks{resumed}"
            f"{f' on {nodes} nodes' if nodes > 1 else ''}")

