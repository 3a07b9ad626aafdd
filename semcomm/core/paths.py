"""Where semcomm keeps what it computes once: decoded data, edge passes, training runs, the user zoo."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$SEMCOMM_CACHE`` or ``~/.cache/semcomm``."""
    return Path(os.environ.get("SEMCOMM_CACHE", Path.home() / ".cache" / "semcomm"))
