"""Monte-Carlo BER/BLER simulation over a list of SNR points, with early stopping.

The runner calls ``simulate(snr_db, batch_size, generator) -> (bits, bits_hat)`` (both
(batch_size, block_len); one row is one block) until a target number of bit or block errors
or a budget of bits/blocks is reached.  :func:`run_ber` accepts a :class:`~channels.link.DigitalLink`
directly (one packet = one block).

Batch ``k`` of point ``i`` (its index in ``snr_dbs``) draws from its own generator, seeded from
``(seed, i, k)`` alone, so a point's counts do not depend on the other points or on the order
batches run in: ``run_ber(..., engine="ray")`` (or a :class:`RayRunner`) spreads the points and
their batches over Ray workers and returns the same counts as the in-process run.

Confidence intervals are exact two-sided 95% Clopper-Pearson intervals.  For BER they treat
bits as independent, which decoders with bursty errors (Viterbi, BP) violate: read the BER
interval as optimistic and the BLER interval as the honest one.
"""
from __future__ import annotations

import math
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from scipy.stats import beta

from ._checks import check_finite

Simulate = Callable[[float, int, torch.Generator], Tuple[torch.Tensor, torch.Tensor]]
Counts = Tuple[int, int, int, int]  # bit errors, bits, block errors, blocks of one batch


def clopper_pearson(errors: int, trials: int, level: float = 0.95) -> Tuple[float, float]:
    """Exact binomial confidence interval (lo, hi) for errors / trials."""
    if trials == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if errors == 0 else float(beta.ppf(a, errors, trials - errors + 1))
    hi = 1.0 if errors == trials else float(beta.ppf(1 - a, errors + 1, trials - errors))
    return lo, hi


@dataclass
class SNRPoint:
    """Result at one SNR: counts, rates, 95% intervals and time (seconds: wall time in-process,
    the workers' time on the counted batches on Ray)."""

    snr_db: float
    ber: float
    bler: float
    bit_errors: int
    bits: int
    block_errors: int
    blocks: int
    ber_ci: Tuple[float, float]
    bler_ci: Tuple[float, float]
    runtime_s: float


@dataclass
class BERResult:
    """Results of a sweep; ``str()`` gives a printable table, :meth:`to_dicts` plain data."""

    points: List[SNRPoint] = field(default_factory=list)
    snr_label: str = "SNR (dB)"

    def to_dicts(self) -> List[dict]:
        return [asdict(p) for p in self.points]

    @property
    def snr_db(self) -> List[float]:
        return [p.snr_db for p in self.points]

    @property
    def ber(self) -> List[float]:
        return [p.ber for p in self.points]

    @property
    def bler(self) -> List[float]:
        return [p.bler for p in self.points]

    def __str__(self) -> str:
        head = (f"{self.snr_label:>9} {'BER':>10} {'BER 95% CI':>23} {'BLER':>10} {'BLER 95% CI':>23} "
                f"{'bit err':>8} {'bits':>11} {'blk err':>8} {'blocks':>8} {'time (s)':>9}")
        lines = [head, "-" * len(head)]
        for p in self.points:
            lines.append(
                f"{p.snr_db:9.2f} {p.ber:10.3e} [{p.ber_ci[0]:9.3e}, {p.ber_ci[1]:9.3e}] {p.bler:10.3e} "
                f"[{p.bler_ci[0]:9.3e}, {p.bler_ci[1]:9.3e}] {p.bit_errors:8d} {p.bits:11d} "
                f"{p.block_errors:8d} {p.blocks:8d} {p.runtime_s:9.2f}")
        return "\n".join(lines)


# --- one batch, seeded by (seed, point, batch) -------------------------------------------------

