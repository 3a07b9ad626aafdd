"""The machine a benchmark ran on, for its report: the CPU's model name as ``lscpu`` gives it."""
from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """``lscpu``'s "Model name" (e.g. ``Intel(R) Xeon(R) Processor``), else what :mod:`platform` knows."""
    try:
        line = next(line for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                    if line.startswith("Model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
