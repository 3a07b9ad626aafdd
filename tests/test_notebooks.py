"""The notebooks in notebooks/ run top to bottom at small sizes (CI, on in-memory copies), and each is committed
with the outputs of a run at its full setting (`make notebooks`: notebooks/execute.py)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell: a hang guard with room for a machine loaded by other work
DRAWS = re.compile(r"\bplt\.show\(\)|\bplot_\w+\(")  # a cell that draws a figure

_spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOKS / "execute.py")
execute_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_script)


def test_notebooks_exist():
    assert {p.name for p in PATHS} >= {"quickstart.ipynb", "frontier.ipynb", "channels.ipynb", "iaq.ipynb",
                                       "own_data_and_vit.ipynb"}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path: Path):
    notebook = nbformat.read(path, as_version=4)  # an in-memory copy: the committed file is never written
    try:
        seconds = execute_script.execute(notebook, path.name, small=True, timeout=CELL_TIMEOUT)
    except execute_script.NotebookFailed as failure:  # names the cell and carries its traceback
        pytest.fail(str(failure), pytrace=False)
    print(f"{path.name}: {seconds:.1f} s")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"


def test_a_failing_cell_is_named():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A"), nbformat.v4.new_code_cell("x = 1"),
                                               nbformat.v4.new_code_cell("# why\nraise ValueError('boom')")])
    with pytest.raises(execute_script.NotebookFailed, match=r"^demo\.ipynb: cell 2 \(raise ValueError\('boom'\)\) "
                       r"raised ValueError: boom\n"):
        execute_script.execute(notebook, "demo.ipynb", small=True, timeout=CELL_TIMEOUT)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_committed_with_full_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    mark = notebook.metadata.get("semcomm", {})
    assert mark.get("setting") == "full", f"{path.name} was not executed at its full setting (make notebooks)"
    assert {"executed", "seconds", "machine", "torch"} <= set(mark), f"{path.name}: incomplete mark {mark}"
    code = [(index, cell) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for _, cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: code cells not executed in order: {counts}"
    for index, cell in code:
        outputs = cell.get("outputs", [])
        errors = [o for o in outputs if o.get("output_type") == "error"]
        assert not errors, f"{path.name} cell {index} stored an error: {errors[0].get('ename')}"
        if DRAWS.search(cell.source):
            images = [o for o in outputs if "image/png" in o.get("data", {})]
            assert images, f"{path.name} cell {index} draws a figure but stored no image"
