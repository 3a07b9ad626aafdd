"""Hostile zoo files: whatever a card, a hint file or a tensors file holds, loading it gives the model it describes or
a documented error naming the file (and, for a card, the field), and listing the zoo skips a bad file with a
warning naming it; never another exception, never a corrupt model loaded silently.

Each property states what must hold; the number of cases each tries is in its ``settings``.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from semcomm.models.zoo import ModelCard, create_model, list_checkpoints
from semcomm.rate.zoo import HintCard, load_hint
from semcomm.wire.bits import BitReader, BitWriter
from semcomm.zoo import SHIPPED_DIR, CheckpointError, ZooWarning, file_sha256, load_tensors, read_cards

EDGE = "vit-edge-cifar10"
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
card_fields = [name for name in ModelCard.__dataclass_fields__ if name != "directory"]
card_texts = st.one_of(
    st.just(json.dumps({**json.loads((SHIPPED_DIR / f"{EDGE}.json").read_text()), "name": "mine"})),  # a valid card
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),  # anything, JSON or not
    json_values.map(json.dumps),  # any JSON document
    st.fixed_dictionaries({}, optional={name: json_values for name in card_fields}).map(json.dumps),  # card-shaped
)


def mutations(fields: list[str]):
    """Edits of a card's JSON object: each field deleted, replaced by any JSON value, or an unknown field added."""
    edit = st.one_of(st.just(("delete", None)), st.tuples(st.just("replace"), json_values))
    return st.tuples(st.dictionaries(st.sampled_from(fields), edit, min_size=1, max_size=3),
                     st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in fields), json_values,
                                     max_size=1))


def mutate(data: dict, mutation) -> tuple[dict, set[str]]:
    """The mutated copy of ``data`` and the fields the mutation touched."""
    edits, extra = mutation
    data = dict(data)
    for name, (action, value) in edits.items():
        if action == "delete":
            data.pop(name, None)
        else:
            data[name] = value
    data.update(extra)
    return data, set(edits) | set(extra)


@pytest.fixture(scope="module")
def user_zoo(tmp_path_factory):
    """A user zoo holding a copy of the shipped CIFAR-10 edge (weights and card): each case rewrites a file."""
    folder = tmp_path_factory.mktemp("zoo")
    for suffix in (".json", ".safetensors"):
        shutil.copy(SHIPPED_DIR / f"{EDGE}{suffix}", folder / f"{EDGE}{suffix}")
    (folder / "codecs").mkdir()
    return folder


@pytest.fixture(scope="module")
def shipped_edge():
    return create_model(EDGE)


def _same_weights(model, reference) -> bool:
    return all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


@settings(max_examples=150, **SETTINGS)
@given(text=card_texts)
def test_any_card_text_is_a_valid_card_or_an_error_naming_the_file(tmp_path_factory, text):
    """Whatever a card file holds, reading it gives a card whose every field has its type and passes its checks, or
    a CheckpointError naming the file; listing it warns (naming the file) exactly when reading it fails."""
    path = tmp_path_factory.mktemp("card") / "mine.json"
    path.write_text(text, encoding="latin-1")
    try:
        card = ModelCard.read(path)
    except CheckpointError as err:
        event("refused")
        assert str(path) in str(err)
        with pytest.warns(ZooWarning, match=f"skipped a zoo entry: card {path}"):
            assert read_cards([path], ModelCard.read) == []
        return
    event("loaded")
    assert card.name == "mine" and card.problems(path) == [] and isinstance(card.num_classes, int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_cards([path], ModelCard.read) == [card]


@settings(max_examples=40, **SETTINGS)
@given(mutation=mutations(card_fields))
def test_a_mutated_model_card_loads_the_same_model_or_names_the_file(user_zoo, shipped_edge, mutation):
    """A shipped card with fields deleted, replaced by any JSON value or added: create_model gives exactly the
    shipped weights (the mutation was harmless, e.g. notes) or a CheckpointError naming the card and a field it
    touched, or naming the weights (they do not fit, or are not the card's SHA-256); listing never raises, warns
    about the card exactly when it cannot be read, and keeps every other checkpoint."""
    card_path = user_zoo / f"{EDGE}.json"
    data, touched = mutate(json.loads((SHIPPED_DIR / f"{EDGE}.json").read_text()), mutation)
    card_path.write_text(json.dumps(data))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEMCOMM_ZOO", str(user_zoo))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            listed = {card.name for card in list_checkpoints()}
        readable = EDGE in listed
        assert {"vit-server-cifar10", "vit-edge-imagenette"} <= listed
        skipped = [str(w.message) for w in caught if issubclass(w.category, ZooWarning)]
        assert len(skipped) == (0 if readable else 1) and all(f"card {card_path}" in m for m in skipped)
        try:
            model = create_model(EDGE)
        except CheckpointError as err:
            message = str(err)
            event("refused: the card" if f"card {card_path}" in message else "refused: the weights")
            if f"card {card_path}" in message:
                assert any(repr(name) in message for name in touched), message
            else:
                assert str(user_zoo / f"{EDGE}.safetensors") in message, message
            return
    event("loaded: a harmless mutation")
    assert readable and _same_weights(model, shipped_edge)


hint_fields = [name for name in HintCard.__dataclass_fields__]


@settings(max_examples=80, **SETTINGS)
@given(mutation=mutations(hint_fields), text=st.none() | card_texts)
def test_a_hint_file_loads_a_working_coder_or_names_the_file_and_field(user_zoo, mutation, text):
    """A hint file (the shipped one mutated, or any text): load_hint gives a coder that writes and reads back every
    hint of ten classes, built from exactly the file's values, or a CheckpointError naming the file (and, for a
    mutated file, a field it touched); never another exception."""
    path = user_zoo / "codecs" / f"hint-{EDGE}.json"
    data, touched = mutate(json.loads((SHIPPED_DIR / "codecs" / path.name).read_text()), mutation)
    path.write_text(json.dumps(data) if text is None else text, encoding="latin-1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEMCOMM_ZOO", str(user_zoo))
        try:
            coder = load_hint(EDGE)
        except CheckpointError as err:
            event("refused")
            assert f"card {path}" in str(err)
            assert text is not None or any(repr(name) in str(err) for name in touched), str(err)
            return
    event("loaded")
    written = json.loads(path.read_text())
    assert (coder.counts.tolist(), coder.step, coder.weight) == (written["counts"], written["step"], written["weight"])
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0)) * 4
    symbols = coder.symbols(logits)
    writer = BitWriter()
    for row in symbols:
        coder.write(writer, row)
    reader = BitReader(writer.to_bytes())
    assert torch.equal(torch.stack([coder.read(reader, 10) for _ in symbols]), symbols)


