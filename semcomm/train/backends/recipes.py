"""Full-size recipes: class-partitioned, DeViT and expert-routed backends for CIFAR-10 on N = 2 or 5 devices.

A recipe (:func:`cifar10_recipe`, for every kind in :data:`CIFAR10_RECIPES`)
builds one backend (the backend registry's factory of its kind) from the shipped
``vit-server-cifar10`` (and ``vit-edge-cifar10``: the DeViT students start
from it, and it is the experts' generalist) on the CIFAR-10 train split, then
:func:`run_recipe` measures it on the test split and saves it:

* top-1 of the backend on whole test images, and of the server and the edge
  on the same images;
* parameters per device (and on the host), and MACs per image per device
  (counted, :mod:`~semcomm.server.backends.cost`) against the server's;
* top-1 on the codec's partial inputs: the ``partial_budgets`` patches per
  image that spread-top-k picks by the edge's mean attention, the backend
  against the server on exactly the same patches;
* in-process (:class:`~semcomm.server.backends.engine.LocalEngine`) critical-path
  latency of single-image and batched requests, the server's (as a
  one-device backend) measured the same way, and bytes exchanged per image;
* for expert routing, at each offload rate of a gate calibrated on the edge's
  logits: top-1 of edge + experts and of edge + server on exactly the same
  offloaded images, and the share of offloaded images each expert served.

Each measurement is a function of :mod:`~semcomm.train.backends.measurements`.
Building is resumable: each phase (a sub-model, a student, an expert, the
fusion) is kept under ``<cache>/runs/backend-<name>/`` and skipped when the
recipe runs again (see :mod:`~semcomm.train.backends.phases`); the measurements go
to ``results.json`` there (with, for a recipe trained to the plateau, each
sub-model's, student's or expert's held-out curve under ``training_curves``), and the backend into the user zoo as ``<name>``
(``<kind>-cifar10-n<N>``) with them on its card. ``scale`` multiplies every
step count (``0.01`` for a quick check of the whole path).
``cifar10_recipe(kind, n, plateau=True)`` is the variant trained to the plateau
(:mod:`~semcomm.train.backends.plateau`): the kind's build options plus
``plateau={"max_epochs": PLATEAU_MAX_EPOCHS, "holdout": PLATEAU_HOLDOUT}``,
named ``<kind>-cifar10-n<N>-plateau``; the fixed-step recipes are unchanged.
:func:`retime_recipe` times a recipe's saved backend again (on an idle
machine, or on Ray) without building or evaluating anything;
:func:`evaluate_recipe` measures a saved (e.g. shipped) backend as
:func:`run_recipe` measures a built one, without building it.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from semcomm.core.paths import default_cache_dir
from semcomm.core.registry import Registry
from semcomm.data import load_split
from semcomm.inference import native_bf16, predict_logits, top1
from semcomm.server.backends.cost import device_macs, macs_per_image
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.registry import create_backend
from semcomm.server.backends.storage import save_backend
from semcomm.train.backends.measurements import (
    backend_logits, compare_offloading, measure_latencies, partial_input_accuracy,
)

EPOCH = 781  # optimiser steps of 64 images in one pass over CIFAR-10's 50,000 training images
PLATEAU_MAX_EPOCHS = 30  # at most, per sub-model, student or expert, in a recipe trained to the plateau
PLATEAU_HOLDOUT = 5000  # training images held out to find the plateau (a tenth of CIFAR-10's train split)
CIFAR10_RECIPES: Registry[Callable[[int, Callable[[float], int]], tuple[float, dict]]] = Registry(
    "CIFAR-10 backend recipe")
"""Backend kind -> ``settings(num_devices, steps) -> (memory_mb per device, build options)``: its CIFAR-10 recipe
(``steps(n)`` scales a step count); each kind is also a factory of the backend registry."""


@CIFAR10_RECIPES.register("partitioned")
def _partitioned(n: int, steps: Callable[[float], int]) -> tuple[float, dict]:
    """Each device holds a fifth of the server's float32 bytes whatever N (so every sub-model is pruned to at
    least 5x fewer parameters than the server, issue 11's target), and each pruned sub-model learns on all
    training images to match the server's logits for its classes (no fine-tuning before pruning: the unpruned
    sub-model *is* the server restricted to the group, so it would match already)."""
    return 4 * 3_362_890 / 5 / 1e6, dict(
        groups="confusion", finetune_steps=0, recovery_steps=steps(6 * EPOCH * min(1.0, 2 / n)),
        fusion_steps=steps(4 * EPOCH), importance_images=512, batch_size=64, lr=1e-4, augmentation="pad-crop-flip",
        token_keep=(0.5, 1.0), kd_weight=1.0, kd_loss="logits", data="all", bf16=True)


@CIFAR10_RECIPES.register("devit")
def _devit(n: int, steps: Callable[[float], int]) -> tuple[float, dict]:
    """4 MB per device (an edge-sized student; the students start from the edge), shortened and pruned beyond
    N = 2."""
    return 4.0, dict(
        groups="random", group_seed=42, student_depth=None if n <= 2 else 4, student_keep=1.0 if n <= 2 else 0.5,
        distill_steps=steps(5 * EPOCH), fusion_steps=steps(4 * EPOCH), joint_steps=steps(2 * EPOCH), data="all",
        batch_size=64, lr=3e-4, joint_lr=5e-5, augmentation="pad-crop-flip", token_keep=(0.5, 1.0), bf16=True)


@CIFAR10_RECIPES.register("experts")
def _experts(n: int, steps: Callable[[float], int]) -> tuple[float, dict]:
    """8 MB per device (the server pruned class-wise to about 60% of its parameters, so N = 5 experts ship in
    about 21 MB of fp16)."""
    return 8.0, dict(subsets="confusion", top_k=3, steps=steps(3 * EPOCH * min(1.0, 2 / n)), schedule=(3, 0.9),
                     kd_weight=0.5, batch_size=64, lr=5e-5, augmentation="pad-crop-flip", bf16=True)


@dataclass(frozen=True)
class BackendRecipe:
    """One backend to build and measure (module docstring).

    Attributes:
        name: its zoo name.
        kind: the backend's kind: its factory in the backend registry and its settings in :data:`CIFAR10_RECIPES`.
        devices: the device config (``DeviceConfig.to_dict()``).
        build: keyword arguments of the factory (steps, learning rates, ...), JSON-able.
        server, edge: zoo names of the models it is built from.
        dataset: the data set (its ``train`` split builds, ``test`` measures).
        train_limit, test_limit: fixed subsets of the splits (None: all).
        offload_rates: the gate's offload rates at which expert routing is compared with the server.
        seed: the build's generator seed.
    """

    name: str
    kind: str
    devices: dict
    build: dict = field(default_factory=dict)
    server: str = "vit-server-cifar10"
    edge: str = "vit-edge-cifar10"
    dataset: str = "cifar10"
    train_limit: int | None = None
    test_limit: int | None = None
    offload_rates: tuple = (0.2, 0.4, 0.6)
    seed: int = 0


def cifar10_recipe(kind: str, num_devices: int, scale: float = 1.0, plateau: bool = False,
                   **changes) -> BackendRecipe:
    """The recipe of ``kind`` for ``num_devices`` identical devices (N = 2 or 5 are the shipped ones).

    Devices and build options: the kind's settings in :data:`CIFAR10_RECIPES`. Each partitioned sub-model and
    each expert covers 10 / N classes, so its steps shrink as 2 / N beyond N = 2 (the same total for every N).
    Training runs in bf16 autocast where the CPU has native bf16, else in float32 (``native_bf16`` in the
    results says which). ``scale`` multiplies every step count; ``changes`` replace recipe fields.

    ``plateau``: the variant trained to the plateau, named ``<kind>-cifar10-n<N>-plateau``: the sub-models'
    recovery (partitioned), the students' distillation (devit) or the experts (experts) train in epochs until
    their held-out top-1 gains less than 0.1 point per epoch, at most ``PLATEAU_MAX_EPOCHS`` (times ``scale``,
    at least 1), on the training split less ``PLATEAU_HOLDOUT`` held-out images (build option ``plateau``; see
    :mod:`~semcomm.train.backends.plateau`). Their step counts then only say that those phases are on.
    """
    if kind not in CIFAR10_RECIPES:
        raise ValueError(f"unknown backend kind {kind!r}; choose from {CIFAR10_RECIPES.help()}")
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"the number of devices must be an integer >= 1, got {num_devices!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")

    def steps(n: float) -> int:
        return max(1, round(n * scale))

    memory, build = CIFAR10_RECIPES.get(kind)(num_devices, steps)
    devices = DeviceConfig.uniform(num_devices, round(memory, 3), cpus=max(0.25, round(1 / num_devices, 2))).to_dict()
    name = f"{kind}-cifar10-n{num_devices}"
    if plateau:
        build = {**build, "plateau": {"max_epochs": steps(PLATEAU_MAX_EPOCHS), "holdout": PLATEAU_HOLDOUT}}
        name += "-plateau"
    recipe = BackendRecipe(name, kind, devices, build)
    return BackendRecipe(**{**asdict(recipe), **changes})


def baseline_recipe(kind: str, num_devices: int, total: bool = False, scale: float = 1.0,
                    plateau: bool = False) -> BackendRecipe:
    """The honest baseline of the ``kind`` backend on ``num_devices`` devices: one monolithic ViT in the memory of
    that backend's largest device (``total``: of all its devices together), built by the partitioned recipe on a
    single device with a single group of every class: the server pruned (heads and MLP units) to that memory and
    distilled from the server on every training image, with the same augmentation, token dropping, learning rate
    and steps as one partitioned sub-model (:func:`_partitioned` at N = 1, so six epochs), then its one-input fusion.

    ``plateau``: trained to the plateau on held-out training images, as the recipes' ``plateau`` variant (compare
    it with the backend's ``-plateau`` recipe). Named ``baseline-of-<kind>-cifar10-n<N>[-total][-plateau]``;
    ``semcomm train`` builds it under that name.
    """
    backend = cifar10_recipe(kind, num_devices, scale)
    memory = [device["memory_mb"] for device in backend.devices["devices"]]
    budget = sum(memory) if total else max(memory)
    single = cifar10_recipe("partitioned", 1, scale, plateau=plateau)
    devices = DeviceConfig.uniform(1, round(budget, 3), cpus=1.0).to_dict()
    name = f"baseline-of-{backend.name}" + ("-total" if total else "") + ("-plateau" if plateau else "")
    return replace(single, name=name, devices=devices)


def build_backend(recipe: BackendRecipe, server, edge, images: torch.Tensor, labels: torch.Tensor,
                  run_dir: Path | None, progress: bool, curves: dict | None = None):
    """The backend of ``recipe`` built from ``server`` and ``edge`` on ``images``, ``labels``: the registry's
    factory of its kind, with the recipe's build options and a generator seeded with its seed. ``curves``: a dict
    that receives the build's held-out curves (trained to the plateau; name -> curve, kept epoch, stop)."""
    return create_backend(recipe.kind, server=server, edge=edge, devices=recipe.devices, images=images,
                          labels=labels, run_dir=run_dir, progress=progress, curves=curves,
                          generator=torch.Generator().manual_seed(recipe.seed), **recipe.build)