def batch_generator(seed: int, point: int, batch: int) -> torch.Generator:
    """The generator of batch ``batch`` of point ``point`` (index in ``snr_dbs``) for ``seed``.

    Seeds come from NumPy's ``SeedSequence(seed, spawn_key=(point, batch))``, so streams of
    different points and batches are independent and each depends on nothing else.
    """
    state = np.random.SeedSequence(int(seed) % 2 ** 64, spawn_key=(int(point), int(batch)))
    return torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0]) & (2 ** 63 - 1))


def _batch_counts(simulate: Simulate, snr_db: float, batch_size: int, seed: int, point: int, batch: int) -> Counts:
    b, b_hat = simulate(snr_db, batch_size, batch_generator(seed, point, batch))
    err = (b.reshape(b.shape[0], -1).float() != b_hat.reshape(b.shape[0], -1).float())
    return int(err.sum()), err.numel(), int(err.any(-1).sum()), err.shape[0]


def _run_batches(simulate: Simulate, snr_db: float, batch_size: int, seed: int, point: int, first: int,
                 count: int) -> Tuple[List[Counts], float]:
    """Batches ``first .. first + count - 1`` of one point (a Ray task): their counts and seconds."""
    t0 = time.perf_counter()
    counts = [_batch_counts(simulate, snr_db, batch_size, seed, point, k) for k in range(first, first + count)]
    return counts, time.perf_counter() - t0


@dataclass
class _Tally:
    """Counts of one point, batch by batch in order, and the stopping rule."""

    target_bit_errors: Optional[int]
    target_block_errors: Optional[int]
    max_bits: int
    max_blocks: Optional[int]
    be: int = 0
    bits: int = 0
    ble: int = 0
    blocks: int = 0
    batches: int = 0
    seconds: float = 0.0
    done: bool = False

    def add(self, counts: Counts) -> bool:
        """Count one batch; True once the point is finished (the in-process loop's rule)."""
        be, bits, ble, blocks = counts
        self.be, self.bits, self.ble, self.blocks = self.be + be, self.bits + bits, self.ble + ble, self.blocks + blocks
        self.batches += 1
        self.done = ((self.target_bit_errors is not None and self.be >= self.target_bit_errors)
                     or (self.target_block_errors is not None and self.ble >= self.target_block_errors)
                     or self.bits >= self.max_bits or (self.max_blocks is not None and self.blocks >= self.max_blocks))
        return self.done

    def batches_left(self) -> int:
        """A guess of the batches still needed (only for scheduling: it never changes the counts)."""
        if self.batches == 0 or self.bits == 0 or self.blocks == 0:
            return 1
        left = [math.ceil((self.max_bits - self.bits) * self.batches / self.bits)]
        if self.max_blocks is not None:
            left.append(math.ceil((self.max_blocks - self.blocks) * self.batches / self.blocks))
        for target, errors in ((self.target_bit_errors, self.be), (self.target_block_errors, self.ble)):
            if target is not None and errors > 0:
                left.append(math.ceil((target - errors) * self.batches / errors))
        return max(1, min(left))

    def point(self, snr_db: float) -> SNRPoint:
        return SNRPoint(snr_db=float(snr_db), ber=self.be / self.bits, bler=self.ble / self.blocks,
                        bit_errors=self.be, bits=self.bits, block_errors=self.ble, blocks=self.blocks,
                        ber_ci=clopper_pearson(self.be, self.bits), bler_ci=clopper_pearson(self.ble, self.blocks),
                        runtime_s=self.seconds)


# --- Ray ---------------------------------------------------------------------------------------

