"""ViT adapter: attention for timm models of several sizes, token-subset forwards, zoo and bad input."""
from __future__ import annotations

import json

import pytest
import torch

from semcomm.models import TimmViT, create_model, load_weights, save_weights
from semcomm.zoo import CheckpointError

TIMM_MODELS = [
    ("semcomm_vit_edge_p4_32", 32, 6, 4, 1),
    ("semcomm_vit_server_p4_32", 32, 9, 6, 1),
    ("deit_tiny_patch16_224", 224, 12, 3, 1),
    ("deit_tiny_distilled_patch16_224", 224, 12, 3, 2),
    ("vit_small_patch16_224", 224, 12, 6, 1),
]


@pytest.mark.parametrize("name, size, depth, heads, prefix", TIMM_MODELS)
def test_attention_shapes_and_subset_forward(name, size, depth, heads, prefix):
    torch.manual_seed(0)
    model = create_model(name)
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.forward_with_attention(images)
        full = model(images)
        n = model.num_patches
        assert n == (size // model.patch_size) ** 2
        assert out.num_prefix_tokens == prefix
        assert len(out.attentions) == depth
        for a in out.attentions:
            assert a.shape == (2, heads, prefix + n, prefix + n)
            torch.testing.assert_close(a.sum(-1), torch.ones(2, heads, prefix + n))
        assert out.cls_attention().shape == (2, heads, n)
        torch.testing.assert_close(out.logits, full, rtol=1e-4, atol=1e-5)
        everything = torch.arange(n).expand(2, -1)
        torch.testing.assert_close(model.forward_tokens(images, everything), full, rtol=1e-4, atol=1e-5)
        # a subset forward only sees its own patches: changing the others changes nothing
        kept = torch.tensor([[0, 5, n - 1], [1, 2, 3]])
        other = images.clone()
        other[..., size // 2 :, : size // 2] = 0.5  # patches of the lower-left quadrant, none of them kept
        torch.testing.assert_close(model.forward_tokens(images, kept), model.forward_tokens(other, kept))
        assert not torch.allclose(model.forward_tokens(images, kept), full)


def test_recording_only_some_layers_gives_the_same_maps_and_logits():
    model = create_model("semcomm_vit_edge_p4_32")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        every = model.forward_with_attention(images)
        last = model.forward_with_attention(images, [-1])
        some = model.forward_with_attention(images, [0, 2])
    assert [a is None for a in last.attentions] == [True] * 5 + [False]
    assert [a is None for a in some.attentions] == [False, True, False, True, True, True]
    torch.testing.assert_close(last.attentions[-1], every.attentions[-1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(some.attentions[2], every.attentions[2], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(last.logits, every.logits, rtol=1e-4, atol=1e-5)
    assert all(block.attn.fused_attn == model.model.blocks[0].attn.fused_attn for block in model.model.blocks)
    with pytest.raises(ValueError, match="layer 2 was not recorded"):
        last.cls_attention(2)
    with pytest.raises(ValueError, match="layer 6 out of range"):
        model.forward_with_attention(images, [6])
    with pytest.raises(TypeError, match="integer layer indices"):
        model.forward_with_attention(images, ["last"])


def test_importance_names_the_layers_it_reads_and_refuses_missing_ones():
    from semcomm.edge.importance import attention_layers, patch_importance

    assert attention_layers("mean") == (-1,)
    assert attention_layers("mean", "rollout") is None and attention_layers("mean_layers") is None
    with pytest.raises(ValueError, match="unknown importance method"):
        attention_layers("max")
    model = create_model("semcomm_vit_edge_p4_32")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        last, every = model.forward_with_attention(images, [-1]), model.forward_with_attention(images)
    torch.testing.assert_close(patch_importance(last, "mean"), patch_importance(every, "mean"), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="was not recorded"):
        patch_importance(last, "rollout")


def test_subset_forward_keeps_each_patch_position():
    """Moving a patch's pixels to another position changes the output: positions are honoured."""
    model = create_model("semcomm_vit_edge_p4_32")
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model.forward_tokens(images, torch.tensor([[0, 9]]))
        b = model.forward_tokens(images, torch.tensor([[0, 10]]))
    assert not torch.allclose(a, b)


def test_uint8_and_float_images_agree(tiny_images):
    model = create_model("semcomm_vit_edge_p4_32")
    with torch.no_grad():
        torch.testing.assert_close(model(tiny_images), model(tiny_images.float() / 255))


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(2, 32, 32), "B x 3 x H x W"),
        (torch.rand(2, 1, 32, 32), "B x 3 x H x W"),
        (torch.rand(2, 3, 30, 30), "model takes"),
        (torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.int32), "uint8 or floating"),
        (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
        (torch.rand(2, 3, 32, 32) * 255, r"\[0, 1\]"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_images_are_named(images, message):
    model = create_model("semcomm_vit_edge_p4_32")
    with pytest.raises((ValueError, TypeError), match=message):
        model(images)


@pytest.mark.parametrize(
    "positions, message",
    [
        (torch.tensor([[0, 64]]), r"\[0, 64\)"),
        (torch.tensor([[-1, 3]]), r"\[0, 64\)"),
        (torch.zeros(1, 0, dtype=torch.int64), "empty"),
        (torch.tensor([[0.0, 1.0]]), "int64"),
        (torch.tensor([0, 1]), "B x K"),
    ],
)
def test_bad_positions_are_named(positions, message):
    model = create_model("semcomm_vit_edge_p4_32")
    with pytest.raises((ValueError, TypeError), match=message):
        model.forward_tokens(torch.rand(1, 3, 32, 32), positions)


def test_unknown_model_name():
    with pytest.raises(KeyError, match="unknown model 'vit_gigantic_nonsense'"):
        create_model("vit_gigantic_nonsense")


def test_weights_round_trip_and_bad_checkpoints(tmp_path):
    model = create_model("semcomm_vit_edge_p4_32")
    path = tmp_path / "w.safetensors"
    save_weights(model.model, path)
    other = create_model("semcomm_vit_edge_p4_32", weights=path)
    for (k, a), b in zip(model.model.state_dict().items(), other.model.state_dict().values()):
        torch.testing.assert_close(a.half().float(), b, msg=k)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(model.model, tmp_path / "missing.safetensors")
    corrupted = tmp_path / "corrupted.safetensors"
    corrupted.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_weights(model.model, corrupted)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(create_model("semcomm_vit_server_p4_32").model, path)


def test_timm_vit_rejects_other_modules():
    with pytest.raises(TypeError, match="VisionTransformer"):
        TimmViT(torch.nn.Linear(2, 2))


def test_zoo_verifies_sha256_and_refuses_non_finite_weights(tmp_path, monkeypatch):
    import shutil

    from safetensors.torch import load_file, save_file

    from semcomm.zoo import SHIPPED_DIR

    for suffix in (".json", ".safetensors"):  # a copy in the user zoo, found before the shipped one
        shutil.copy(SHIPPED_DIR / f"vit-edge-cifar10{suffix}", tmp_path / f"vit-edge-cifar10{suffix}")
    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    assert create_model("vit-edge-cifar10").num_classes == 10  # an intact copy loads
    weights = tmp_path / "vit-edge-cifar10.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:-90] = b"\x00" * 10  # bytes overwritten inside a tensor: still a valid file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted or was replaced: its SHA-256"):
        create_model("vit-edge-cifar10")
    state = load_file(str(weights))
    state["head.weight"] = torch.full_like(state["head.weight"], float("nan"))
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        create_model("semcomm_vit_edge_p4_32", weights=weights)


def test_project_architectures_at_any_geometry_register_on_first_use():
    import timm

    from semcomm.models.architectures import register_architecture, vit_architecture

    name = vit_architecture("edge", 64, 8)
    assert name == "semcomm_vit_edge_p8_64" and timm.is_model(name)
    model = create_model(name, num_classes=7)
    assert model.num_patches == 64 and model.patch_size == 8 and model.num_classes == 7
    assert len(model.model.blocks) == 6  # the shape of the registered edge whose grid is closest (p4_32: 64 patches)
    assert vit_architecture("edge", 64, 8) == name  # registered once
    assert register_architecture("semcomm_vit_server_p16_96") and not register_architecture("vit_small_patch16_224")
    for bad, message in [(("huge", 64, 8), "unknown ViT size"), (("edge", 64, 7), "does not divide"),
                         (("edge", 8, 16), "patch <= image")]:
        with pytest.raises(ValueError, match=message):
            vit_architecture(*bad)


def test_user_zoo_is_searched_before_the_shipped_checkpoints(tmp_path, monkeypatch):
    from semcomm.models import zoo
    from semcomm.zoo import SHIPPED_DIR, file_sha256, zoo_dirs

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "mine"))
    model = create_model("semcomm_vit_edge_p4_32", num_classes=3)
    save_weights(model, tmp_path / "mine" / "my-edge.safetensors")  # a wrapper saves as the timm model it wraps
    card = zoo.ModelCard(name="my-edge", architecture="semcomm_vit_edge_p4_32", dataset="mine", num_classes=3,
                         params=sum(p.numel() for p in model.parameters()), epochs=1, test_top1=0.5,
                         test_images=10, classes=["a", "b", "c"],
                         sha256=file_sha256(tmp_path / "mine" / "my-edge.safetensors"))
    assert zoo.write_card(card) == tmp_path / "mine" / "my-edge.json"  # default: the first user zoo directory
    assert zoo_dirs() == [tmp_path / "mine", SHIPPED_DIR]
    listed = {c.name: c for c in zoo.list_checkpoints()}
    assert not listed["my-edge"].shipped and listed["vit-edge-cifar10"].shipped
    assert zoo.model_card("my-edge").classes == ["a", "b", "c"]
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for loaded in (create_model("my-edge"), create_model(str(tmp_path / "mine" / "my-edge.json"))):
            torch.testing.assert_close(loaded.eval()(images), model(images), atol=2e-2, rtol=0)
    with pytest.raises(KeyError, match="searched"):
        zoo.model_card("not-mine")


def _user_copy(tmp_path, monkeypatch, name="vit-edge-cifar10"):
    """A copy of a shipped checkpoint in a user zoo at ``tmp_path`` (found before the shipped one)."""
    import shutil

    from semcomm.zoo import SHIPPED_DIR

    for suffix in (".json", ".safetensors"):
        shutil.copy(SHIPPED_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    return tmp_path / f"{name}.json", tmp_path / f"{name}.safetensors"


def test_one_malformed_card_in_the_user_zoo_hides_nothing_else(tmp_path, monkeypatch):
    import warnings

    from semcomm.models import list_checkpoints
    from semcomm.zoo import ZooWarning

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.warns(ZooWarning, match=rf"card {tmp_path / 'broken.json'} is not valid JSON"):
        names = [card.name for card in list_checkpoints()]
    assert "vit-edge-cifar10" in names and "broken" not in names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading another name neither reads nor warns about the bad file
        assert create_model("vit-edge-cifar10").num_classes == 10
    with pytest.raises(CheckpointError, match=rf"card {tmp_path / 'broken.json'} is not valid JSON"):
        create_model("broken")
    with pytest.raises(KeyError, match="unknown model 'nothing'"):
        create_model("nothing")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("num_classes"), r"missing \['num_classes'\]"),
    (lambda c: c.update(num_classes="ten"), r"field 'num_classes' must be an integer, got \"ten\""),
    (lambda c: c.update(num_classes=0), "field 'num_classes' must be at least 1"),
    (lambda c: c.update(architecture="vit_gigantic_nonsense"), "field 'architecture' is 'vit_gigantic_nonsense'"),
    (lambda c: c.update(architecture="semcomm_vit_edge_p7_32"), "field 'architecture'"),
    (lambda c: c.update(classes=["cat"]), "field 'classes' must be empty or name each of the 10 classes"),
    (lambda c: c.update(name="another"), "field 'name' is 'another'"),
    (lambda c: c.update(sha256="xyz"), "field 'sha256' must be 64 lowercase hex digits"),
    (lambda c: c.update(test_top1=1.5), r"field 'test_top1' must be an accuracy in \[0, 1\]"),
    (lambda c: c.update(epochs=-1), "field 'epochs' must be at least 0"),
    (lambda c: c.update(params=12), "fields 'params', 'architecture' and 'num_classes' disagree: "
                                    "semcomm_vit_edge_p4_32 with 10 classes has 811,146 parameters, not 12"),
    (lambda c: c.update(num_classes=10**9, classes=[]), "disagree: .* with 1000000000 classes has .* not 811,146"),  # no OOM
    (lambda c: c.update(architecture="semcomm_vit_edge_p1_4096"), "disagree: semcomm_vit_edge_p1_4096 with"),
])
def test_a_card_field_error_names_the_file_and_the_field(tmp_path, monkeypatch, edit, message):
    card_path, _ = _user_copy(tmp_path, monkeypatch)
    card = json.loads(card_path.read_text())
    edit(card)
    card_path.write_text(json.dumps(card))
    for name in ("vit-edge-cifar10", str(card_path)):
        with pytest.raises(CheckpointError, match=rf"card {card_path} is malformed: .*{message}"):
            create_model(name)