def run_recipe(recipe: BackendRecipe, run_dir: str | Path | None = None, save: bool = True,
               zoo_dir: str | Path | None = None, latency_requests: int = 30, threads: int | None = None,
               progress: bool = True, partial_budgets: tuple[int, ...] = (16, 32), ray: bool = False) -> dict:
    """Build (or resume), measure and save the backend of ``recipe`` (module docstring); returns the results.

    Args:
        run_dir: where phases and ``results.json`` go (default ``<cache>/runs/backend-<name>``).
        save: write the backend into the user zoo (or ``zoo_dir``: ``<zoo_dir>/backends/<name>``).
        latency_requests: requests per latency measurement.
        threads: torch threads while measuring latency (None: as set).
        partial_budgets: patches per image of the partial-input measurements.
        ray: also measure latency on a :class:`~semcomm.server.backends.ray_engine.RayEngine` (a local instance).
    """
    from semcomm.models import create_model

    started = time.time()
    server, edge = create_model(recipe.server), create_model(recipe.edge)
    train = load_split(recipe.dataset, "train", limit=recipe.train_limit, in_memory=True)  # builders take tensors
    run_dir = _run_dir(recipe, run_dir)
    curves: dict = {}
    backend = build_backend(recipe, server, edge, train.images, train.labels, run_dir, progress, curves)
    return measure_recipe(recipe, backend, server, edge, run_dir, built_with=asdict(recipe),
                          build_minutes=(time.time() - started) / 60, save=save, zoo_dir=zoo_dir,
                          latency_requests=latency_requests, threads=threads, partial_budgets=partial_budgets, ray=ray,
                          training_curves=curves)


