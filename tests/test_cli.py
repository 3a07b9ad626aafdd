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
    with pytest.raises(SystemExit):  # --engine ray alone spreads the sweep's tasks over Ray (tests/test_sweep_ray.py)
        main([*common, "--backend", "server-box", "--address", "127.0.0.1:1"])
    assert "add --engine ray" in capsys.readouterr().err


def test_a_latent_sweep_through_the_pairs_own_server_as_a_backend_equals_the_pair_sweep(tmp_path, monkeypatch,
                                                                                          capsys):
    from semcomm.rate import create_codec
    from semcomm.server.backends import MonolithicBackend
    from semcomm.server.backends.storage import save_backend

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "zoo"))
    save_backend(MonolithicBackend.of_latent_pair(create_codec("latent-cifar10")), name="latent-box",
                 dataset="cifar10")
    common = ["sweep", "--limit", "32", "--codec", "latent-cifar10", "--budgets", "16", "--levels", "3",
              "--thresholds", "0.8", "--codecs", "webp-q20", "--no-twins"]
    assert main([*common, "--json", str(tmp_path / "pair.json")]) == 0
    assert main([*common, "--backend", "latent-box", "--json", str(tmp_path / "backend.json")]) == 0
    assert "backend latent-box on the local engine" in capsys.readouterr().out
    pair, backend = (SweepResult.from_json(tmp_path / f"{n}.json") for n in ("pair", "backend"))
    for label in ("spread-top-k 16 L3", "webp-q20"):  # fp16 weights on the saved backend: the same answers here
        assert backend.find(label).accuracy == pair.find(label).accuracy
        assert backend.find(label).bits_per_image == pair.find(label).bits_per_image
    with pytest.raises(SystemExit):
        main([*common[:4], "raw8", *common[5:], "--backend", "latent-box"])
    assert "reads a latent pair's latents, but codec raw8's server reads pixels" in capsys.readouterr().err


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


def _no_work(*args, **kwargs):
    raise AssertionError("the command started its work before refusing a bad option")


@pytest.fixture
def refuse_work(monkeypatch):
    """Loading data (the first work of every command) fails the test: a bad option must be refused first."""
    from semcomm.cli import catalogue, link, sweep, training

    for module in (catalogue, link, sweep, training):
        monkeypatch.setattr(module, "load", _no_work)
    monkeypatch.setattr(training, "load_split", _no_work)
    monkeypatch.setattr("semcomm.data.load_images", _no_work)


