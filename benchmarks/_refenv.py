"""Reference libraries for the channels benchmarks, each in its own virtual environment.

A benchmark compares ``channels`` (run in-process, in the project's venv) with a reference
library that may need other versions of numpy or torch, so every reference library lives in a
venv of its own under ``~/.cache/semcomm/bench-venvs/NAME`` (or ``$SEMCOMM_BENCH_VENVS/NAME``).
:func:`ensure_venv` creates it on first use and reuses it afterwards: a stamp file records the
install recipe, and a venv whose stamp differs from the current recipe is rebuilt.

:func:`run_worker` runs a benchmark script again under the reference venv's interpreter as
``python SCRIPT --worker IN.json OUT.json`` and returns the JSON it wrote; the script's worker
mode imports only the reference library (never ``channels``).  Large arrays go through ``.npy``
files in the same temporary directory (see :func:`save_arrays` / :func:`load_arrays`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(os.environ.get("SEMCOMM_BENCH_VENVS", "~/.cache/semcomm/bench-venvs")).expanduser()

# Each recipe is a list of pip invocations (argument lists after `pip install`), run in order.
RECIPES: Dict[str, List[List[str]]] = {
    # CommPy is pure Python on numpy/scipy/matplotlib/sympy.  numpy is pinned to the project's
    # version so that CommPy's numpy calls cost what they cost in the project's environment.
    "commpy": [
        ["scikit-commpy==0.8.0", "numpy==1.26.4"],
    ],
    # Sionna 2.x (PyTorch backend).  Its wheel also requires `sionna-rt` (the ray tracer: mitsuba,
    # drjit, ipywidgets, pythreejs), which `sionna.phy` never imports, so sionna is installed with
    # --no-deps and the dependencies of `sionna.phy` are listed explicitly (from the wheel's
    # metadata: numpy>=2.2.6, scipy>=1.15.3, h5py>=3.15.1, matplotlib>=3.10.8,
    # importlib-resources>=6.5.2, torch>=2.9.1).  torch==2.13.0 is the CPU build found in the
    # machine's local wheel directory (pip's find-links); elsewhere pip fetches it from PyPI.
    "sionna": [
        ["torch==2.13.0"],
        ["numpy>=2.2.6", "scipy>=1.15.3", "h5py>=3.15.1", "matplotlib>=3.10.8", "importlib-resources>=6.5.2"],
        ["--no-deps", "sionna==2.2.0"],
    ],
}


def venv_python(name: str) -> Path:
    return ROOT / name / "bin" / "python"


def ensure_venv(name: str, log=print) -> Path:
    """Create (or reuse) the venv for reference library ``name``; returns its python."""
    recipe = RECIPES[name]
    home = ROOT / name
    stamp = home / ".recipe.json"
    py = venv_python(name)
    want = json.dumps(recipe)
    if py.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text())["recipe"] == want:
                return py
        except (ValueError, KeyError):
            pass
    if home.exists():
        log(f"# rebuilding the {name} venv at {home} (recipe changed or install incomplete)")
        shutil.rmtree(home)
    log(f"# creating the {name} venv at {home} (first run only)")
    t0 = time.perf_counter()
    home.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(home)], check=True)
    for args in recipe:
        log(f"#   pip install {' '.join(args)}")
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *args], check=True)
    seconds = time.perf_counter() - t0
    stamp.write_text(json.dumps({"recipe": want, "install_seconds": round(seconds, 1),
                                 "created": time.strftime("%Y-%m-%d %H:%M:%S")}))
    log(f"# {name} venv ready in {seconds:.0f} s")
    return py


def venv_info(name: str) -> dict:
    """The stamp of an existing venv (recipe, install time in seconds, creation date)."""
    stamp = ROOT / name / ".recipe.json"
    return json.loads(stamp.read_text()) if stamp.exists() else {}


def save_arrays(directory: Path, **arrays) -> None:
    import numpy as np

    for key, value in arrays.items():
        np.save(Path(directory) / f"{key}.npy", np.ascontiguousarray(value))


def load_arrays(directory: Path, *keys: str) -> dict:
    import numpy as np

    return {key: np.load(Path(directory) / f"{key}.npy") for key in keys}


def run_worker(name: str, script: str, payload: dict, threads: int, arrays: Optional[dict] = None,
               timeout: Optional[float] = None) -> dict:
    """Run ``script --worker IN OUT`` in the ``name`` venv with ``threads`` threads; returns OUT's JSON.

    ``arrays`` (name -> numpy array) are saved as ``.npy`` files in the directory given to the
    worker as ``payload["dir"]``; the worker may leave arrays there too, returned under
    ``result["arrays"]`` for the keys it lists in ``result["array_keys"]``.
    """
    py = ensure_venv(name)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        tmp = Path(tmp)
        if arrays:
            save_arrays(tmp, **arrays)
        payload = dict(payload, dir=str(tmp), threads=threads)
        (tmp / "in.json").write_text(json.dumps(payload))
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
        env.pop("PYTHONPATH", None)
        subprocess.run([str(py), str(script), "--worker", str(tmp / "in.json"), str(tmp / "out.json")],
                       check=True, env=env, timeout=timeout)
        result = json.loads((tmp / "out.json").read_text())
        keys = result.get("array_keys", [])
        if keys:
            result["arrays"] = load_arrays(tmp, *keys)
        return result


def worker_io(argv: List[str]):
    """In worker mode: (payload dict, function to write the result dict)."""
    i = argv.index("--worker")
    in_path, out_path = argv[i + 1], argv[i + 2]
    payload = json.loads(Path(in_path).read_text())

    def write(result: dict) -> None:
        Path(out_path).write_text(json.dumps(result))

    return payload, write


# ----------------------------------------------------------------------------- shared bench helpers

def cpu_name() -> str:
    """platform.processor(), or the model name from /proc/cpuinfo where that is empty (Linux)."""
    import platform

    name = platform.processor()
    if not name:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return name or platform.machine()


def _exe() -> str:
    rel = os.path.relpath(sys.executable)
    return sys.executable if rel.startswith("..") else rel


def header(title: str, extra: Optional[List[str]] = None) -> str:
    """Markdown preamble: command, date, machine, cores, load, python/torch/numpy versions."""
    import platform

    import numpy
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines = [
        f"### {title}",
        "",
        f"- command: `{' '.join([_exe()] + sys.argv)}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, "
        f"load average at start {load}",
        f"- ours: python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"torch threads as listed per row",
    ]
    lines += [f"- {e}" for e in (extra or [])]
    return "\n".join(lines)


def best_time(fn, repeats: int, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; best and median seconds."""
    import statistics

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"best": min(times), "median": statistics.median(times), "runs": len(times)}


