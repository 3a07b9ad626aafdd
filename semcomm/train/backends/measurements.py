"""What a backend recipe measures: top-1 on whole images and on the codec's partial inputs, latency against the
server, and, for a routed backend, edge + backend at equal offload rates (see :mod:`~semcomm.train.backends.recipes`).
"""
from __future__ import annotations

import statistics

import torch

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.gating import Gate
from semcomm.edge.selection import SpreadTopK, TopK, mask_to_positions
from semcomm.inference import top1
from semcomm.rate.hint import fuse
from semcomm.server.backends.collaborate import collaborate
from semcomm.server.backends.cost import device_macs, macs_per_image
from semcomm.server.backends.devices import Device
from semcomm.server.backends.engine import LocalEngine
from semcomm.server.backends.monolithic import MonolithicBackend
from semcomm.server.backends.ray_engine import RayEngine


def backend_logits(backend, images: torch.Tensor, edge_logits: torch.Tensor | None, batch_size: int = 256,
                   engine=None, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, list]:
    """(N x C logits of ``backend`` on whole images, or on the patches at N x K ``positions``, and its request
    reports), batched; a routed backend is given the edge's logits."""
    engine = engine or LocalEngine()
    logits, reports = [], []
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        extra = {"edge_logits": edge_logits[part]} if getattr(backend, "routed", False) else {}
        out = backend.run(images[part], None if positions is None else positions[part], engine, **extra)
        logits.append(out.logits)
        reports.append(out.report)
    return torch.cat(logits), reports


def measure_latency(backend, images: torch.Tensor, batch: int, requests: int,
                    edge_logits: torch.Tensor | None = None, engine=None) -> dict:
    """Critical-path latency of ``requests`` requests of ``batch`` whole images each on ``engine`` (default: a
    :class:`LocalEngine`, in this process).

    Returns:
        ``{"batch", "requests", "critical_path_ms"`` (median), ``"critical_path_ms_mean"``,
        ``"bytes_per_image"``}.
    """
    engine = engine or LocalEngine()
    routed = getattr(backend, "routed", False)
    backend.run(images[:batch], None, engine, **({"edge_logits": edge_logits[:batch]} if routed else {}))  # warm-up
    times, sizes = [], []
    for r in range(requests):
        start = (r * batch) % max(1, len(images) - batch + 1)
        part = slice(start, start + batch)
        out = backend.run(images[part], None, engine, **({"edge_logits": edge_logits[part]} if routed else {}))
        times.append(out.report.latency_s * 1e3)
        sizes.append(out.report.bytes_exchanged / batch)
    return {"batch": batch, "requests": requests, "critical_path_ms": statistics.median(times),
            "critical_path_ms_mean": statistics.fmean(times), "bytes_per_image": statistics.fmean(sizes)}


def measure_latencies(backend, server, images: torch.Tensor, edge_logits: torch.Tensor | None,
                      latency_requests: int = 30, threads: int | None = None, ray: bool = False) -> dict:
    """Critical-path latency of ``backend`` and of ``server`` (as a one-device backend) on requests of 1 and of 64
    whole ``images``, in process and, with ``ray``, on a local :class:`~semcomm.server.backends.ray_engine.RayEngine`.

    Returns:
        ``{"latency": {"batch1": {"backend", "server", "speedup"}, "batch64": ...}}`` plus ``"latency_ray"`` (same
        layout) with ``ray``; each entry as :func:`measure_latency` returns it.
    """
    server_backend = MonolithicBackend(server, Device("server", memory_mb=1e6))
    engines = {"latency": LocalEngine()}
    if ray:
        engines["latency_ray"] = RayEngine(devices=server_backend.devices)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    results = {}
    try:
        for key, engine in engines.items():
            results[key] = {}
            for batch in (1, 64):
                count = latency_requests if batch == 1 else max(3, latency_requests // 10)
                mine = measure_latency(backend, images, batch, count, edge_logits, engine)
                theirs = measure_latency(server_backend, images, batch, count, engine=engine)
                results[key][f"batch{batch}"] = {"backend": mine, "server": theirs,
                                                 "speedup": theirs["critical_path_ms"] / mine["critical_path_ms"]}
    finally:
        torch.set_num_threads(previous)
        for engine in engines.values():
            engine.shutdown()
    return results


@torch.no_grad()
def partial_input_accuracy(backend, server, edge, images: torch.Tensor, labels: torch.Tensor,
                           edge_logits: torch.Tensor, budgets: tuple[int, ...], seed: int = 0) -> list[dict]:
    """Per budget k: top-1 of ``backend`` and of ``server`` on the k patches per image that spread-top-k picks
    by ``edge``'s mean attention (what the codec sends), with the backend's MACs per device on them."""
    importance = EdgeEncoder(edge, TopK(1), gate=None).analyze(images, ("mean",)).importance["mean"]
    rows = []
    for k in budgets:
        mask = SpreadTopK(k)(importance, edge.grid_size, torch.Generator().manual_seed(seed))
        positions = torch.stack(mask_to_positions(mask))
        logits, _ = backend_logits(backend, images, edge_logits, positions=positions)
        server_logits = torch.cat([server.forward_tokens(images[i:i + 256], positions[i:i + 256])
                                   for i in range(0, len(images), 256)])
        rows.append({"patches": k, "top1": top1(logits, labels), "server_top1": top1(server_logits, labels),
                     "macs_per_device": device_macs(backend, images[:8], positions[:8]),
                     "server_macs": macs_per_image(server, images[:8], positions[:8])})
    return rows


def compare_offloading(edge, backend, images: torch.Tensor, labels: torch.Tensor, edge_logits: torch.Tensor,
                       server_logits: torch.Tensor, rates) -> list[dict]:
    """Per offload rate: top-1 of edge + ``backend`` and of edge + server on the same offloaded images, each
    also fused with the edge's own prediction on those images (:func:`~semcomm.rate.hint.fuse` at its default
    weight, as the codec's pairs fuse), and the share each stage (expert) served."""
    edge_log_probs = edge_logits.float().log_softmax(-1)
    rows = []
    for rate in rates:
        gate = Gate.calibrate(edge_logits, rate)
        result = collaborate(edge, backend, images, gate, edge_logits=edge_logits)
        sent = result.offloaded[:, None]
        with_server = torch.where(sent, server_logits, edge_logits)
        rows.append({"target_rate": rate, "offload_rate": result.offload_rate, "top1": result.top1(labels),
                     "server_top1": top1(with_server, labels), "edge_top1": top1(edge_logits, labels),
                     "fused_top1": top1(torch.where(sent, fuse(result.logits, edge_log_probs), edge_logits), labels),
                     "server_fused_top1": top1(torch.where(sent, fuse(server_logits, edge_log_probs), edge_logits),
                                               labels),
                     "share_served": result.share_served() if result.route is not None else None})
    return rows