THIS_FILE = __file__  # a file where a folder is expected
BAD_INPUTS = [  # (argv, the option the one-line error must name)
    (["sweep", "--limit", "0"], "--limit"), (["sweep", "--limit", "many"], "--limit"),
    (["sweep", "--plot", "out.txt"], "--plot"), (["sweep", "--plot", "out"], "--plot"),
    (["sweep", "--json", "out.csv"], "--json"), (["sweep", "--json", "/no/such/folder/s.json"], "--json"),
    (["sweep", "--budgets", "0"], "--budgets"), (["sweep", "--budgets", "8,x"], "--budgets"),
    (["sweep", "--budgets", "16,100"], "--budgets"), (["sweep", "--iaq-budgets", "65"], "--iaq-budgets"),
    (["sweep", "--levels", "0"], "--levels"), (["sweep", "--levels", "9"], "--levels"),
    (["sweep", "--codec", "raw8", "--levels", "2", "--no-fusion"], "--levels"),
    (["sweep", "--codec", "raw8", "--iaq-bits", "400", "--no-fusion"], "--iaq-bits"),
    (["sweep", "--iaq-bits", "-5"], "--iaq-bits"), (["sweep", "--iaq-bits", "inf"], "--iaq-bits"),
    (["sweep", "--iaq-min-level", "0"], "--iaq-min-level"),
    (["sweep", "--iaq-bits", "400", "--iaq-min-level", "7"], "--iaq-min-level"),
    (["sweep", "--iaq-power", "nan"], "--iaq-power"), (["sweep", "--uniform-bits", "0"], "--uniform-bits"),
    (["sweep", "--thresholds", "-1"], "--thresholds"), (["sweep", "--thresholds", "nan"], "--thresholds"),
    (["sweep", "--codecs", "webp-q200"], "--codecs"), (["sweep", "--codecs", "gif-q5"], "--codecs"),
    (["sweep", "--rules", "best-k"], "--rules"), (["sweep", "--gate", "coin"], "--gate"),
    (["sweep", "--importance", "dice"], "--importance"), (["sweep", "--codec", "zip"], "--codec"),
    (["sweep", "--iaq-solver", "guess"], "--iaq-solver"), (["sweep", "--edge", "no-such-edge"], "--edge"),
    (["sweep", "--server", "no-such-server"], "--server"), (["sweep", "--backend", "no-such-backend"], "--backend"),
    (["sweep", "--engine", "gpu"], "--engine"), (["sweep", "--address", "host:1"], "--address"),
    (["sweep", "--backend", "partitioned-cifar10-n2", "--codec", "latent-cifar10"], "--backend"),
    (["sweep", "--data-root", "/no/such/root"], "--data-root"), (["sweep", "--data", "/no/such/data"], "--data"),
    (["sweep", "--dataset", "no-such-data"], "--dataset"), (["sweep", "--split", "nope"], "--split"),
    (["sweep", "--threads", "0"], "--threads"), (["sweep", "--edge", "semcomm_vit_edge_p7_32"], "--edge"),
    (["link", "--snrs", "1e9"], "--snrs"), (["link", "--snrs", "-100"], "--snrs"),
    (["link", "--snrs", "nan"], "--snrs"),
    (["link", "--snrs", "inf"], "--snrs"), (["link", "--channel", "bsc", "--snrs", "0.1,2"], "--snrs"),
    (["link", "--channel", "bec", "--snrs", "-0.1"], "--snrs"),
    (["link", "--channel", "gilbert-elliott", "--snrs", "1.5"], "--snrs"),
    (["link", "--channel", "ideal", "--snrs", "3"], "--snrs"), (["link", "--channel", "smoke"], "--channel"),
    (["link", "--modulation", "3"], "--modulation"), (["link", "--modulation", "qam"], "--modulation"), (["link", "--code-rate", "7/8"], "--code-rate"),
    (["link", "--block", "100"], "--block"), (["link", "--adaptive", "--channel", "bsc"], "--adaptive"),
    (["link", "--target-bler", "0"], "--target-bler"), (["link", "--target-bler", "1.5"], "--target-bler"),
    (["link", "--framings", "smoke"], "--framings"), (["link", "--framings", ","], "--framings"),
    (["link", "--header-copies", "0"], "--header-copies"), (["link", "--packet-bytes", "0"], "--packet-bytes"),
    (["link", "--min-arrived", "2"], "--min-arrived"), (["link", "--rule", "threshold"], "--rule"),
    (["link", "--rule", "best-k"], "--rule"), (["link", "--budgets", "0"], "--budgets"),
    (["link", "--budgets", "65"], "--budgets"), (["link", "--levels", "6"], "--levels"),
    (["link", "--seed", "-1"], "--seed"), (["link", "--plot", "a.txt"], "--plot"),
    (["link", "--json", "a.txt"], "--json"), (["link", "--limit", "-1"], "--limit"),
    (["link", "--threads", "x"], "--threads"), (["link", "--edge", "x"], "--edge"),
    (["link", "--thresholds", "a"], "--thresholds"), (["link", "--gate", "coin"], "--gate"),
    (["evaluate", "no-such-model"], "model"), (["evaluate", "vit-edge-cifar10", "--limit", "0"], "--limit"),
    (["evaluate", "vit-edge-cifar10", "--json", "x.txt"], "--json"),
    (["evaluate", "vit-edge-cifar10", "--threads", "0"], "--threads"),
    (["evaluate", "vit-edge-cifar10", "--split", "nope"], "--split"),
    (["evaluate", "/no/such/card.json"], "model"),
    (["predict", "no-such-model", "--data", "/tmp"], "model"), (["predict", "vit-edge-cifar10"], "--data"),
    (["predict", "vit-edge-cifar10", "--dataset", "cifar10"], "--split"),
    (["predict", "vit-edge-cifar10", "--data", "/no/such/images"], "--data"),
    (["predict", "vit-edge-cifar10", "--data", "/tmp", "--csv", "x.json"], "--csv"),
    (["predict", "vit-edge-cifar10", "--data", "/tmp", "--limit", "0"], "--limit"),
    (["train", "--epochs", "0"], "--epochs"), (["train", "--batch-size", "-1"], "--batch-size"),
    (["train", "--stop-after", "0"], "--stop-after"), (["train", "--geometry", "64/7"], "--geometry"),
    (["train", "--size", "huge"], "--size"), (["train", "--init-from", "no-such-checkpoint"], "--init-from"),
    (["train", "--init-from", THIS_FILE], "--init-from"), (["train", "--grow-from", "no-such-model"], "--grow-from"),
    (["train", "--grow-from", "semcomm_vit_edge_p4_32"], "--grow-from"),
    (["train", "--run-dir", THIS_FILE], "--run-dir"),
    (["train", "--to", THIS_FILE], "--to"), (["train", "--threads", "0"], "--threads"),
    (["train", "no-such-preset"], "preset"), (["train", "vit-edge-cifar10", "--data", "/no/such/data"], "--data"),
    (["train", "vit-edge-cifar10", "--snapshot", "/tmp"], "--snapshot"),
    (["train", "hyperlatent-cifar10", "--geometry", "64/8"], "--geometry"),
    (["train", "hyperlatent-cifar10", "--snapshot", THIS_FILE], "--snapshot"),
    (["export", "vit-edge-cifar10", "--to", THIS_FILE], "--to"), (["export", "no-such-run"], "run"),
    (["fit", "guess"], "what"), (["fit", "hint", "--edge", "no-such-edge"], "--edge"),
    (["fit", "hint", "--images", "0"], "--images"), (["fit", "dct", "--to", "/tmp"], "--to"),
    (["fit", "hint", "--to", THIS_FILE], "--to"), (["fit", "hint", "--threads", "-2"], "--threads"),
]