def evaluate_recipe(recipe: BackendRecipe, run_dir: str | Path | None = None, latency_requests: int = 30,
                    threads: int | None = None, partial_budgets: tuple[int, ...] = (16, 32),
                    ray: bool = False) -> dict:
    """Measure the saved backend of ``recipe`` (looked up by name: the user zoo, then the shipped ones) as
    :func:`run_recipe` measures the one it builds, without building anything: the numbers of a shipped
    checkpoint (its fp16 weights) on this machine. Writes ``results.json`` (``build_minutes`` None,
    ``"recipe"`` the one on the backend's card: the recipe it was built with) and leaves the card as it is.
    """
    from semcomm.models import create_model
    from semcomm.server.backends.storage import load_backend, read_backend_card

    return measure_recipe(recipe, load_backend(recipe.name), create_model(recipe.server), create_model(recipe.edge),
                          _run_dir(recipe, run_dir), built_with=read_backend_card(recipe.name).recipe,
                          build_minutes=None, save=False, latency_requests=latency_requests, threads=threads,
                          partial_budgets=partial_budgets, ray=ray)


def measure_recipe(recipe: BackendRecipe, backend, server, edge, run_dir: Path, *, built_with: dict,
                   build_minutes: float | None, save: bool, zoo_dir: str | Path | None = None,
                   latency_requests: int = 30, threads: int | None = None,
                   partial_budgets: tuple[int, ...] = (16, 32), ray: bool = False,
                   training_curves: dict | None = None) -> dict:
    """The measurements of :func:`run_recipe` on ``backend`` (built with the recipe ``built_with``) against
    ``server`` and ``edge``, written to ``<run_dir>/results.json`` and, with ``save``, with the backend into
    the zoo. ``training_curves`` (the build's held-out curves, when it trained to the plateau) go into the
    results as they are."""
    test = load_split(recipe.dataset, "test", limit=recipe.test_limit, in_memory=True)  # measured as a tensor
    backend.check_dataset(len(test.classes), test.name)
    edge_logits = predict_logits(edge, test.images, bf16=False)
    server_logits = predict_logits(server, test.images, bf16=False)
    logits, reports = backend_logits(backend, test.images, edge_logits)
    results = {
        "name": recipe.name, "kind": recipe.kind, "num_devices": len(backend.placement()),
        "recipe": built_with, "build_minutes": build_minutes, "native_bf16": native_bf16(),
        "test_images": len(test), "top1": top1(logits, test.labels), "server_top1": top1(server_logits, test.labels),
        "edge_top1": top1(edge_logits, test.labels),
        "parameters_per_device": {d: sum(sum(p.numel() for p in s.module.parameters()) for s in stages)
                                  for d, stages in backend.placement().items()},
        "server_parameters": sum(p.numel() for p in server.parameters()),
        "bytes_per_image": sum(r.bytes_exchanged for r in reports) / len(test),
        "macs_per_device": device_macs(backend, test.images[:8]),
        "server_macs": macs_per_image(server, test.images[:8]),
        "partial_inputs": partial_input_accuracy(backend, server, edge, test.images, test.labels, edge_logits,
                                                 partial_budgets),
    }
    results["host_parameters"] = sum(p.numel() for p in backend.parameters()) - sum(
        results["parameters_per_device"].values())
    if training_curves:
        results["training_curves"] = training_curves
    if getattr(backend, "routed", False):
        results["offload"] = compare_offloading(edge, backend, test.images, test.labels, edge_logits, server_logits,
                                                recipe.offload_rates)
    results.update(measure_latencies(backend, server, test.images, edge_logits, latency_requests, threads, ray))
    if save:
        card = _save(backend, recipe, results, list(test.classes), zoo_dir)
        results["saved"] = str(card.directory)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
    return results


