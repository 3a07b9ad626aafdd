"""A ViT not built on timm plugs into the codec through one small adapter class (as in the README).

The adapter here is the README's, on ``nn.TransformerEncoder``, with pre- or post-norm blocks, a class
token with or without its own position embedding, and optionally head-averaged attention. What a broken
adapter returns is refused at the boundary with an error naming what came back and what was expected.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.gating import Gate
from semcomm.edge.importance import patch_importance
from semcomm.edge.selection import TopK
from semcomm.models import ViTAdapter, ViTOutput
from semcomm.server.decoder import ServerDecoder


class TorchEncoderViT(ViTAdapter):
    """A small ViT on ``nn.TransformerEncoder``: conv patch embedding, CLS token, learned positions.

    Args:
        norm_first: pre-norm (True) or post-norm (False) blocks.
        cls_position: the CLS token has its own position embedding (1 + N of them, CLS first, as in
            timm) rather than none (N, the patches only).
        head_averaged: record B x T x T maps averaged over heads instead of B x heads x T x T.
    """

    def __init__(self, image_size=32, patch_size=4, dim=64, depth=2, heads=4, num_classes=10,
                 norm_first=True, cls_position=False, head_averaged=False):
        super().__init__(image_size, patch_size, num_classes, mean=(0.5,) * 3, std=(0.5,) * 3, num_prefix_tokens=1)
        self.cls_position, self.head_averaged = cls_position, head_averaged
        self.embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, int(cls_position) + self.num_patches, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def _tokens(self, x, positions):
        """B x (1 + K) x D: the CLS token, then the patches at ``positions`` (all when None), each with its position."""
        first = int(self.cls_position)  # index of patch 0's position embedding
        patches = self.embed(x).flatten(2).transpose(1, 2) + self.pos[:, first:]
        if positions is not None:
            patches = patches.gather(1, positions[..., None].expand(-1, -1, patches.shape[-1]))
        cls = self.cls + self.pos[:, :1] if self.cls_position else self.cls
        return torch.cat([cls.expand(len(patches), -1, -1), patches], dim=1)

    def _forward_tokens(self, x, positions):
        return self.head(self.encoder(self._tokens(x, positions))[:, 0])

    def _forward_with_attention(self, x, layers=None):
        tokens, attentions, depth = self._tokens(x, None), [], len(self.encoder.layers)
        wanted = range(depth) if layers is None else {i % depth for i in layers}
        for i, layer in enumerate(self.encoder.layers):
            h = layer.norm1(tokens) if layer.norm_first else tokens  # what the block's attention reads
            weights = layer.self_attn(h, h, h, average_attn_weights=self.head_averaged)[1] if i in wanted else None
            attentions.append(weights)
            tokens = layer(tokens)
        return ViTOutput(self.head(tokens[:, 0]), attentions, num_prefix_tokens=1)

    @contextmanager
    def _record_hidden(self, blocks):
        states, depth = {}, len(self.encoder.layers)

        def record(i):
            return lambda module, args, out: states.__setitem__(i, out[:, self.num_prefix_tokens:])

        hooks = [self.encoder.layers[b % depth].register_forward_hook(record(b % depth)) for b in blocks]
        try:
            yield states
        finally:
            for hook in hooks:
                hook.remove()


def attention_from_weights(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """B x heads x T x T softmax(q k^T / sqrt(d)) recomputed from ``attn``'s in_proj weights for input B x T x D."""
    q, k, _ = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k = (rearrange(t, "b t (h d) -> b h t d", h=attn.num_heads) for t in (q, k))
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)