def import_ray(needed_by: str = "run_ber(engine='ray')"):
    """The ``ray`` module, or an ImportError saying what needs it and how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"{needed_by} needs Ray: pip install 'semcomm[ray]' (or pip install ray)") from err
    return ray


def join_ray(address: str | None, connect_timeout_s: float, needed_by: str = "run_ber(engine='ray')"):
    """Import Ray and join what runs: the instance this process already has, else the cluster at ``address``.

    Returns ``(ray, joined)``; ``joined`` is False when Ray is not running and there is no address, so the
    caller starts a local instance of its own. An unreachable or unjoinable address is a ConnectionError
    naming it (a malformed one a ValueError)."""
    ray = import_ray(needed_by)
    if address is not None:
        check_reachable(address, connect_timeout_s)
    if ray.is_initialized():
        return ray, True
    if address is None:
        return ray, False
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as err:  # Ray raises ConnectionError, RuntimeError, TimeoutError, ...
        raise ConnectionError(f"could not join the Ray cluster at {address!r}: {err}") from err
    return ray, True


def start_or_join_ray(address: str | None, connect_timeout_s: float, num_cpus: int | None, object_store_memory: int,
                      needed_by: str = "run_ber(engine='ray')"):
    """Join what runs (:func:`join_ray`), else start a local instance of ``num_cpus`` CPUs and
    ``object_store_memory`` bytes without a dashboard. Returns ``(ray, started)``: ``started`` says the caller owns
    the instance and stops it (``ray.shutdown()``)."""
    ray, joined = join_ray(address, connect_timeout_s, needed_by)
    if not joined:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                 log_to_driver=False)
    return ray, not joined


def check_reachable(address: str, timeout_s: float) -> None:
    """ConnectionError unless a TCP connection to ``address`` (``host:port`` or ``ray://host:port``)
    opens within ``timeout_s`` seconds; ``"auto"`` and ``"local"`` are left to Ray."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise ValueError(f"Ray address {address!r} is not host:port or ray://host:port (e.g. 127.0.0.1:6379)")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise ConnectionError(f"cannot reach a Ray cluster at {address!r} within {timeout_s:g} s ({err}); start one "
                              "there with `ray start --head`, or leave the address unset to run a local Ray "
                              "instance") from None