def md_table(head: List[str], rows: List[List]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def parse_threads(text: str) -> List[int]:
    return [int(t) for t in str(text).split(",") if t.strip()]


def add_common_options(parser, repeats: int, quick_repeats: int, timed: str = "timed calls per row") -> None:
    """--quick, --threads, --repeats and --seed, shared by the channels benchmarks."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (numbers not meaningful)")
    parser.add_argument("--threads", default=None, help="torch thread counts, comma-separated (default 1,2; quick 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"{timed}, best reported (default {repeats}; quick {quick_repeats})")
    parser.add_argument("--seed", type=int, default=1)
    parser.set_defaults(default_repeats=(repeats, quick_repeats))


def common_settings(args) -> tuple:
    """(thread counts, repeats) from the options of :func:`add_common_options`."""
    threads = parse_threads(args.threads or ("1" if args.quick else "1,2"))
    return threads, args.repeats or args.default_repeats[bool(args.quick)]


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, plain notation where reasonable."""
    if x == 0 or x != x:
        return str(x)
    if 1e-3 <= abs(x) < 1e6:
        return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"
    return f"{x:.{digits - 1}e}"


def mc_sweep(step, ebnos: List[float], batch: int, target_block_errors: int, max_blocks: int,
             min_bler: float) -> List[dict]:
    """Monte-Carlo BER/BLER over Eb/N0 points, with one stopping rule for every library.

    ``step(ebno_db, batch) -> (bit_errors, info_bits, block_errors)`` simulates ``batch`` blocks.
    A point stops once it has ``target_block_errors`` block errors or ``max_blocks`` blocks; the
    sweep stops after the first point with no block error or a BLER below ``min_bler``.
    """
    points = []
    for ebno in ebnos:
        t0 = time.perf_counter()
        be = bits = ble = blocks = 0
        while ble < target_block_errors and blocks < max_blocks:
            e, nb, b = step(float(ebno), batch)
            be, bits, ble, blocks = be + int(e), bits + int(nb), ble + int(b), blocks + batch
        points.append({"ebno": float(ebno), "bit_errors": be, "bits": bits, "block_errors": ble,
                       "blocks": blocks, "seconds": time.perf_counter() - t0})
        if ble == 0 or ble / blocks < min_bler:
            break
    return points


def ebno_at(points: List[dict], key: str, target: float) -> Optional[float]:
    """Eb/N0 (dB) where the error rate ``key`` ('ber' or 'bler') crosses ``target``.

    Linear interpolation of log10(rate) between the two points that bracket the target; None
    if no pair of points with non-zero rates brackets it.
    """
    import math

    def rate(p):
        return p["bit_errors"] / p["bits"] if key == "ber" else p["block_errors"] / p["blocks"]

    for a, b in zip(points, points[1:]):
        ra, rb = rate(a), rate(b)
        if ra >= target >= rb and ra > 0 and rb > 0 and ra != rb:
            la, lb, lt = math.log10(ra), math.log10(rb), math.log10(target)
            return a["ebno"] + (la - lt) / (la - lb) * (b["ebno"] - a["ebno"])
    return None
