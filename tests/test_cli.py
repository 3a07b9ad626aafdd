"""The command line: zoo, evaluate, a quick sweep with JSON and plot, clear errors."""
from __future__ import annotations

import json

import pytest

from semcomm.cli import main
from semcomm.experiments.sweep import SweepResult


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