class RayRunner:
    """Runs :func:`run_ber`'s points, and batches within a point, as Ray tasks (one CPU each).

    The counts are those of the in-process run with the same seed: every batch has its own
    generator (:func:`batch_generator`) and the driver adds the batches of a point in order,
    stopping at the same batch as the in-process loop (batches run past it are discarded).
    Points run concurrently, lowest index first; with ``stop_when_error_free`` the points after
    the first error-free one are cancelled and not reported.

    Ray is imported on the first :meth:`run`.  With no ``address`` and no Ray running in this
    process, a local instance is started (``num_cpus``, ``object_store_memory`` bytes, no
    dashboard) and left running for later runs (:meth:`shutdown` stops it); with ``address``
    (``"host:port"``, ``"ray://host:port"`` or ``"auto"``) the cluster there is joined, and an
    address that does not answer within ``connect_timeout_s`` is a ConnectionError.  If this
    process already called ``ray.init``, that instance is used.  ``simulate`` must be picklable
    (a :class:`~channels.link.DigitalLink` is; functions from a script or notebook are sent by
    value, those of other modules by name, so their module must be importable on the workers,
    as ``channels`` must).

    Args:
        address: a Ray cluster's address; None runs on this machine.
        num_cpus, object_store_memory: size of the local instance (ignored with ``address``).
        connect_timeout_s: seconds to wait for a TCP connection to ``address``.
        max_in_flight: tasks submitted at once (default: twice the cluster's CPUs).
        task_seconds: the work aimed at per task (batches are grouped to about this long).
        timeout_s: seconds without any task finishing before a TimeoutError.

    >>> from channels import AWGN, DigitalLink, Uncoded, run_ber
    >>> link = DigitalLink(Uncoded(1000), 2, AWGN(), crc=None)
    >>> run_ber(link, [0, 2, 4], engine="ray")             # doctest: +SKIP
    """

    def __init__(self, address: Optional[str] = None, num_cpus: int = 2, object_store_memory: int = 100 * 2 ** 20,
                 connect_timeout_s: float = 5.0, max_in_flight: Optional[int] = None, task_seconds: float = 0.25,
                 timeout_s: float = 600.0):
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address must be a non-empty string such as '127.0.0.1:6379' or None; got {address!r}")
        if num_cpus < 1 or connect_timeout_s <= 0 or task_seconds <= 0 or timeout_s <= 0:
            raise ValueError("need num_cpus >= 1, connect_timeout_s > 0, task_seconds > 0 and timeout_s > 0")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive integer or None; got {max_in_flight!r}")
        self.address, self.num_cpus, self.object_store_memory = address, int(num_cpus), int(object_store_memory)
        self.connect_timeout_s, self.max_in_flight = connect_timeout_s, max_in_flight
        self.task_seconds, self.timeout_s = task_seconds, timeout_s
        self._started = False
        self._remote = None

    def connect(self):
        """Join or start Ray as described in the class docstring; returns the ``ray`` module."""
        ray, started = start_or_join_ray(self.address, self.connect_timeout_s, self.num_cpus, self.object_store_memory)
        self._started = self._started or started
        return ray

    def shutdown(self) -> None:
        """Stop the local Ray instance if this runner started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started, self._remote = False, None

    def run(self, simulate: Simulate, snr_dbs: Sequence[float], batch_size: int, seed: int,
            new_tally: Callable[[], _Tally], stop_when_error_free: bool) -> List[_Tally]:
        """The tallies of the reported points (used by :func:`run_ber`)."""
        ray = self.connect()
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1)(_run_batches)
        try:
            sim_ref = ray.put(simulate)
        except Exception as err:
            raise TypeError(f"engine='ray' sends simulate to the workers, but it cannot be pickled ({err}); "
                            "pass a DigitalLink or a function defined at module level") from err
        window = self.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        n = len(snr_dbs)
        tallies = [new_tally() for _ in range(n)]
        submitted = [0] * n                      # batches submitted per point
        per_task = [1] * n                       # batches per task, grown to about task_seconds
        arrived: List[Dict[int, Tuple[Counts, float]]] = [{} for _ in range(n)]  # batch -> (counts, seconds)
        pending: Dict[object, Tuple[int, int]] = {}  # task -> (point, first batch)
        last = n - 1                             # last point that will be reported

        def cancel(points) -> None:
            for ref, (i, _) in list(pending.items()):
                if i in points:
                    del pending[ref]
                    try:
                        ray.cancel(ref)
                    except Exception:  # already finished or gone: nothing to stop
                        pass

        try:
            while not all(t.done for t in tallies[:last + 1]):
                while len(pending) < window:  # lowest unfinished point first, as many batches as it seems to need
                    wanted = [(i, tallies[i].batches_left() - (submitted[i] - tallies[i].batches))
                              for i in range(last + 1) if not tallies[i].done]
                    wanted = [(i, w) for i, w in wanted if w > 0]
                    if not wanted:
                        break
                    i, w = wanted[0]
                    count = min(per_task[i], w)
                    ref = self._remote.remote(sim_ref, float(snr_dbs[i]), batch_size, seed, i, submitted[i], count)
                    pending[ref] = (i, submitted[i])
                    submitted[i] += count
                if not pending:  # cannot happen while a point is unfinished; guards against a busy loop
                    raise RuntimeError("internal error: no Ray task pending for an unfinished point")
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.timeout_s)
                if not ready:
                    raise TimeoutError(f"no Ray task finished within {self.timeout_s:g} s (are the cluster's CPUs "
                                       "taken by other work?)")
                for ref in ready:
                    i, first = pending.pop(ref)
                    counts, seconds = ray.get(ref)
                    each = seconds / len(counts)
                    per_task[i] = int(min(256, max(1, self.task_seconds // max(each, 1e-6))))
                    arrived[i].update((first + j, (c, each)) for j, c in enumerate(counts))
                    t = tallies[i]
                    while not t.done and t.batches in arrived[i]:  # in batch order: the in-process stopping rule
                        c, s = arrived[i].pop(t.batches)
                        t.seconds += s
                        t.add(c)
                    if t.done:
                        arrived[i].clear()
                        cancel({i})
                        if stop_when_error_free and t.be == 0 and i < last:
                            last = i
                            cancel(set(range(i + 1, n)))
        finally:
            cancel(set(range(n)))
        return tallies[:last + 1]


# --- the runner --------------------------------------------------------------------------------

def run_ber(simulate, snr_dbs: Sequence[float], batch_size: int = 100, target_bit_errors: Optional[int] = 1000,
            target_block_errors: Optional[int] = 100, max_bits: int = 10**7, max_blocks: Optional[int] = None,
            seed: int = 0, stop_when_error_free: bool = True, snr_label: str = "SNR (dB)",
            engine: Union[str, RayRunner] = "local", address: Optional[str] = None) -> BERResult:
    """Monte-Carlo BER/BLER at every SNR point.

    Args:
        simulate: a :class:`~channels.link.DigitalLink` (SNR is Es/N0 in dB; pass
            ``snr_label="Eb/N0 (dB)"`` with a wrapper to sweep Eb/N0) or a callable
            ``(snr_db, batch_size, generator) -> (bits, bits_hat)`` with rows as blocks.
        snr_dbs: SNR points in dB (finite).
        batch_size: blocks per call.
        target_bit_errors, target_block_errors: stop a point once either count is reached
            (None disables that criterion).
        max_bits, max_blocks: budgets per point.
        seed: seeds every batch's ``torch.Generator`` together with the point's index and the
            batch's (:func:`batch_generator`): same seed, same counts, whatever the engine.
        stop_when_error_free: skip the remaining (higher) SNR points after a point with no error.
        snr_label: column title for the printed table.
        engine: ``"local"`` (this process, one point after the other), ``"ray"`` (Ray tasks,
            see :class:`RayRunner`) or a :class:`RayRunner`; the counts are the same.
        address: with ``engine="ray"``, a Ray cluster's address (None: a local instance, 2 CPUs and
            100 MiB of object store, started on first use and left running; ``ray.shutdown()`` stops it).
    """
    from .link import DigitalLink

    if isinstance(engine, str) and engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local', 'ray' or a RayRunner; got {engine!r}")
    if not isinstance(engine, (str, RayRunner)):
        raise ValueError(f"engine must be 'local', 'ray' or a RayRunner; got {type(engine).__name__}")
    if address is not None and engine != "ray":
        raise ValueError("address is only used with engine='ray' (a RayRunner takes its own address)")
    if isinstance(simulate, DigitalLink):
        simulate = _LinkSimulate(simulate)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"seed must be an integer; got {seed!r}")
    for s in snr_dbs:
        check_finite("snr_db", s)
    batch_size, seed = int(batch_size), int(seed)

    def new_tally() -> _Tally:
        return _Tally(target_bit_errors, target_block_errors, max_bits, max_blocks)

    if engine == "local":
        tallies = []
        for i, snr in enumerate(snr_dbs):
            t0, tally = time.perf_counter(), new_tally()
            while not tally.add(_batch_counts(simulate, float(snr), batch_size, seed, i, tally.batches)):
                pass
            tally.seconds = time.perf_counter() - t0
            tallies.append(tally)
            if stop_when_error_free and tally.be == 0:
                break
    else:
        runner = RayRunner(address) if engine == "ray" else engine
        tallies = runner.run(simulate, snr_dbs, batch_size, seed, new_tally, stop_when_error_free)
    return BERResult(points=[t.point(s) for t, s in zip(tallies, snr_dbs)], snr_label=snr_label)


class _LinkSimulate:
    """A :class:`~channels.link.DigitalLink` as a ``simulate`` callable: random payloads, one packet per block."""

    def __init__(self, link):
        self.link = link

    def __call__(self, snr_db: float, n: int, g: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        bits = torch.randint(0, 2, (n, self.link.payload_bits), generator=g)
        return bits, self.link(bits, snr_db=snr_db, generator=g).bits
