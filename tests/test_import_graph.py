"""The house's rules, checked on the import graph of the code itself (every import, lazy ones included).

The folders of ``semcomm`` follow one image from pixels to a class: foundations (``core``,
``inference``), the zoo's storage, data and models, then the flow itself: ``edge`` (importance,
selection, gate, encoder), ``wire`` (every bit format), ``rate`` (levels, entropy coding, the codecs
that write those formats), ``transport`` (links), ``server`` (decoder, backends). ``train`` and
``experiments`` stand on top of the library, the command line on top of everything.

Rules:
1. a module imports only from its own stage or an earlier one (never from a later stage of the flow);
2. the library core never imports ``train`` or ``experiments``, which do not import each other;
3. no import cycles between modules;
4. ``channels`` imports nothing from ``semcomm``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {  # top-level part of semcomm -> stage of the flow (lower: earlier)
    "core": 0, "inference": 0,
    "zoo": 1,
    "data": 2, "models": 2,
    "edge": 3,
    "wire": 4,
    "rate": 5,
    "transport": 6,
    "server": 7,
    "train": 8, "experiments": 8,
    "cli": 9,
}
ON_TOP = {"train", "experiments", "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``semcomm``/``channels`` it imports (anywhere in its body)."""
    modules = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                found = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in found:  # the longest prefix that is a module of ours
                while target and target not in modules and target.split(".")[0] in ("semcomm", "channels"):
                    target = target.rpartition(".")[0]
                if target in modules and target != name:
                    targets.add(target)
            for target in found:
                if target.split(".")[0] in ("semcomm", "channels") and target.split(".")[0] != package:
                    targets.add(target.split(".")[0])
        graph[name] = targets
    return graph


def part(module: str) -> str:
    """The top-level part of ``semcomm`` a module belongs to (``""`` for the package's face)."""
    return module.split(".")[1] if module.count(".") else ""


@pytest.fixture(scope="module")
def graph():
    return import_graph("semcomm")


def test_every_part_of_semcomm_has_a_stage(graph):
    unknown = sorted({part(m) for m in graph} - set(STAGES) - {""})
    assert not unknown, f"parts of semcomm without a stage in the house's rules: {unknown}"


def test_no_module_imports_from_a_later_stage(graph):
    wrong = []
    for module, targets in graph.items():
        if not part(module):  # the package's face re-exports the public API of the library core
            wrong += [f"semcomm -> {t}" for t in targets if part(t) in ON_TOP]
            continue
        wrong += [f"{module} ({part(module)}) -> {t} ({part(t)})" for t in targets
                  if t.startswith("semcomm.") and STAGES[part(t)] > STAGES[part(module)]]
    assert not wrong, "imports from a later stage of the flow:\n" + "\n".join(sorted(wrong))


def test_library_core_never_imports_train_or_experiments(graph):
    wrong = [f"{m} -> {t}" for m, targets in graph.items() for t in targets
             if part(t) in ("train", "experiments") and part(m) != part(t) and part(m) != "cli"]
    assert not wrong, "the library core (or one top part) imports train/experiments:\n" + "\n".join(sorted(wrong))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles(graph):
    # a package's face importing its own members is not a cycle of the code
    edges = {m: {t for t in ts if not (t == m.rpartition(".")[0] and ROOT.joinpath(*t.split("."), "__init__.py").exists())}
             for m, ts in graph.items()}
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_rules_catch_a_violation():
    bad = {"semcomm.edge.x": {"semcomm.rate.y"}, "semcomm.rate.y": {"semcomm.edge.x"}}
    assert cycles(bad) == [["semcomm.edge.x", "semcomm.rate.y"]]
    assert STAGES[part("semcomm.rate.y")] > STAGES[part("semcomm.edge.x")]


def test_channels_stands_alone():
    graph = import_graph("channels")
    wrong = [f"{m} -> {t}" for m, ts in graph.items() for t in ts if t.startswith("semcomm")]
    assert not wrong, "channels imports semcomm:\n" + "\n".join(wrong)
