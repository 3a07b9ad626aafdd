"""The BER runner on Ray (issue 11): one local Ray instance for the module (2 CPUs, 100 MiB object store).

Ray gives the same counts as the in-process run for the same seed (each batch
has its own generator, seeded from the seed, the point and the batch); an
unreachable address is a ConnectionError naming it; Ray is imported only when
asked for, and its absence is an ImportError saying how to install it.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

import channels as ch

def counts(result: ch.BERResult):
    return [(p.snr_db, p.bit_errors, p.bits, p.block_errors, p.blocks) for p in result.points]


def _simulators():
    """Simulate callables made in a function, so Ray ships them by value (workers cannot import this file)."""

    def flips(snr_db, n, g):
        """64-bit blocks, bit-flip probability falling with the SNR (0 from 9 dB)."""
        bits = torch.randint(0, 2, (n, 64), generator=g)
        p = 0.0 if snr_db >= 9 else 0.2 * 10 ** (-snr_db / 4)
        return bits, bits ^ (torch.rand(bits.shape, generator=g) < p).long()

    def failing(snr_db, n, g):
        raise ValueError("simulate failed on purpose")

    return flips, failing


flips, failing = _simulators()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=100 * 2 ** 20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("task_seconds", [1e-4, 10.0])  # one batch per task, or chunks that overshoot the stop
def test_uncoded_bpsk_sweep_same_counts_on_ray(local_ray, task_seconds):
    link = ch.DigitalLink(ch.Uncoded(500), 2, ch.AWGN(), crc=None)
    kw = dict(batch_size=20, target_bit_errors=200, target_block_errors=None, max_bits=200_000, seed=11)
    snrs = [0.0, 3.0, 6.0, 8.0, 12.0, 14.0]  # 12 dB is error-free in this budget: 14 dB is never reported
    local = ch.run_ber(link, snrs, **kw)
    remote = ch.run_ber(link, snrs, engine=ch.RayRunner(task_seconds=task_seconds, max_in_flight=3), **kw)
    assert counts(remote) == counts(local)
    assert len(local.points) == 5 and local.points[-1].bit_errors == 0 and local.points[-1].bits == 200_000
    assert local.points[3].blocks > 20 * 3  # several batches at 8 dB: the batch order matters there


def test_short_ldpc_point_same_counts_on_ray(local_ray):
    link = ch.DigitalLink(ch.LDPC80211n(648, "1/2", max_iter=10), 4, ch.AWGN(), crc="crc16")
    kw = dict(batch_size=8, target_bit_errors=None, target_block_errors=10, max_blocks=64, seed=5)
    local = ch.run_ber(link, [1.5, 2.5], **kw)
    remote = ch.run_ber(link, [1.5, 2.5], engine="ray", **kw)
    assert counts(remote) == counts(local)
    assert 0 < local.points[0].block_errors and local.points[1].blocks > 8


def test_callable_sweep_same_counts_and_errors_on_ray(local_ray):
    kw = dict(batch_size=10, target_bit_errors=100, target_block_errors=None, max_bits=50_000, seed=2)
    local = ch.run_ber(flips, [0.0, 4.0, 8.0, 10.0, 12.0], **kw)
    assert counts(ch.run_ber(flips, [0.0, 4.0, 8.0, 10.0, 12.0], engine="ray", **kw)) == counts(local)
    assert [p.snr_db for p in local.points] == [0.0, 4.0, 8.0, 10.0]
    with pytest.raises(ValueError, match="on purpose"):  # an error in a worker reaches the caller
        ch.run_ber(failing, [1.0], engine="ray")
    lock = threading.Lock()
    with pytest.raises(TypeError, match="cannot be pickled"):
        ch.run_ber(lambda s, n, g: (lock, lock), [1.0], engine="ray")


def test_unreachable_address_is_a_clear_error(local_ray):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=address):
        ch.run_ber(flips, [1.0], engine="ray", address=address)
    assert time.monotonic() - t0 < 120  # refused, not hung (the connect timeout is 5 s; generous under load)
    with pytest.raises(ValueError, match="host:port"):
        ch.RayRunner("no-port").connect()
    with pytest.raises(ValueError, match="engine='ray'"):
        ch.run_ber(flips, [1.0], address=address)
    with pytest.raises(ValueError, match="engine must be"):
        ch.run_ber(flips, [1.0], engine="dask")


def test_a_points_counts_depend_only_on_seed_and_index():
    kw = dict(batch_size=10, target_bit_errors=150, target_block_errors=None, max_bits=50_000, seed=4)
    a, b = ch.run_ber(flips, [0.0, 5.0], **kw), ch.run_ber(flips, [3.0, 5.0], **kw)
    assert counts(a)[0] != counts(b)[0] and counts(a)[1] == counts(b)[1]  # point 1 whatever point 0 was
    assert counts(ch.run_ber(flips, [0.0, 5.0], **kw)) == counts(a)
    assert counts(ch.run_ber(flips, [0.0, 5.0], **{**kw, "seed": 5})) != counts(a)


def test_ray_is_imported_only_when_asked():
    code = ("import sys, channels as ch\n"
            "link = ch.DigitalLink(ch.Uncoded(100), 2, ch.AWGN(), crc=None)\n"
            "ch.run_ber(link, [4.0], batch_size=10, max_bits=2000)\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    missing = ("import sys; sys.modules['ray'] = None\n"  # as if ray were not installed
               "import channels as ch\n"
               "try:\n"
               "    ch.run_ber(lambda s, n, g: None, [1.0], engine='ray')\n"
               "except ImportError as err:\n"
               "    assert \"pip install 'semcomm[ray]'\" in str(err) and 'pip install ray' in str(err), err\n"
               "else:\n"
               "    raise AssertionError('no ImportError')\n")
    subprocess.run([sys.executable, "-c", missing], check=True)
