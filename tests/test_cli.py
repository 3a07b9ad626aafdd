"""The command line: zoo, evaluate, a quick sweep with JSON and plot, clear errors."""
from __future__ import annotations

import json

import pytest

from semcomm.cli import main
from semcomm.experiments.results import SweepResult


def test_zoo_lists_shipped_checkpoints(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "vit-edge-cifar10" in out and "vit-server-cifar10" in out and "%" in out


def test_zoo_lists_saved_backends_and_train_names_backend_recipes(tmp_path, monkeypatch, capsys):
    from backend_helpers import tiny_vit
    from semcomm.server.backends import Device, MonolithicBackend
    from semcomm.server.backends.storage import save_backend

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    save_backend(MonolithicBackend(tiny_vit(), Device("box", memory_mb=1.0)), name="box-tiny",
                 accuracy={"top1": 0.5})
    assert main(["zoo"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("box-tiny"))
    assert row.split()[1:3] == ["monolithic", "1"] and row.endswith("50.00%")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "devit-cifar10-n2", "--epochs", "3"])
    assert exit_.value.code == 2
    assert "--epochs do not apply" in capsys.readouterr().err


def test_evaluate_writes_json(tmp_path, capsys):
    path = tmp_path / "eval.json"
    assert main(["evaluate", "vit-edge-cifar10", "--limit", "64", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["images"] == 64 and 0 <= result["top1"] <= 1


def test_quick_sweep_writes_json_and_plot(tmp_path, capsys):
    args = ["sweep", "--limit", "64", "--budgets", "8,16", "--thresholds", "0.8", "--codecs", "webp-q20",
            "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png")]
    assert main(args) == 0
    result = SweepResult.from_json(tmp_path / "s.json")
    assert result.images == 64 and result.find("webp-q20").bits_per_image > 0
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert "| family |" in capsys.readouterr().out
    # every point records the settings that made it, beside its label
    point = result.find("spread-top-k 16 L3", "min_entropy 0.8")
    assert (point.rule, point.budget, point.rule_settings) == ("spread-top-k", 16, {"k": 16, "cell": 2,
                                                                                    "random_within": False})
    assert (point.policy, point.policy_settings, point.codec) == ("fixed-level", {"level": 3}, "latent-cifar10")
    assert (point.gate_kind, point.threshold) == ("min_entropy", 0.8)
    finest = result.find("spread-top-k 64 L4")  # the config's further policy, at its policy budget
    assert (finest.budget, finest.policy_settings, finest.gate_kind, finest.threshold) == (64, {"level": 4}, None, None)
    webp = result.find("webp-q20", fusion=True)
    assert (webp.codec, webp.quality, webp.rule, webp.policy) == ("webp", 20, None, None)
    twin = result.find("random (as spread-top-k 8 L3)")
    assert (twin.family, twin.rule, twin.budget) == ("random", "spread-top-k", 8)
    assert {f.name: (f.random, f.codec) for f in result.frontiers}["random latent"] == (True, "latent-cifar10")


def test_choices_come_from_the_registries_plug_ins_included(tmp_path, monkeypatch, capsys):
    """A rule and a gate registered at run time (as a plug-in registers them) are listed by --help, accepted by
    sweep --rules and --gate, and named in the points; an unknown name is refused while parsing, listing them."""
    from semcomm.edge.gating import GATES
    from semcomm.edge.selection import SELECTION_RULES, TopK

    monkeypatch.setitem(SELECTION_RULES._entries, "test-top-k", TopK)
    monkeypatch.setitem(SELECTION_RULES._info, "test-top-k", {"budget": True})
    monkeypatch.setitem(GATES._entries, "test-p-max", lambda logits: 1 - logits.float().softmax(-1).amax(-1))
    monkeypatch.setitem(GATES._info, "test-p-max", {})
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--help"])
    assert exit_.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "test-top-k (at every budget)" in shown and "test-p-max" in shown and "latent-cifar10" in shown
    for option, name, kind in (("--gate", "no-such-gate", "gate"), ("--importance", "no-such", "importance method"),
                               ("--codec", "no-such-codec", "codec")):
        with pytest.raises(SystemExit) as exit_:
            main(["sweep", option, name])
        assert exit_.value.code == 2
        error = capsys.readouterr().err
        assert f"unknown {kind} {name!r}; choose from" in error and (kind != "gate" or "test-p-max" in error)
    path = tmp_path / "s.json"
    assert main(["sweep", "--limit", "24", "--codec", "raw8", "--rules", "test-top-k", "--budgets", "8", "--gate",
                 "test-p-max", "--thresholds", "0.5", "--codecs", "none", "--no-twins", "--no-fusion",
                 "--json", str(path)]) == 0
    point = SweepResult.from_json(path).find("top-k 8", "test-p-max 0.5")
    assert (point.rule, point.budget, point.curve, point.gate_kind, point.threshold) == (
        "test-top-k", 8, "test-top-k", "test-p-max", 0.5)


def test_a_sweep_through_the_servers_own_monolithic_backend_equals_the_server_sweep(tmp_path, monkeypatch, capsys):
    from semcomm.server.backends import Device, MonolithicBackend
    from semcomm.server.backends.storage import save_backend
    from semcomm.models import create_model

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "zoo"))
    save_backend(MonolithicBackend(create_model("vit-server-cifar10"), Device("box", memory_mb=16.0)),
                 name="server-box", dataset="cifar10")
    common = ["sweep", "--limit", "48", "--codec", "raw8", "--budgets", "16", "--thresholds", "0.8", "--codecs",
              "webp-q20", "--no-twins"]
    assert main([*common, "--json", str(tmp_path / "server.json")]) == 0
    assert main([*common, "--backend", "server-box", "--json", str(tmp_path / "backend.json")]) == 0
    assert "backend server-box on the local engine" in capsys.readouterr().out
    server, backend = (SweepResult.from_json(tmp_path / f"{n}.json") for n in ("server", "backend"))
    assert backend.server == "server-box"
    for label in ("full images", "spread-top-k 16", "webp-q20"):
        assert backend.find(label).accuracy == server.find(label).accuracy
        assert backend.find(label).bits_per_image == server.find(label).bits_per_image
    with pytest.raises(SystemExit):
        main([*common, "--backend", "server-box", "--codec", "latent-cifar10"])
    assert "use --codec raw8, dct-cifar10 or pixel-iaq" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--engine", "ray"])
    assert "give one" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "no-such-model", "--limit", "8"], "unknown model"),
        (["sweep", "--dataset", "no-such-data", "--limit", "8"], "not found"),
        (["sweep", "--limit", "8", "--budgets", "0"], "budget"),
        (["sweep", "--limit", "8", "--rules", "best-k"], "unknown selection rules"),
        (["sweep", "--limit", "8", "--codecs", "gif-q5"], "unknown format"),
    ],
)
def test_errors_are_clear(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
