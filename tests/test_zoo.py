"""The zoo's storage: cards as JSON, tensors files checked by SHA-256 and for finite values, the user zoo searched
before the shipped checkpoints, and every shipped checkpoint intact where the package keeps it."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.zoo import (
    SHIPPED_DIR, Card, CheckpointError, file_sha256, find_in_zoo, is_shipped, load_state, load_tensors, save_tensors,
    user_zoo_dirs, verify_sha256, zoo_dirs, zoo_entries,
)


@dataclass
class ToyCard(Card):
    name: str
    size: int
    notes: str = ""
    tags: list = field(default_factory=list)
    directory: Path | None = field(default=None, repr=False, compare=False)


def test_a_card_round_trips_without_its_directory(tmp_path):
    card = ToyCard("toy", 3, tags=["a"])
    assert card.write(tmp_path / "toy.json") == tmp_path / "toy.json" and card.directory == tmp_path
    assert json.loads((tmp_path / "toy.json").read_text()) == {"name": "toy", "size": 3, "notes": "", "tags": ["a"]}
    assert (tmp_path / "toy.json").read_text().endswith("}\n")  # indented JSON and a final newline
    read = ToyCard.read(tmp_path / "toy.json")
    assert read == card and read.directory == tmp_path
    assert not list(tmp_path.glob("*.jsontmp"))  # written atomically, nothing left behind


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not valid JSON"),
    ('{"name": "toy"}', r"malformed: unknown fields \[\], missing \['size'\]"),
    ('{"name": "toy", "size": 1, "colour": "blue"}', r"malformed: unknown fields \['colour'\], missing \[\]"),
    ('["toy", 1]', r"malformed: unknown fields \[\], missing \['name', 'size'\]"),
])
def test_a_card_that_does_not_fit_is_named(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        ToyCard.read(tmp_path / "bad.json")


def test_tensors_are_written_atomically_and_verified_by_sha256(tmp_path):
    path = tmp_path / "deep" / "t.safetensors"
    tensors = {"w": torch.arange(6.0).view(2, 3).t(), "n": torch.tensor([1, 2], dtype=torch.int64)}  # w not contiguous
    sha = save_tensors(tensors, path)
    assert sha == file_sha256(path) and not list(path.parent.glob("*.tmp"))
    loaded = load_tensors(path, sha)
    assert torch.equal(loaded["w"], tensors["w"]) and torch.equal(loaded["n"], tensors["n"])
    with pytest.raises(CheckpointError, match="records no SHA-256"):
        load_tensors(path, "")
    with pytest.raises(CheckpointError, match="corrupted or was replaced: its SHA-256 .* does not match its card's"):
        verify_sha256(path, "0" * 64)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tensors(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="corrupted or not a safetensors file"):
        load_tensors(tmp_path / "junk.safetensors")
    save_tensors({"w": torch.tensor([1.0, float("inf")])}, tmp_path / "inf.safetensors")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in \['w'\]"):
        load_tensors(tmp_path / "inf.safetensors")


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.text("abcdefgh.", min_size=1, max_size=8),
                       st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=12), min_size=1, max_size=4))
def test_any_finite_tensors_round_trip_bit_exactly(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("t") / "x.safetensors"
    tensors = {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}
    loaded = load_tensors(path, save_tensors(tensors, path))
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_a_state_is_cast_to_the_module_and_a_misfit_is_named():
    module = torch.nn.Linear(3, 2)
    state = {k: v.half() for k, v in torch.nn.Linear(3, 2).state_dict().items()}
    load_state(module, state, "toy")
    assert module.weight.dtype == torch.float32 and torch.equal(module.weight, state["weight"].float())
    with pytest.raises(CheckpointError, match=r"^toy: [\s\S]*size mismatch"):
        load_state(torch.nn.Linear(4, 2), state, "toy")


def test_the_user_zoo_comes_first_one_entry_per_name(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("SEMCOMM_ZOO", f"{first}{os.pathsep}{second}")
    assert user_zoo_dirs() == [first, second]
    assert zoo_dirs("codecs") == [first / "codecs", second / "codecs", SHIPPED_DIR / "codecs"]
    for root, text in ((second, "second"), (first, "first")):
        (root / "codecs").mkdir(parents=True)
        (root / "codecs" / "mine.json").write_text(text)
    assert find_in_zoo("mine.json", "codecs") == first / "codecs" / "mine.json"
    assert find_in_zoo("nothing.json", "codecs") is None
    entries = zoo_entries("*.json", "codecs")
    assert entries["mine"] == first / "codecs" / "mine.json" and list(entries) == sorted(entries)
    assert entries["dct-cifar10"] == SHIPPED_DIR / "codecs" / "dct-cifar10.json"
    monkeypatch.delenv("SEMCOMM_ZOO")
    monkeypatch.setenv("SEMCOMM_CACHE", str(tmp_path / "cache"))
    assert user_zoo_dirs() == [tmp_path / "cache" / "zoo"]


def test_every_shipped_checkpoint_is_intact_where_the_package_keeps_it():
    cards = [*SHIPPED_DIR.glob("*.json"), *SHIPPED_DIR.glob("codecs/*.json"), *SHIPPED_DIR.glob("backends/*/*.json")]
    checked = 0
    for card in cards:
        data = json.loads(card.read_text())
        if "sha256" not in data:  # a hint coder: no tensors file
            continue
        backend = card.name == "backend.json"
        weights = card.parent / "weights.safetensors" if backend else card.with_suffix(".safetensors")
        verify_sha256(weights, data["sha256"])
        checked += 1
    assert checked == 5 + 2 + 6  # models, codec pairs, backends
    assert is_shipped(SHIPPED_DIR) and is_shipped(SHIPPED_DIR / "codecs") and not is_shipped(SHIPPED_DIR.parent)
