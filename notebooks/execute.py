"""Re-execute the notebooks at their full setting and store their outputs (figures included) in place.

    .venv/bin/python notebooks/execute.py [NAMES...]     (or `make notebooks`)

NAMES are notebook names in this folder, with or without ``.ipynb`` (default: every notebook). Each one
runs top to bottom in a fresh kernel of this interpreter, with this folder as working directory and
``SEMCOMM_NOTEBOOK_SMALL`` unset; a notebook is written back only when every cell ran, its metadata
``semcomm`` key recording the setting, when it ran, for how long, and on which machine and torch. The
first failing cell stops the run, naming the notebook and the cell, and leaves that file as it was.

tests/test_notebooks.py runs the same ``execute`` with ``small=True`` on in-memory copies (CI), and
checks that every committed notebook carries the outputs of a full run.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import nbclient
import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

FOLDER = Path(__file__).resolve().parent
SMALL_VARIABLE = "SEMCOMM_NOTEBOOK_SMALL"  # read by each notebook's first cell
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in a kernel's traceback
CELL_TIMEOUT = 7200  # seconds per cell at the full setting: a hang guard (the longest cell takes about 35 min)


class NotebookFailed(RuntimeError):
    """A cell raised, ran past its timeout or lost its kernel: the message names the notebook, the cell and why."""


def kernel_environment(small: bool) -> dict[str, str]:
    """This process's environment for the kernel: small or full sizes, figures as inline PNG outputs."""
    env = {key: value for key, value in os.environ.items() if key != SMALL_VARIABLE}
    if small:
        env[SMALL_VARIABLE] = "1"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # no debugger warning on stderr for frozen modules
    # tqdm.auto in a kernel without ipywidgets warns on import (the notebooks draw no progress bars)
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), "ignore:IProgress not found"]))
    return env


def _first_line(cell: nbformat.NotebookNode) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
    return lines[0][:60] if lines else ""


def execute(notebook: nbformat.NotebookNode, name: str, small: bool, timeout: int | None = CELL_TIMEOUT,
            progress: bool = False) -> float:
    """Run every cell of ``notebook`` in place (outputs replaced) and return the seconds it took.

    ``name`` names the notebook in messages; ``timeout`` is the limit per cell in seconds (None: none).
    Raises NotebookFailed naming the cell (index among all cells, and its first line) when one raises, runs past
    ``timeout`` or kills the kernel.
    """
    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    current = {"index": None, "started": 0.0}

    def on_start(cell, cell_index):
        current.update(index=cell_index, started=time.time())
        if progress and cell.cell_type == "code":
            print(f"  cell {cell_index} ({code.index(cell_index) + 1}/{len(code)} code): {_first_line(cell)}",
                  end="", flush=True)

    def on_executed(cell, cell_index, execute_reply):
        if progress:
            print(f"  ... {time.time() - current['started']:.1f} s", flush=True)

    # the kernel is "python3": jupyter_client replaces its spec's bare "python" with this interpreter
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                                     coalesce_streams=True,
                                     resources={"metadata": {"path": str(FOLDER)}},
                                     on_cell_start=on_start, on_cell_executed=on_executed)
    started = time.time()
    try:
        client.execute(cwd=str(FOLDER), env=kernel_environment(small))
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:  # the first carries the traceback
        if progress:
            print("  ... failed", flush=True)
        index = current["index"]
        what = (f"raised {error.ename}: {error.evalue}" if isinstance(error, CellExecutionError)
                else f"failed ({type(error).__name__})")
        raise NotebookFailed(f"{name}: cell {index} ({_first_line(notebook.cells[index])}) {what}\n"
                             + ANSI.sub("", str(error))) from None
    return time.time() - started


def machine() -> str:
    """The processor and its logical cores, in words."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def full_run_mark(seconds: float) -> dict:
    """What the notebook's metadata ``semcomm`` key records of a full run."""
    return {
        "setting": "full",
        "executed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "machine": machine(),
        "python": platform.python_version(),
        "torch": version("torch"),
    }


def notebook_paths(names: list[str]) -> list[Path]:
    """The notebooks named (every one in this folder when none is); exits naming an unknown name."""
    every = sorted(FOLDER.glob("*.ipynb"))
    if not names:
        return every
    paths = [FOLDER / (name if name.endswith(".ipynb") else f"{name}.ipynb") for name in names]
    unknown = [p.name for p in paths if p not in every]
    if unknown:
        sys.exit(f"execute.py: no notebook {', '.join(unknown)} in {FOLDER} "
                 f"(there are: {', '.join(p.stem for p in every)})")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="notebooks to run (default: all)")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT,
                        help=f"seconds per cell before the run is stopped (default {CELL_TIMEOUT})")
    args = parser.parse_args(argv)
    paths = notebook_paths(args.names)
    for number, path in enumerate(paths, start=1):
        print(f"[{number}/{len(paths)}] {path.name} at its full setting", flush=True)
        notebook = nbformat.read(path, as_version=4)
        try:
            seconds = execute(notebook, path.name, small=False, timeout=args.timeout, progress=True)
        except NotebookFailed as failure:
            print(failure, file=sys.stderr)
            print(f"{path.name} left unchanged; stopped", file=sys.stderr)
            return 1
        notebook.metadata["semcomm"] = full_run_mark(seconds)
        nbformat.validate(notebook)
        nbformat.write(notebook, path)
        print(f"[{number}/{len(paths)}] {path.name} written: {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