@pytest.mark.parametrize("argv, option", BAD_INPUTS, ids=[" ".join(argv) for argv, _ in BAD_INPUTS])
def test_every_bad_option_is_one_line_naming_it_before_any_work(argv, option, refuse_work, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    lines = error.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"semcomm {argv[0]}: error: "), error
    assert option in lines[0] and "Traceback" not in error


def test_every_command_that_runs_a_model_takes_threads(capsys):
    import torch

    for command in ("train", "export", "evaluate", "predict", "sweep", "link", "fit"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--threads" in capsys.readouterr().out, command
    before = torch.get_num_threads()
    try:
        assert main(["evaluate", "vit-edge-cifar10", "--limit", "8", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_help_says_where_the_user_zoo_is_as_the_code_finds_it(tmp_path, monkeypatch, capsys):
    for argv in (["export", "--help"], ["fit", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        shown = " ".join(capsys.readouterr().out.split())
        assert "$SEMCOMM_ZOO" in shown and "$SEMCOMM_CACHE/zoo" in shown and "~/.cache/semcomm/zoo" in shown
    monkeypatch.delenv("SEMCOMM_ZOO", raising=False)
    monkeypatch.setenv("SEMCOMM_CACHE", str(tmp_path))
    assert main(["zoo"]) == 0
    assert f"user zoo: {tmp_path / 'zoo'} ($SEMCOMM_ZOO" in capsys.readouterr().out


def test_zoo_skips_a_malformed_user_card_with_a_one_line_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    (tmp_path / "mine.json").write_text("{not json")
    assert main(["zoo"]) == 0
    out, err = capsys.readouterr()
    assert "vit-edge-cifar10" in out and "mine" not in out
    assert err.splitlines() == [f"semcomm zoo: warning: skipped a zoo entry: card {tmp_path / 'mine.json'} is not "
                                "valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
                                "(char 1)"]
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "mine"])
    assert exit_.value.code == 2
    assert f"argument model: card {tmp_path / 'mine.json'} is not valid JSON" in capsys.readouterr().err


def _own_edge(tmp_path):
    """The shipped CIFAR-10 edge as a checkpoint of the user's own, ``my-edge``, outside the zoo: its card's path."""
    import shutil

    from semcomm.zoo import SHIPPED_DIR

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copy(SHIPPED_DIR / "vit-edge-cifar10.safetensors", folder / "my-edge.safetensors")
    card = json.loads((SHIPPED_DIR / "vit-edge-cifar10.json").read_text())
    (folder / "my-edge.json").write_text(json.dumps({**card, "name": "my-edge"}))
    return folder / "my-edge.json"


def test_fit_hint_takes_any_model_the_cli_loads_and_files_it_under_its_name(tmp_path, monkeypatch, capsys):
    from semcomm.rate.zoo import load_hint

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "zoo"))
    card = _own_edge(tmp_path)
    assert main(["fit", "hint", "--edge", str(card), "--images", "64", "--threads", "1"]) == 0
    written = tmp_path / "zoo" / "codecs" / "hint-my-edge.json"
    assert f"written to {written}" in capsys.readouterr().out
    assert json.loads(written.read_text())["edge"] == "my-edge" and load_hint(str(card)).counts.sum() == 64 * 10


def test_predict_names_each_unlabelled_images_class(tmp_path, capsys):
    import csv

    import numpy as np
    from PIL import Image

    from semcomm.models import model_card

    folder = tmp_path / "photos"
    (folder / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b/c.jpg", "b/d.png"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    out = tmp_path / "p.json"
    assert main(["predict", "vit-edge-cifar10", "--data", str(folder), "--json", str(out), "--csv",
                 str(tmp_path / "p.csv"), "--fp32"]) == 0
    assert "3 images of photos classified by vit-edge-cifar10" in capsys.readouterr().out
    result = json.loads(out.read_text())
    classes = model_card("vit-edge-cifar10").classes
    assert (result["model"], result["images"]) == ("vit-edge-cifar10", 3)
    assert [row["file"] for row in result["predictions"]] == ["a.png", "b/c.jpg", "b/d.png"]
    assert all(row["class"] == classes[row["index"]] and 0 < row["probability"] <= 1 for row in result["predictions"])
    with open(tmp_path / "p.csv", newline="") as f:
        assert [dict(row, index=int(row["index"]), probability=float(row["probability"]))
                for row in csv.DictReader(f)] == result["predictions"]
    assert main(["predict", "vit-edge-cifar10", "--data", str(folder), "--limit", "2", "--fp32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = [[row["file"], row["class"]] for row in result["predictions"][:2]]
    assert [line.split("\t")[:2] for line in lines] == shown


def test_codec_lists_name_the_frontier_grid():
    from semcomm.cli.values import image_codecs
    from semcomm.rate.image_codecs import ImageCodec, frontier_codecs

    assert image_codecs("frontier") == tuple(frontier_codecs()) and image_codecs("none") == ()
    assert image_codecs("av1-q20,webp-q40") == (ImageCodec("av1", 20), ImageCodec("webp", 40))
    formats = {codec.format for codec in frontier_codecs()}
    assert formats == {"av1", "vp8", "webp", "avif", "jpeg"} and len(frontier_codecs()) == 39
