"""A third-party plug-in, installed for real: tests/plugins/example, a package outside semcomm that adds a
selection rule (``least-important-k``) and a gate (``one-minus-p-max``) through the entry-point group
``semcomm.plugins``.

The package is built and installed offline (pip, no index, no build isolation) into a temporary folder that
only the subprocesses of these tests have on their path, so this test process's registries stay as shipped.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from semcomm.edge.gating import GATES
from semcomm.edge.selection import SELECTION_RULES

PLUGIN = Path(__file__).parent / "plugins" / "example"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A folder holding the installed plug-in (its module and its dist-info with the entry point)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"
    shutil.copytree(PLUGIN, source)  # pip builds in the tree it is given: not in the checkout
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    assert (target / "semcomm_example_plugin.py").exists()
    return target


def run_python(plugin_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_the_plugin_is_not_part_of_this_process():
    assert "least-important-k" not in SELECTION_RULES and "one-minus-p-max" not in GATES


API_CHECK = textwrap.dedent('''
    import json
    import warnings

    import torch

    warnings.simplefilter("error")  # the plug-in loads without a warning
    from semcomm.edge.encoder import EdgeEncoder, collaborative_predictions
    from semcomm.edge.gating import GATES, Gate
    from semcomm.edge.selection import SELECTION_RULES, selection_rules, takes_budget
    from semcomm.models import create_model
    from semcomm.server.decoder import ServerDecoder
    from semcomm.wire import v1

    report = {"rules": SELECTION_RULES.names(), "gates": GATES.names(), "budget": takes_budget("least-important-k")}
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    edge, server = create_model("semcomm_vit_edge_p4_32"), create_model("semcomm_vit_server_p4_32")
    rule = SELECTION_RULES.create("least-important-k", 8)
    gate = Gate("one-minus-p-max", 0.0)  # threshold 0: every image is offloaded
    encoder = EdgeEncoder(edge, rule, gate=gate)
    sent = encoder.encode(images)
    importance = encoder.analyze(images).importance["mean"]
    lowest = importance.topk(8, dim=1, largest=False).indices.sort(dim=1).values
    positions = [v1.unpack(s, 64, 48)[0] for s in sent.strings]
    server_logits = ServerDecoder(server, bf16=False).classify(sent.strings)
    report.update(
        label=rule.label, gate_label=gate.label, offloaded=sent.offloaded.tolist(), bits=sent.bits.tolist(),
        least_important=all(torch.equal(torch.as_tensor(p).long(), row) for p, row in zip(positions, lowest)),
        decoded=list(server_logits.shape), finite=bool(torch.isfinite(server_logits).all()),
        predictions=len(collaborative_predictions(sent, server_logits)),
        sweep=[r.label for r in selection_rules(["least-important-k", "threshold"], [4, 8])],
        gate_by_object=Gate(GATES.get("one-minus-p-max"), 0.25).label,
        kept=Gate("one-minus-p-max", 0.99).offload(encoder.analyze(images).logits).tolist())
    print(json.dumps(report))
''')


def test_the_plugins_rule_and_gate_are_registered_and_work_through_the_python_api(plugin_path):
    report = json.loads(run_python(plugin_path, "-c", API_CHECK).stdout.strip().splitlines()[-1])
    assert "least-important-k" in report["rules"] and {"top-k", "spread-top-k"} <= set(report["rules"])
    assert report["rules"] == sorted(report["rules"]) and report["budget"] is True
    assert report["gates"] == ["margin", "min_entropy", "one-minus-p-max", "shannon"]
    assert report["label"] == "least-important-k 8" and report["gate_label"] == "one-minus-p-max 0"
    assert report["offloaded"] == [True] * 6 and report["bits"] == [report["bits"][0]] * 6 and report["bits"][0] > 0
    assert report["least_important"]  # the strings carry exactly the 8 least important patches of each image
    assert report["decoded"] == [6, 10] and report["finite"] and report["predictions"] == 6
    assert report["sweep"] == ["least-important-k 4", "least-important-k 8", "threshold 0.0156"]
    assert report["gate_by_object"] == "one-minus-p-max 0.25"
    assert report["kept"] == [False] * 6  # 1 - p_max < 0.9 for 10 classes: a threshold of 0.99 keeps every image


def test_the_plugins_rule_runs_in_semcomm_sweep(plugin_path, tmp_path):
    """The command line takes the rule by its registered name (H5's sweep: choices from the registry)."""
    path = tmp_path / "sweep.json"
    run_python(plugin_path, "-m", "semcomm.cli", "sweep", "--limit", "40", "--rules", "least-important-k,top-k",
               "--budgets", "8", "--codec", "raw8", "--codecs", "none", "--no-twins", "--no-fusion",
               "--thresholds", "0.8", "--json", str(path))
    result = json.loads(path.read_text())
    labels = {point["label"] for point in result["points"]}
    assert {"least-important-k 8", "top-k 8"} <= labels
    rows = {(p["label"], p["gate"]): p for p in result["points"]}
    for label in ("least-important-k 8", "top-k 8"):
        assert rows[label, "none"]["offload_rate"] == 1 and rows[label, "none"]["patches_per_offloaded"] == 8
    # the same bits for the same number of raw patches; the least important patches are not the better choice
    assert rows["least-important-k 8", "none"]["bits_per_image"] == rows["top-k 8", "none"]["bits_per_image"]
    assert rows["least-important-k 8", "none"]["accuracy"] <= rows["top-k 8", "none"]["accuracy"]
