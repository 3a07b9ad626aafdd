"""The notebooks in notebooks/ run top to bottom (small sizes) and are committed without outputs."""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell: a hang guard with room for a machine loaded by other work


def test_notebooks_exist():
    assert {p.name for p in PATHS} >= {"quickstart.ipynb", "frontier.ipynb", "channels.ipynb", "iaq.ipynb",
                                       "own_data_and_vit.ipynb"}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path: Path, monkeypatch):
    # the kernel inherits this environment; "python3" resolves to the interpreter running pytest
    # (jupyter_client replaces a kernelspec's bare "python" with sys.executable)
    monkeypatch.setenv("SEMCOMM_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    started = time.time()
    try:
        client.execute(cwd=str(NOTEBOOKS))
    except CellExecutionError as error:  # names the cell and carries its traceback
        pytest.fail(f"{path.name}: a cell raised\n{error}", pytrace=False)
    print(f"{path.name}: {time.time() - started:.1f} s")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_committed_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {index} has stored outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {index} has an execution count"
