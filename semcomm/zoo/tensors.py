"""Tensors files (safetensors): written atomically, checked against their card's SHA-256, loaded with every
float finite, and fitted into a module."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from semcomm.zoo.errors import CheckpointError


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`CheckpointError` unless ``path`` hashes to ``expected`` (a card's record, hex)."""
    if not expected:
        raise CheckpointError(f"the card of {path} records no SHA-256; write the checkpoint again")
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(f"{path} is corrupted or was replaced: its SHA-256 {actual[:16]}... does not match "
                              f"its card's {expected[:16]}...")


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> str:
    """Write ``tensors`` (made contiguous) as a safetensors file, creating its folder; readers never see a
    half-written file. Returns the file's hex SHA-256, for its card."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    return file_sha256(path)


def load_tensors(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, every float finite; with ``sha256`` (a card's record) the file's
    SHA-256 is verified first (:func:`verify_sha256`).

    Raises:
        CheckpointError: naming the file that is missing, corrupted, not safetensors or holds NaN / infinities.
    """
    path = Path(path)
    if sha256 is not None:
        verify_sha256(path, sha256)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted or not a safetensors file: {err}") from err
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v.float()).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite values in {bad[:3]}"
                              f"{'...' if len(bad) > 3 else ''}")
    return tensors


def load_state(module: nn.Module, state: dict[str, torch.Tensor], misfit: str) -> None:
    """Load ``state`` into ``module``, each tensor cast to the dtype of the module's own; a state that does not
    fit (missing, unexpected or misshapen tensors) is a :class:`CheckpointError` ``"<misfit>: <why>"``."""
    own = module.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{misfit}: {err}") from err
