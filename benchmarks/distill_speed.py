"""DeViT distillation: N students one after the other against all N together (one server forward per step).

Builds the N students of ``cifar10_recipe("devit", N)`` (the shipped edge, shortened and
pruned as the recipe does, on a random class grouping) and times ``--steps`` distillation
steps of batch 64 on CIFAR-10 training images: each student alone from its sub-teacher
(``distill``, N server forwards per step of all students) and all together from the server
(``distill_together``, one). Prints seconds per step of all N students, each way, and the ratio.

    .venv/bin/python benchmarks/distill_speed.py [--devices 5] [--steps 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from semcomm.data import load_split
from semcomm.models import create_model
from semcomm.server.backends import ClassSubModel
from semcomm.train.backends import DistillConfig, distill, distill_together, group_randomly, make_student
from semcomm.train.backends.recipes import cifar10_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    build = cifar10_recipe("devit", args.devices).build
    server, edge = create_model("vit-server-cifar10").eval(), create_model("vit-edge-cifar10")
    train = load_split("cifar10", "train", limit=4096)
    groups = group_randomly(server.num_classes, args.devices, build["group_seed"])
    options = dict(config=DistillConfig(), batch_size=build["batch_size"], lr=build["lr"],
                   augmentation=build["augmentation"], token_keep=build["token_keep"], bf16=build["bf16"])

    def students():
        return [make_student(edge, server, g, train.images, train.labels, build["student_depth"],
                             build["student_keep"], generator=0).vit for g in groups]

    alone = students()
    start = time.perf_counter()
    for vit, group in zip(alone, groups):
        teacher = ClassSubModel.from_server(server, group)
        distill(vit, teacher.vit, train.images, teacher.targets(train.labels), args.steps, generator=1, **options)
    one_by_one = (time.perf_counter() - start) / args.steps
    together = students()
    start = time.perf_counter()
    distill_together(together, server, train.images,
                     [ClassSubModel(v, g).targets(train.labels) for v, g in zip(together, groups)], args.steps,
                     columns=[list(g) for g in groups], generator=1, **options)
    at_once = (time.perf_counter() - start) / args.steps
    print(f"\n{args.devices} students, {args.steps} steps of {build['batch_size']} images, {args.threads} thread(s)\n")
    print("| students distilled | s per step of all students | speed-up |")
    print("|---|---:|---:|")
    print(f"| one after the other (`distill`) | {one_by_one:.2f} | 1.00x |")
    print(f"| together (`distill_together`) | {at_once:.2f} | {one_by_one / at_once:.2f}x |")


if __name__ == "__main__":
    main()