def test_weights_given_with_a_card_are_checked_by_sha256(tmp_path):
    import shutil

    from semcomm.zoo import SHIPPED_DIR, file_sha256

    intact, corrupted = tmp_path / "intact.safetensors", tmp_path / "corrupted.safetensors"
    shutil.copy(SHIPPED_DIR / "vit-edge-cifar10.safetensors", intact)
    data = bytearray(intact.read_bytes())
    data[-100:-90] = b"\x00" * 10  # bytes overwritten inside a tensor: still a valid, finite file
    corrupted.write_bytes(bytes(data))
    for name in ("vit-edge-cifar10", str(SHIPPED_DIR / "vit-edge-cifar10.json")):
        assert create_model(name, weights=intact).num_classes == 10  # the card's own weights, copied
        with pytest.raises(CheckpointError, match=rf"weights {corrupted} are not the weights of card .*vit-edge-cifar10"
                                                  r"\.json \(their SHA-256 is not the card's\)"):
            create_model(name, weights=corrupted)
    with pytest.raises(CheckpointError, match=f"{corrupted} is corrupted or was replaced"):
        create_model("vit-edge-cifar10", weights=corrupted, sha256=file_sha256(intact))
    vouched = create_model("vit-edge-cifar10", weights=corrupted, sha256=file_sha256(corrupted))  # vouched for
    assert vouched.num_classes == 10
    with pytest.raises(CheckpointError, match=f"{intact} is corrupted or was replaced"):
        create_model("semcomm_vit_edge_p4_32", weights=intact, sha256="0" * 64)


def test_a_timm_model_that_is_no_vit_is_a_value_error():
    with pytest.raises(ValueError, match="'resnet18' is not a ViT the codec can run"):
        create_model("resnet18")


def test_a_model_is_named_after_its_checkpoint_or_architecture(tmp_path):
    from semcomm.zoo import SHIPPED_DIR

    assert create_model("vit-edge-cifar10").name == "vit-edge-cifar10"
    assert create_model(str(SHIPPED_DIR / "vit-server-cifar10.json")).name == "vit-server-cifar10"
    assert create_model("semcomm_vit_edge_p4_32", num_classes=3).name == "semcomm_vit_edge_p4_32"