def block_inputs(model: TorchEncoderViT, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """What each block, and each block's ``self_attn``, receives in a plain forward (torch's own block code).

    Gradients are on so that ``nn.TransformerEncoderLayer`` takes its Python path (which calls
    ``self_attn``) rather than the fused fast path.
    """
    blocks, attentions = [], []
    hooks = [module.register_forward_pre_hook(lambda module, args, seen=seen: seen.append(args[0].detach()))
             for layer in model.encoder.layers for module, seen in ((layer, blocks), (layer.self_attn, attentions))]
    try:
        with torch.enable_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(blocks) == len(attentions) == len(model.encoder.layers)
    return blocks, attentions


def twin(model: TorchEncoderViT, **changes) -> TorchEncoderViT:
    """A copy of ``model`` with the same weights and some constructor arguments changed."""
    args = dict(norm_first=model.encoder.layers[0].norm_first, cls_position=model.cls_position,
                head_averaged=model.head_averaged, image_size=model.image_size[0])
    other = TorchEncoderViT(**{**args, **changes})
    other.load_state_dict(model.state_dict())
    return other.eval()


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_custom_adapter_runs_the_codec(images):
    torch.manual_seed(0)
    edge, server = TorchEncoderViT().eval(), TorchEncoderViT(dim=96).eval()
    with torch.no_grad():
        out = edge.forward_with_attention(images)
        assert [a.shape for a in out.attentions] == [(4, 4, 65, 65)] * 2
        torch.testing.assert_close(out.logits, edge(images), rtol=1e-4, atol=1e-5)
        everything = torch.arange(64).expand(4, -1)
        torch.testing.assert_close(server.forward_tokens(images, everything), server(images), rtol=1e-4, atol=1e-5)
    transmission = EdgeEncoder(edge, TopK(12), Gate(threshold=0.0), bf16=False).encode(images)
    assert transmission.offloaded.all()
    logits = ServerDecoder(server, bf16=False).classify(transmission.strings)
    positions = torch.stack([row.nonzero().flatten() for row in transmission.mask])
    with torch.no_grad():
        torch.testing.assert_close(logits, server.forward_tokens(images, positions), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_recorded_attention_is_the_softmax_the_blocks_compute(images, norm_first):
    """Each recorded map equals softmax(q k^T / sqrt(d)) from the layer's in_proj weights, applied to what
    the block's attention really reads (norm1 of the input in a pre-norm block, the input itself in a
    post-norm one); reading the other place would give different maps."""
    torch.manual_seed(1)
    model = TorchEncoderViT(norm_first=norm_first).eval()
    blocks, seen = block_inputs(model, images)
    with torch.no_grad():
        out = model.forward_with_attention(images)
        for layer, x, recorded in zip(model.encoder.layers, seen, out.attentions):
            torch.testing.assert_close(recorded, attention_from_weights(layer.self_attn, x), rtol=1e-4, atol=1e-6)
        # reading at the other norm placement gives other maps, so the comparison above would catch it
        layer, x = model.encoder.layers[0], blocks[0]
        wrong = attention_from_weights(layer.self_attn, x if norm_first else layer.norm1(x))
        assert (out.attentions[0] - wrong).abs().max() > 1e-2


@pytest.mark.parametrize("cls_position", [False, True], ids=["cls-without-position", "cls-with-position"])
def test_class_token_with_and_without_its_own_position_embedding(images, cls_position):
    torch.manual_seed(2)
    model = TorchEncoderViT(norm_first=False, cls_position=cls_position).eval()
    assert model.pos.shape[1] == model.num_patches + cls_position
    kept = torch.tensor([[3, 17, 40, 63]] * 4)
    with torch.no_grad():
        full = model(images)
        torch.testing.assert_close(model.forward_tokens(images, torch.arange(64).expand(4, -1)), full,
                                   rtol=1e-4, atol=1e-5)
        subset = model.forward_tokens(images, kept)
        # each kept patch carries its own position: the order in which they are listed does not matter
        torch.testing.assert_close(model.forward_tokens(images, kept.flip(1)), subset, rtol=1e-4, atol=1e-5)
        # by hand: CLS (+ its own position), then patch p with position embedding p (after CLS's, if any)
        x = model.normalize(images)
        embedded = model.embed(x).flatten(2).transpose(1, 2)[:, kept[0]]
        cls = model.cls + (model.pos[:, 0] if cls_position else 0)
        tokens = torch.cat([cls.expand(4, 1, -1), embedded + model.pos[:, kept[0] + cls_position]], dim=1)
        torch.testing.assert_close(subset, model.head(model.encoder(tokens)[:, 0]), rtol=1e-4, atol=1e-5)
        if cls_position:  # the CLS token's position embedding is used, whatever patches are kept
            model.pos[:, 0] += 1.0
            assert not torch.allclose(model.forward_tokens(images, kept), subset, atol=1e-4)


def test_head_averaged_attention_and_an_int_image_size_run_the_codec_end_to_end(images):
    """B x T x T maps count as one head: the importance, the selection and the bytes equal the per-head adapter's."""
    torch.manual_seed(3)
    per_head = TorchEncoderViT(image_size=32, norm_first=False).eval()
    averaged = twin(per_head, head_averaged=True)
    assert per_head.image_size == (32, 32) and TorchEncoderViT(image_size=(16, 32)).grid_size == (4, 8)
    with torch.no_grad():
        assert [a.shape for a in averaged.forward_with_attention(images).attentions] == [(4, 1, 65, 65)] * 2
    server = TorchEncoderViT(dim=96).eval()
    for importance in ("mean", "rollout"):
        sent = [EdgeEncoder(m, TopK(12), Gate(threshold=0.0), importance=importance).encode(images)
                for m in (per_head, averaged)]
        assert torch.equal(sent[0].mask, sent[1].mask) and sent[0].strings == sent[1].strings
        assert ServerDecoder(server).classify(sent[1].strings).shape == (4, 10)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_edge_and_server(images, native, monkeypatch):
    """The encoder's ``bf16=True`` (bf16 autocast on CPU) and the decoder's default (bf16) work with the adapter,
    on a CPU with native bf16 (autocast on) and without (float32)."""
    monkeypatch.setattr("semcomm.inference.native_bf16", lambda: native)
    torch.manual_seed(4)
    edge, server = TorchEncoderViT(norm_first=False).eval(), TorchEncoderViT(dim=96).eval()
    sent = EdgeEncoder(edge, TopK(12), Gate(threshold=0.0), bf16=True).encode(images)
    assert sent.offloaded.all() and (sent.mask.sum(1) == 12).all()
    logits = ServerDecoder(server).classify(sent.strings)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_hidden_tokens_for_the_latent_codec(images):
    torch.manual_seed(5)
    model = TorchEncoderViT(norm_first=False).eval()
    with torch.no_grad():
        out = model.forward_with_attention(images, [-1], hidden=(-1, 0))
        tokens = model._tokens(model.normalize(images), None)
        after_first = model.encoder.layers[0](tokens)
    assert sorted(out.hidden) == [0, 1] and out.hidden[1].shape == (4, 64, 64)
    torch.testing.assert_close(out.hidden[0], after_first[:, 1:])


class Broken(TorchEncoderViT):
    """The adapter with one of its methods' results passed through ``spoil``."""

    def __init__(self, spoil_attention=None, spoil_logits=None, spoil_hidden=None, **kwargs):
        super().__init__(**kwargs)
        self.spoil_attention, self.spoil_logits, self.spoil_hidden = spoil_attention, spoil_logits, spoil_hidden

    def _forward_with_attention(self, x, layers=None):
        out = super()._forward_with_attention(x, layers)
        return self.spoil_attention(out) if self.spoil_attention else out

    def _forward_tokens(self, x, positions):
        logits = super()._forward_tokens(x, positions)
        return self.spoil_logits(logits) if self.spoil_logits else logits

    @contextmanager
    def _record_hidden(self, blocks):
        with super()._record_hidden(blocks) as states:
            yield states
            if self.spoil_hidden:
                self.spoil_hidden(states)


def replace(out: ViTOutput, **changes) -> ViTOutput:
    return ViTOutput(**{**vars(out), **changes})


@pytest.mark.parametrize("spoil, error, message", [
    (lambda out: (out.logits, out.attentions), TypeError,
     r"_forward_with_attention returned a tuple of length 2; expected a semcomm.models.ViTOutput"),
    (lambda out: out.logits, TypeError, r"returned a tensor of shape \(4, 10\); expected a semcomm.models.ViTOutput"),
    (lambda out: replace(out, attentions=[a[..., 1:, 1:] for a in out.attentions]), ValueError,
     r"attention maps of shape \(4, 4, 64, 64\) \(T = 64\); "
     r"expected T = num_prefix_tokens \+ num_patches = 1 \+ 64 = 65"),
    (lambda out: replace(out, num_prefix_tokens=2), ValueError,
     r"ViTOutput.num_prefix_tokens = 2 but the adapter has num_prefix_tokens = 1"),
    (lambda out: replace(out, logits=out.logits[:, :5]), ValueError,
     r"returned ViTOutput.logits: a tensor of shape \(4, 5\); expected B x num_classes = 4 x 10"),
    (lambda out: replace(out, attentions=out.attentions[-1]), TypeError,
     r"ViTOutput.attentions must be a list .* got a tensor of shape \(4, 4, 65, 65\)"),
    (lambda out: replace(out, attentions=[None, out.attentions[-1]]), ValueError,
     r"asked for the attention of layers all \(layers=None\) but did not record \[0\]"),
    (lambda out: replace(out, attentions=[a[:, :, :, :-1] for a in out.attentions]), ValueError,
     r"ViTOutput.attentions\[0\] is a tensor of shape \(4, 4, 65, 64\); expected B x heads x T x T"),
    (lambda out: replace(out, attentions=[a[:2] for a in out.attentions]), ValueError,
     r"ViTOutput.attentions\[0\] is a tensor of shape \(2, 4, 65, 65\); expected .* with B = 4"),
])
def test_bad_attention_outputs_are_named(images, spoil, error, message):
    model = Broken(spoil_attention=spoil).eval()
    with torch.no_grad(), pytest.raises(error, match=message):
        model.forward_with_attention(images)


@pytest.mark.parametrize("spoil, error, message", [
    (lambda logits: (logits,), TypeError,
     r"_forward_tokens returned a tuple of length 1; expected a tensor of B x num_classes = 4 x 10 logits"),
    (lambda logits: logits[:, None], ValueError,
     r"_forward_tokens returned a tensor of shape \(4, 1, 10\); expected B x num_classes = 4 x 10 logits"),
    (lambda logits: logits[:1], ValueError, r"shape \(1, 10\); expected B x num_classes = 4 x 10"),
])
def test_bad_logits_are_named_by_forward_and_forward_tokens(images, spoil, error, message):
    model = Broken(spoil_logits=spoil).eval()
    with torch.no_grad():
        with pytest.raises(error, match=message):
            model(images)
        with pytest.raises(error, match=message):
            model.forward_tokens(images, torch.tensor([[0, 1]] * 4))


def test_hidden_tokens_must_drop_the_prefix_tokens(images):
    model = Broken(spoil_hidden=lambda states: states.update({1: torch.zeros(4, 65, 64)})).eval()
    message = r"gave block 1 a tensor of shape \(4, 65, 64\); expected B x N x D = 4 x 64 x D patch tokens \(prefix"
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        model.forward_with_attention(images, hidden=(-1,))


def test_prefix_tokens_are_declared_once_and_checked(images):
    """An adapter with two prefix tokens says so to ViTAdapter; ViTOutput must agree and its maps be T = 2 + N."""
    model = TorchEncoderViT().eval()
    model.num_prefix_tokens = 2  # but its ViTOutput says 1
    with torch.no_grad(), pytest.raises(ValueError, match="= 1 but the adapter has num_prefix_tokens = 2"):
        model.forward_with_attention(images)
    model = Broken(spoil_attention=lambda out: replace(out, num_prefix_tokens=2)).eval()
    model.num_prefix_tokens = 2  # both say 2, but the maps have 1 + 64 tokens
    with torch.no_grad(), pytest.raises(ValueError, match=r"expected T = num_prefix_tokens \+ num_patches = 2 \+ 64"):
        model.forward_with_attention(images)


def test_duplicate_positions_are_refused(images):
    model = TorchEncoderViT().eval()
    positions = torch.tensor([[0, 1, 2], [5, 9, 5], [1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="positions repeat patch 5 in row 1: each row must list distinct patch"):
        model.forward_tokens(images, positions)
    with pytest.raises(ValueError, match="repeat patch 5 in row 1"):
        model.check_positions(positions, 4)


def test_rollout_with_only_the_last_layer_recorded_is_refused(images):
    model = TorchEncoderViT().eval()
    with torch.no_grad():
        last = model.forward_with_attention(images, [-1])
    assert last.recorded == [1]
    patch_importance(last, "mean")
    for method in ("rollout", "mean_layers"):
        with pytest.raises(ValueError, match=rf"importance '{method}' reads the attention of every layer, but the "
                                             r"attention of layer 0 was not recorded \(recorded: \[1\] of 2 layers\)"):
            patch_importance(last, method)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(image_size=30), ValueError, r"image size \(30, 30\) is not a whole number of 4-pixel patches"),
    (dict(image_size=(32, 32, 3)), TypeError, r"image_size must be an int \(square\) or \(H, W\)"),
    (dict(image_size="32"), TypeError, r"image_size must be an int"),
    (dict(image_size=0), ValueError, r"image_size\[0\] must be >= 1"),
])
def test_bad_sizes_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        TorchEncoderViT(**kwargs)


def test_your_own_vit_trains_with_the_projects_recipe_and_resumes(tmp_path, cifar_test):
    from semcomm.train.vit import TrainConfig, train

    data = cifar_test.subset(64)
    config = TrainConfig("my-encoder-vit", epochs=2, batch_size=32, eval_images=32, bf16=False, token_keep=(0.3, 1.0))
    torch.manual_seed(0)
    mine = TorchEncoderViT(norm_first=False)
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    trained, history = train(config, data, data, tmp_path, progress=False, model=mine, stop_after=1)
    assert trained is mine and len(history.epochs) == 1 and (tmp_path / "state.pt").exists()
    assert any(not torch.equal(before[k], v) for k, v in mine.state_dict().items())
    torch.manual_seed(1)
    _, history = train(config, data, data, tmp_path, progress=False, model=TorchEncoderViT(norm_first=False))
    assert [e["epoch"] for e in history.epochs] == [1, 2]  # resumed from the state, not from scratch
    with pytest.raises(ValueError, match="10 outputs but config.num_classes is 100"):
        train(TrainConfig("x", num_classes=100, batch_size=32), data, data, tmp_path / "b", model=TorchEncoderViT())
    with pytest.raises(ValueError, match="set low_res=None"):
        train(TrainConfig("x", low_res=(16, 1), batch_size=32), data, data, tmp_path / "c", model=TorchEncoderViT())
    with pytest.raises(TypeError, match="must be a semcomm ViTAdapter"):
        train(config, data, data, tmp_path / "d", model=nn.Linear(3, 10))
