"""Training to the plateau on held-out training images (issue 28): the loop, resuming within a phase, the builders."""
from __future__ import annotations

import pytest
import torch
from backend_helpers import one_thread, tiny_data, tiny_vit  # noqa: F401 (fixture)
from torch import nn

import semcomm.train.backends.partitioned as partitioned_module
import semcomm.train.backends.submodels as submodels_module
from semcomm.server.backends import DecomposedBackend, DeviceConfig, ExpertBackend, PartitionedBackend
from semcomm.train.backends import build_decomposed, build_experts, build_partitioned
from semcomm.train.backends.plateau import Plateau, as_plateau, split_holdout, train_to_plateau
from semcomm.train.backends.recipes import build_backend, cifar10_recipe

TWO = DeviceConfig.from_dict({"devices": [{"name": "a", "memory_mb": 0.07}, {"name": "b", "memory_mb": 0.07}]})


def fake_loop(accuracies, plateau, partial=None, fail_at=None):
    """train_to_plateau on a 1-parameter module whose weight counts the steps; ``accuracies[e]`` is epoch e's
    held-out accuracy; the step raises at call ``fail_at``."""
    module = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(module.weight)
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    calls = []

    def step(epoch):
        if len(calls) == fail_at:
            raise RuntimeError("interrupted")
        calls.append(epoch)
        with torch.no_grad():
            module.weight += 1
        return float(module.weight.detach())  # the loss: the steps so far

    def evaluate():
        return accuracies[int(module.weight) // 2]  # 2 steps per epoch

    history = train_to_plateau(step, 2, evaluate, [module], [optimizer], torch.Generator().manual_seed(0), plateau,
                               partial)
    return history, module, calls


def test_the_loop_stops_when_the_gain_falls_below_min_gain_and_keeps_the_best_epoch():
    accuracies = [0.5, 0.6, 0.65, 0.6505, 0.9, 0.1, 0.1]
    history, module, calls = fake_loop(accuracies, Plateau(max_epochs=10, holdout=1))
    assert [e["epoch"] for e in history.curve] == [0, 1, 2, 3] and history.stopped_by == "plateau"
    assert [e["accuracy"] for e in history.curve] == accuracies[:4]
    assert history.curve[0]["loss"] is None and history.curve[1]["loss"] == 1.5  # the mean loss of its 2 steps
    assert list(history) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and calls == [0, 0, 1, 1, 2, 2]
    assert history.kept_epoch == 3 and int(module.weight) == 6  # 0.6505 is the best, if by less than min_gain
    # patience 2: one more epoch, which gains again; then it runs to the end of the accuracies' rise
    history, module, _ = fake_loop(accuracies, Plateau(max_epochs=10, holdout=1, patience=2))
    assert len(history.curve) == 7 and history.kept_epoch == 4 and int(module.weight) == 8  # best epoch's weights
    assert history.report() == {"curve": history.curve, "kept_epoch": 4, "stopped_by": "plateau"}


def test_the_loop_respects_max_epochs():
    history, module, _ = fake_loop([0.1 * e for e in range(10)], Plateau(max_epochs=3, holdout=1))
    assert len(history.curve) == 4 and history.stopped_by == "max_epochs" and history.kept_epoch == 3


def test_an_interrupted_loop_resumes_from_its_last_finished_epoch(tmp_path):
    accuracies = [0.1 * e for e in range(10)]
    whole, whole_module, _ = fake_loop(accuracies, Plateau(max_epochs=5, holdout=1))
    with pytest.raises(RuntimeError, match="interrupted"):
        fake_loop(accuracies, Plateau(max_epochs=5, holdout=1), tmp_path / "p.partial.pt", fail_at=5)  # in epoch 3
    assert len(torch.load(tmp_path / "p.partial.pt", weights_only=False)["curve"]) == 3  # epochs 0, 1, 2
    resumed, module, calls = fake_loop(accuracies, Plateau(max_epochs=5, holdout=1), tmp_path / "p.partial.pt")
    assert calls == [2, 2, 3, 3, 4, 4]  # only epochs 3 to 5 ran again
    assert resumed.curve == whole.curve and list(resumed) == list(whole) and torch.equal(module.weight, whole_module.weight)


@pytest.mark.parametrize("bad, message", [
    (dict(max_epochs=0, holdout=5), "max_epochs must be an integer >= 1"),
    (dict(max_epochs=2, holdout=0), "holdout must be an integer >= 1"),
    (dict(max_epochs=2, holdout=5, min_gain=1.5), "min_gain is a gain"),
    (dict(max_epochs=2, holdout=5, patience=True), "patience must be an integer"),
])
def test_bad_plateaus_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        Plateau(**bad)


def test_plateau_options_split_and_errors():
    assert as_plateau(None) is None and as_plateau({"max_epochs": 2, "holdout": 3}) == Plateau(2, 3)
    with pytest.raises(ValueError, match="a plateau is"):
        as_plateau({"epochs": 3})
    rows, held = split_holdout(20, 5, torch.Generator().manual_seed(1))
    assert len(held) == 5 and sorted(rows.tolist() + held.tolist()) == list(range(20))
    assert torch.equal(held, split_holdout(20, 5, torch.Generator().manual_seed(1))[1])  # fixed by the seed
    with pytest.raises(ValueError, match="cannot hold out 20 of 20"):
        split_holdout(20, 20, torch.Generator())
    images, labels = tiny_data(20)
    with pytest.raises(ValueError, match="needs the held-out images"):
        submodels_module.finetune_submodel(submodels_module.ClassSubModel.from_server(tiny_vit(), [0, 1]), images,
                                           labels, 1, plateau=Plateau(2, 3))


def build(run_dir, **options):
    server = tiny_vit()
    images, labels = tiny_data(60)
    return build_partitioned(server, TWO, images, labels, recovery_steps=1, batch_size=16, kd_weight=1.0,
                             kd_loss="logits", data="all", token_keep=(0.5, 1.0), augmentation="pad-crop-flip",
                             run_dir=run_dir, generator=0,
                             plateau=Plateau(max_epochs=4, holdout=12, min_gain=0.0, patience=9), **options)


def test_a_partitioned_build_interrupted_in_epoch_3_of_a_sub_model_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = build(tmp_path / "whole")
    assert set(whole.curves) == {"recover/0", "recover/1"} and not whole.losses["finetune/0"]
    for report in whole.curves.values():
        assert [e["epoch"] for e in report["curve"]] == [0, 1, 2, 3, 4] and report["stopped_by"] == "max_epochs"
        assert all(0 <= e["accuracy"] <= 1 for e in report["curve"])
    steps = len(whole.losses["recover/0"])  # 4 epochs of ceil(48 / 16) = 3 steps
    assert steps == 12
    real, calls = submodels_module.optimizer_step, []

    def failing(optimizer, loss):
        if len(calls) == steps + 7:  # the second step of sub-model 1's third epoch
            raise RuntimeError("interrupted")
        calls.append(1)
        return real(optimizer, loss)

    monkeypatch.setattr(submodels_module, "optimizer_step", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        build(tmp_path / "resumed")
    monkeypatch.setattr(submodels_module, "optimizer_step", real)
    assert (tmp_path / "resumed" / "submodel0.pt").exists() and (tmp_path / "resumed" / "submodel1.partial.pt").exists()
    resumed = build(tmp_path / "resumed")
    assert not list((tmp_path / "resumed").glob("*.partial.pt"))  # removed once the phase was saved
    assert resumed.curves == whole.curves and resumed.losses == whole.losses
    for name, value in whole.backend.state_dict().items():
        assert torch.equal(value, resumed.backend.state_dict()[name]), name


def test_the_held_out_images_are_never_trained_on(monkeypatch):
    seen = []
    real = partitioned_module.finetune_submodel

    def recording(model, images, labels, *args, **kwargs):
        seen.append((images, kwargs["held_out"][0]))
        return real(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(partitioned_module, "finetune_submodel", recording)
    images, _ = tiny_data(60)
    built = build(None, fusion_steps=1)
    _, held = split_holdout(60, 12, torch.Generator().manual_seed(0))  # the build's first draw
    rows = {bytes(image.numpy()) for image in images[held]}
    assert len(seen) == 2
    for trained, held_images in seen:
        assert len(trained) == 48 and torch.equal(held_images, images[held])
        assert not rows & {bytes(image.numpy()) for image in trained}
    assert isinstance(built.backend, PartitionedBackend)


def test_decomposed_and_expert_builds_train_to_the_plateau_end_to_end(tmp_path):
    server, edge = tiny_vit(), tiny_vit(seed=1, embed_dim=16, num_heads=2)
    images, labels = tiny_data(60)
    plateau = {"max_epochs": 3, "holdout": 12}
    together = build_decomposed(server, TWO, images, labels, student=edge, distill_steps=1, batch_size=16,
                                run_dir=tmp_path / "devit", generator=0, plateau=plateau)
    assert isinstance(together.backend, DecomposedBackend) and set(together.curves) == {"distill/0", "distill/1"}
    for i in range(2):
        report = together.curves[f"distill/{i}"]
        assert 2 <= len(report["curve"]) <= 4 and len(together.losses[f"distill/{i}"]) == 3 * (len(report["curve"]) - 1)
    apart = build_decomposed(server, TWO, images, labels, student=edge, distill_steps=1, batch_size=16, data="group",
                             generator=0, plateau=plateau)
    assert set(apart.curves) == {"distill/0", "distill/1"}
    experts = build_experts(edge, server, TWO, images, labels, subsets="random", steps=1, batch_size=16,
                            run_dir=tmp_path / "experts", generator=0, plateau=plateau)
    assert isinstance(experts.backend, ExpertBackend) and set(experts.curves) == {"expert/0", "expert/1"}
    for report in experts.curves.values():  # not judged before the schedule's 3 phases: 3 epochs
        assert len(report["curve"]) == 4


def test_the_plateau_recipes_hold_out_5000_images_and_keep_the_fixed_step_ones(tmp_path):
    for kind in ("partitioned", "devit", "experts"):
        fixed, plateau = cifar10_recipe(kind, 2), cifar10_recipe(kind, 2, plateau=True)
        assert "plateau" not in fixed.build and fixed.name == f"{kind}-cifar10-n2"
        assert plateau.name == f"{kind}-cifar10-n2-plateau"
        assert plateau.build == {**fixed.build, "plateau": {"max_epochs": 30, "holdout": 5000}}
    recipe = cifar10_recipe("experts", 2, scale=0.05, plateau=True)
    assert recipe.build["plateau"]["max_epochs"] == 2
    recipe = cifar10_recipe("experts", 2, build={**recipe.build, "plateau": {"max_epochs": 1, "holdout": 10}})
    curves = {}
    backend = build_backend(recipe, tiny_vit(), tiny_vit(seed=1, embed_dim=16, num_heads=2), *tiny_data(40),
                            tmp_path, progress=False, curves=curves)
    assert isinstance(backend, ExpertBackend) and set(curves) == {"expert/0", "expert/1"}
    assert curves["expert/0"]["stopped_by"] == "max_epochs" and len(curves["expert/0"]["curve"]) == 2


def test_semcomm_train_names_the_plateau_variant(monkeypatch):
    import semcomm.train.backends.recipes as recipes
    from semcomm.cli import main

    ran = []
    monkeypatch.setattr(recipes, "run_recipe", lambda recipe, **kwargs: ran.append(recipe) or {"name": recipe.name})
    for name in ("devit-cifar10-n2-plateau", "devit-cifar10-n2", "baseline-of-devit-cifar10-n2-total-plateau"):
        assert main(["train", name]) == 0
    assert [r.name for r in ran] == ["devit-cifar10-n2-plateau", "devit-cifar10-n2",
                                     "baseline-of-devit-cifar10-n2-total-plateau"]
    assert ran[0].build["plateau"] == {"max_epochs": 30, "holdout": 5000} and "plateau" not in ran[1].build
    assert ran[2].build["plateau"] == ran[0].build["plateau"] and ran[2].kind == "partitioned"


def test_the_curves_go_into_results_json(tmp_path):
    import json

    from semcomm.server.backends import Device, MonolithicBackend
    from semcomm.train.backends.recipes import measure_recipe

    recipe = cifar10_recipe("partitioned", 1, test_limit=8)
    server, edge = tiny_vit(), tiny_vit(seed=1, embed_dim=16, num_heads=2)
    curves = {"recover/0": {"curve": [{"epoch": 0, "accuracy": 0.5, "loss": None}], "kept_epoch": 0,
                            "stopped_by": "plateau"}}
    measure_recipe(recipe, MonolithicBackend(server, Device("box", memory_mb=1.0)), server, edge, tmp_path,
                   built_with={}, build_minutes=0.0, save=False, latency_requests=1, threads=1, partial_budgets=(4,),
                   training_curves=curves)
    assert json.loads((tmp_path / "results.json").read_text())["training_curves"] == curves
