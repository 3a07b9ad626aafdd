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
    SHIPPED_DIR, USER_ZOO, Card, CheckpointError, ZooWarning, file_sha256, find_in_zoo, is_shipped, load_state,
    load_tensors, read_cards, save_tensors, user_zoo_dirs, verify_sha256, zoo_dirs, zoo_entries,
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


@pytest.mark.parametrize("text, message", [
    ('{"name": "toy", "size": "3"}', r"field 'size' must be an integer, got \"3\""),
    ('{"name": "toy", "size": true}', r"field 'size' must be an integer, got true"),
    ('{"name": "toy", "size": 1.5}', r"field 'size' must be an integer, got 1.5"),
    ('{"name": 7, "size": 1}', r"field 'name' must be a string, got 7"),
    ('{"name": "toy", "size": 1, "tags": {}}', r"field 'tags' must be a list, got \{\}"),
    ('{"name": "toy", "size": 1, "notes": null}', r"field 'notes' must be a string, got null"),
])
def test_a_card_field_of_another_type_is_named_with_its_file(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(CheckpointError, match=rf"card {tmp_path / 'bad.json'} is malformed: {message}"):
        ToyCard.read(tmp_path / "bad.json")


def test_a_card_that_cannot_be_read_is_named(tmp_path):
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(CheckpointError, match="folder.json cannot be read"):
        ToyCard.read(tmp_path / "folder.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(CheckpointError, match="binary.json is not valid JSON"):
        ToyCard.read(tmp_path / "binary.json")
    (tmp_path / "deep.json").write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match="deep.json is not valid JSON"):
        ToyCard.read(tmp_path / "deep.json")


def test_listing_skips_a_card_that_cannot_be_read_with_a_warning_naming_it(tmp_path):
    ToyCard("good", 1).write(tmp_path / "good.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.warns(ZooWarning, match=rf"skipped a zoo entry: card {tmp_path / 'bad.json'} is not valid JSON"):
        cards = read_cards(sorted(tmp_path.glob("*.json")), ToyCard.read)
    assert [card.name for card in cards] == ["good"]


def test_the_user_zoo_is_described_as_the_code_finds_it():
    assert USER_ZOO.startswith("$SEMCOMM_ZOO") and "$SEMCOMM_CACHE/zoo" in USER_ZOO
    assert "~/.cache/semcomm/zoo" in USER_ZOO
    assert user_zoo_dirs.__doc__ and "USER_ZOO" in user_zoo_dirs.__doc__


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
    assert checked == 5 + 4 + 6  # models, codec pairs (dct, latent, hyperlatent, jscc), backends
    assert is_shipped(SHIPPED_DIR) and is_shipped(SHIPPED_DIR / "codecs") and not is_shipped(SHIPPED_DIR.parent)


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.pop("weight"), r"missing \['weight'\]"),
    (lambda h: h.update(weight="0.3"), r"field 'weight' must be a number, got \"0.3\""),
    (lambda h: h.update(weight=2.0), r"field 'weight' must be a fusion weight in \[0, 1\], got 2.0"),
    (lambda h: h.update(step=0), "field 'step' must be a positive number of bits"),
    (lambda h: h.update(counts=[5, -1, 3]), "field 'counts' must be a non-empty list of integers"),
    (lambda h: h.update(counts=[]), "field 'counts' must be a non-empty list of integers"),
    (lambda h: h.update(code_lengths=[9, 9, 9]), "field 'code_lengths' is not the code its counts give"),
    (lambda h: h.update(edge="vit-edge-imagenette"), "field 'edge' is 'vit-edge-imagenette', but the file is "
                                                     "hint-vit-edge-cifar10.json"),
])
def test_a_hint_file_error_names_the_file_and_the_field(tmp_path, monkeypatch, edit, message):
    from semcomm.rate.zoo import load_hint

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    path = tmp_path / "codecs" / "hint-vit-edge-cifar10.json"
    path.parent.mkdir()
    hint = json.loads((SHIPPED_DIR / "codecs" / path.name).read_text())
    edit(hint)
    path.write_text(json.dumps(hint))
    with pytest.raises(CheckpointError, match=rf"card {path} is malformed: .*{message}"):
        load_hint("vit-edge-cifar10")


def test_a_model_given_by_its_card_has_the_hint_coder_of_its_name(tmp_path, monkeypatch):
    from semcomm.rate.zoo import hint_name, hint_path, load_hint, save_hint

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "zoo"))
    shipped = load_hint("vit-edge-cifar10")
    card = tmp_path / "elsewhere" / "my-edge.json"
    assert hint_name(card) == hint_name(str(card)) == hint_name("my-edge") == "my-edge"
    written = save_hint(str(card), shipped)
    assert written == tmp_path / "zoo" / "codecs" / "hint-my-edge.json" == hint_path(card)
    assert json.loads(written.read_text())["edge"] == "my-edge"
    loaded = load_hint(str(card))
    assert loaded.counts.tolist() == shipped.counts.tolist() and loaded.code == shipped.code