def _run_dir(recipe: BackendRecipe, run_dir: str | Path | None) -> Path:
    """``run_dir``, default ``<cache>/runs/backend-<name>`` (not created: the phases and results create it)."""
    return Path(run_dir) if run_dir is not None else default_cache_dir() / "runs" / f"backend-{recipe.name}"


def retime_recipe(recipe: BackendRecipe, run_dir: str | Path | None = None, save: bool = True,
                  zoo_dir: str | Path | None = None, latency_requests: int = 30, threads: int | None = None,
                  ray: bool = False) -> dict:
    """Measure the latencies of a recipe already run again (e.g. on an idle machine, or on Ray), on its saved
    backend (looked up by name: the user zoo, then the shipped ones), and update its ``results.json`` and, with
    ``save``, the card (the backend saved again as :func:`run_recipe` saves it; the same fp16 weights).

    Raises:
        FileNotFoundError: the recipe has no ``results.json`` yet (run it first).
    """
    from semcomm.models import create_model
    from semcomm.server.backends.storage import load_backend

    path = _run_dir(recipe, run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the recipe {recipe.name} before timing it again")
    results = json.loads(path.read_text())
    backend = load_backend(recipe.name)
    server = create_model(recipe.server)
    test = load_split(recipe.dataset, "test", limit=recipe.test_limit, in_memory=True)
    edge_logits = (predict_logits(create_model(recipe.edge), test.images, bf16=False)
                   if getattr(backend, "routed", False) else None)
    results.pop("latency_ray", None)
    results.update(measure_latencies(backend, server, test.images, edge_logits, latency_requests, threads, ray))
    if save:
        results["saved"] = str(_save(backend, recipe, results, list(test.classes), zoo_dir).directory)
    path.write_text(json.dumps(results, indent=2, default=_jsonable))
    return results


def _save(backend, recipe: BackendRecipe, results: dict, classes: list, zoo_dir: str | Path | None):
    """Save ``backend`` as :func:`run_recipe` does: its accuracy, in-process latency and the recipe it was built
    with (``results["recipe"]``) on the card."""
    directory = None if zoo_dir is None else Path(zoo_dir) / "backends" / recipe.name
    latency = {key: {"critical_path_ms": v["backend"]["critical_path_ms"], "server_ms": v["server"]["critical_path_ms"],
                     "speedup": v["speedup"]} for key, v in results["latency"].items()}
    return save_backend(backend, name=recipe.name, directory=directory,
                        accuracy={"dataset": recipe.dataset, "split": "test", "images": results["test_images"],
                                  "top1": results["top1"], "server_top1": results["server_top1"]},
                        latency={"engine": "local", **latency}, dataset=recipe.dataset, classes=classes,
                        recipe=results["recipe"])  # the recipe it was built with (a recipe may change later)


def _jsonable(value):
    if isinstance(value, (Path, torch.Tensor)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
