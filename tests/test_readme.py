"""The README's Python snippets run as written (on fewer images), in a fresh interpreter.

The notebook, link and plug-in snippets run in order in one namespace, as a reader pastes them into a
notebook; the backends, channels and adapter snippets have their own tests (test_backends_ray.py,
test_channels_*.py, test_custom_adapter.py). A fresh interpreter keeps the snippet's plug-in registration
out of this process's registries.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SMALLER = {"limit=1000": "limit=48", "conditions=(0, 1, 2, 4)": "conditions=(2,)"}


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def find(blocks: list[str], marker: str) -> str:
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README: {len(found)} Python snippets contain {marker!r}"
    return found[0]


def test_the_readme_snippets_run(tmp_path):
    blocks = snippets()
    code = "\n".join(find(blocks, marker) for marker in ("collaborative_predictions(sent", "over_link(sent",
                                                         "# my_package/rules.py"))
    for old, new in SMALLER.items():
        assert old in code, f"the README's snippets no longer contain {old!r}: update SMALLER"
        code = code.replace(old, new)
    code += "\nimport matplotlib\nmatplotlib.use('Agg')\nassert 'least-important-k' in SELECTION_RULES.names()\n"
    script = tmp_path / "readme.py"
    script.write_text("import matplotlib\nmatplotlib.use('Agg')\n" + code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"README snippets failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