def _damage(data: bytes, kind: str, where: int, values: bytes) -> bytes:
    """``data`` truncated at ``where``, overwritten there by ``values``, or with ``values`` appended."""
    where %= len(data)
    if kind == "truncate":
        return data[:where]
    if kind == "overwrite":
        return data[:where] + values + data[where + len(values):]
    return data + values


damage = st.tuples(st.sampled_from(["truncate", "overwrite", "append"]), st.integers(0, 2**31),
                   st.binary(min_size=1, max_size=16))


@settings(max_examples=60, **SETTINGS)
@given(damage=damage)
def test_damaged_weights_are_refused_naming_the_file(user_zoo, tmp_path_factory, damage):
    """Weights truncated, overwritten or appended to: create_model refuses them, by the zoo's name or given as
    weights= with the card (SHA-256), naming the file; read without any SHA-256, the file gives finite tensors or a
    CheckpointError naming it (a truncated or garbled safetensors file never raises anything else)."""
    original = (SHIPPED_DIR / f"{EDGE}.safetensors").read_bytes()
    damaged = _damage(original, *damage)
    assume(damaged != original)
    weights = user_zoo / f"{EDGE}.safetensors"
    shutil.copy(SHIPPED_DIR / f"{EDGE}.json", user_zoo / f"{EDGE}.json")
    weights.write_bytes(damaged)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SEMCOMM_ZOO", str(user_zoo))
            with pytest.raises(CheckpointError, match=str(weights)):
                create_model(EDGE)
        with pytest.raises(CheckpointError, match=str(weights)):
            create_model(EDGE, weights=weights)
        try:
            tensors = load_tensors(weights)
        except CheckpointError as err:
            assert str(weights) in str(err)
        else:
            assert all(torch.isfinite(t.float()).all() for t in tensors.values() if t.is_floating_point())
    finally:
        weights.write_bytes(original)


@settings(max_examples=20, **SETTINGS)
@given(name=st.sampled_from(["head.weight", "blocks.0.attn.qkv.weight", "pos_embed", "norm.bias"]),
       value=st.sampled_from([float("nan"), float("inf"), float("-inf")]), index=st.integers(0, 2**31))
def test_non_finite_weights_are_refused_even_when_their_sha256_is_vouched_for(tmp_path_factory, name, value, index):
    """One NaN or infinity anywhere in the weights: refused naming the file and the tensor, even with the file's
    own SHA-256 given (the checksum says the file is as written, not that it is usable)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(SHIPPED_DIR / f"{EDGE}.safetensors"))
    state[name].view(-1)[index % state[name].numel()] = value
    path = tmp_path_factory.mktemp("nan") / "weights.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=rf"{path} holds NaN or infinite values in \['{name}'\]"):
        create_model(EDGE, weights=path, sha256=file_sha256(path))


def test_every_shipped_card_passes_its_own_checks():
    """The checks refuse nothing the project ships: every model card, codec card and hint file reads cleanly."""
    from semcomm.rate.zoo import CodecCard
    from semcomm.server.backends.storage import read_backend_card

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in SHIPPED_DIR.glob("*.json"):
            assert ModelCard.read(path).name == path.stem
        for path in (SHIPPED_DIR / "codecs").glob("*.json"):
            (HintCard if path.name.startswith("hint-") else CodecCard).read(path)
        for path in (SHIPPED_DIR / "backends").glob("*/backend.json"):
            read_backend_card(Path(path).parent)
