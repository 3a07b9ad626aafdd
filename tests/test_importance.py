"""Patch importance from synthetic attention maps (no ViT is loaded)."""
import pytest
import torch

from semcomm.core.registry import UnknownNameError
from semcomm.edge.importance import IMPORTANCE, attention_layers, attention_rollout, patch_importance
from semcomm.models.adapter import ViTOutput

B, HEADS, N = 3, 4, 16
METHODS = ("mean", "mean_layers", "rollout")  # the built-in methods


def random_attention(batch, heads, tokens, generator, layers=3, dtype=torch.float32):
    """``layers`` B x heads x T x T row-stochastic attention maps."""
    return [
        torch.softmax(3 * torch.randn(batch, heads, tokens, tokens, generator=generator), dim=-1).to(dtype)
        for _ in range(layers)
    ]


def output(attentions, prefix=1):
    logits = torch.zeros(len(next(a for a in attentions if a is not None)), 10)
    return ViTOutput(logits, attentions, prefix)


@pytest.mark.parametrize("prefix", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_shape_nonnegative_rows_sum_to_one(method, prefix):
    g = torch.Generator().manual_seed(0)
    out = output(random_attention(B, HEADS, N + prefix, g), prefix)
    scores = patch_importance(out, method)
    assert scores.shape == (B, N)
    assert scores.dtype == torch.float32
    assert (scores >= 0).all()
    assert torch.allclose(scores.sum(dim=1), torch.ones(B), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_low_precision_attention_is_accepted(method):
    g = torch.Generator().manual_seed(1)
    scores = patch_importance(output(random_attention(2, 2, N + 1, g, dtype=torch.bfloat16)), method)
    assert scores.dtype == torch.float32
    assert torch.allclose(scores.sum(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("prefix", [1, 2])
def test_mean_matches_hand_computation(prefix):
    g = torch.Generator().manual_seed(2)
    attn = random_attention(B, HEADS, N + prefix, g, layers=2)
    expected = torch.empty(B, N)
    for b in range(B):
        for j in range(N):
            expected[b, j] = sum(attn[-1][b, h, 0, prefix + j] for h in range(HEADS)) / HEADS
    expected /= expected.sum(dim=1, keepdim=True)
    assert torch.allclose(patch_importance(output(attn, prefix), "mean"), expected, atol=1e-6)


def test_mean_uses_only_the_last_layer_and_the_cls_row():
    g = torch.Generator().manual_seed(3)
    attn = random_attention(B, HEADS, N + 1, g, layers=2)
    base = patch_importance(output(attn), "mean")
    changed = [a.clone() for a in attn]
    changed[0] = torch.softmax(torch.randn(changed[0].shape, generator=g), dim=-1)  # an earlier layer
    changed[-1][:, :, 1:] = torch.softmax(torch.randn(B, HEADS, N, N + 1, generator=g), dim=-1)  # non-CLS rows
    assert torch.equal(patch_importance(output(changed), "mean"), base)


def test_mean_layers_averages_the_layers():
    g = torch.Generator().manual_seed(4)
    attn = random_attention(B, HEADS, N + 1, g, layers=3)
    per_layer = [a[:, :, 0, 1:].mean(dim=1) for a in attn]
    expected = sum(per_layer) / 3
    expected /= expected.sum(dim=1, keepdim=True)
    assert torch.allclose(patch_importance(output(attn), "mean_layers"), expected, atol=1e-6)
    # with a single layer it is the same as ``mean``
    assert torch.allclose(patch_importance(output(attn[:1]), "mean_layers"), patch_importance(output(attn[:1]), "mean"))


def test_prefix_tokens_are_dropped():
    """DeiT-distilled style: CLS and distillation token; lots of mass on the distillation token is ignored."""
    tokens = N + 2
    row = torch.zeros(tokens)
    row[0], row[1] = 0.2, 0.6  # CLS, distillation token
    row[2:] = torch.arange(1, N + 1, dtype=torch.float32)
    row[2:] *= 0.2 / row[2:].sum()
    attn = torch.full((1, 1, tokens, tokens), 1 / tokens)
    attn[0, 0, 0] = row
    scores = patch_importance(ViTOutput(torch.zeros(1, 10), [attn], 2), "mean")
    assert scores.shape == (1, N)
    expected = torch.arange(1, N + 1, dtype=torch.float32) / (N * (N + 1) / 2)
    assert torch.allclose(scores[0], expected, atol=1e-6)


def test_rollout_of_one_layer_is_half_attention_plus_identity():
    g = torch.Generator().manual_seed(5)
    attn = random_attention(B, HEADS, N + 1, g, layers=1)
    a = attn[0].mean(dim=1)
    expected_matrix = 0.5 * (a + torch.eye(N + 1))
    assert torch.allclose(attention_rollout(attn), expected_matrix, atol=1e-6)
    expected = expected_matrix[:, 0, 1:] / expected_matrix[:, 0, 1:].sum(dim=1, keepdim=True)
    assert torch.allclose(patch_importance(output(attn), "rollout"), expected, atol=1e-6)


def test_rollout_multiplies_later_layers_on_the_left():
    g = torch.Generator().manual_seed(6)
    attn = random_attention(2, HEADS, N + 1, g, layers=2)
    eye = torch.eye(N + 1)
    a1, a2 = (0.5 * (a.mean(dim=1) + eye) for a in attn)
    assert torch.allclose(attention_rollout(attn), a2 @ a1, atol=1e-6)
    assert not torch.allclose(a2 @ a1, a1 @ a2, atol=1e-4)  # the order is actually tested
    rollout = attention_rollout(attn)
    assert torch.allclose(rollout.sum(dim=-1), torch.ones(2, N + 1), atol=1e-5)


def test_rollout_of_identity_attention_is_finite_and_uniform():
    """Identity attention carries no information: the CLS row of the rollout is one-hot on CLS, so every
    patch gets 0 mass before renormalising. The result must not be NaN and must still be a distribution."""
    eye = torch.eye(N + 1).expand(2, HEADS, N + 1, N + 1)
    out = output([eye, eye, eye])
    assert torch.equal(attention_rollout(out.attentions), torch.eye(N + 1).expand(2, N + 1, N + 1))
    scores = patch_importance(out, "rollout")
    assert torch.isfinite(scores).all()
    assert torch.allclose(scores, torch.full((2, N), 1 / N))


def test_cls_attending_only_to_prefix_gives_uniform_not_nan():
    attn = torch.zeros(1, 2, N + 1, N + 1)
    attn[..., 0] = 1.0  # every token attends only to CLS
    for method in METHODS:
        scores = patch_importance(output([attn]), method)
        assert torch.isfinite(scores).all(), method
        assert torch.allclose(scores.sum(dim=1), torch.ones(1)), method


def test_unknown_method_names_the_choices():
    g = torch.Generator().manual_seed(7)
    with pytest.raises(ValueError, match="unknown importance method 'max'") as info:
        patch_importance(output(random_attention(1, 1, N + 1, g, layers=1)), "max")
    for method in METHODS:
        assert method in str(info.value)
    assert isinstance(info.value, UnknownNameError)


@pytest.mark.parametrize("method", METHODS)
def test_head_averaged_maps_count_as_one_head(method):
    """A B x T x T map (averaged over heads) is stored as B x 1 x T x T and scores like the per-head maps."""
    g = torch.Generator().manual_seed(8)
    attn = random_attention(B, HEADS, N + 1, g)
    averaged = output([a.mean(dim=1) for a in attn])
    assert [a.shape for a in averaged.attentions] == [(B, 1, N + 1, N + 1)] * 3
    torch.testing.assert_close(patch_importance(averaged, method), patch_importance(output(attn), method))


def test_rollout_and_mean_layers_need_every_layer():
    g = torch.Generator().manual_seed(9)
    attn = random_attention(B, HEADS, N + 1, g)
    partial = output([None, None, attn[-1]])
    assert patch_importance(partial, "mean").shape == (B, N)
    for method in ("rollout", "mean_layers"):
        with pytest.raises(ValueError, match=rf"'{method}' reads the attention of every layer, but the attention of "
                                             r"layer 0 was not recorded \(recorded: \[2\] of 3 layers\)"):
            patch_importance(partial, method)
    with pytest.raises(ValueError, match=r"every layer; got 3 entries, None at \[0, 1\]"):
        attention_rollout(partial.attentions)
    with pytest.raises(ValueError, match="got 0 entries"):
        attention_rollout([])


def test_a_single_map_is_not_taken_for_a_list_of_layers():
    """Iterating over a B x heads x T x T tensor would walk the batch, not the layers: refused, not guessed."""
    g = torch.Generator().manual_seed(10)
    (attn,) = random_attention(B, HEADS, N + 1, g, layers=1)
    with pytest.raises(TypeError, match="attention_rollout takes a list with one B x heads x T x T map per layer"):
        attention_rollout(attn)
    with pytest.raises(TypeError, match=r"ViTOutput.attentions must be a list .* got a tensor of shape \(3, 4, 17, 17"):
        output(attn)
    assert torch.equal(attention_rollout([attn]), attention_rollout((attn,)))  # a one-layer model


@pytest.mark.parametrize("make, error, message", [
    (lambda a: ViTOutput(torch.zeros(B, 10), [a[0], a[1][..., :-1, :-1]], 1), ValueError,
     r"different token counts T across layers: \[17, 16\]"),
    (lambda a: ViTOutput(torch.zeros(B, 10), [a[0][..., :-1]], 1), ValueError,
     r"attentions\[0\] is a tensor of shape \(3, 4, 17, 16\); expected B x heads x T x T"),
    (lambda a: ViTOutput(torch.zeros(2, 10), a, 1), ValueError, r"with B = 2"),
    (lambda a: ViTOutput(torch.zeros(B, 10), [a[0].tolist()], 1), TypeError, r"attentions\[0\] is a list of length 3"),
    (lambda a: ViTOutput(torch.zeros(B), a, 1), ValueError, r"ViTOutput.logits is a tensor of shape \(3,\); expected"),
    (lambda a: ViTOutput(torch.zeros(B, 10), a, -1), ValueError, r"num_prefix_tokens must be >= 0, got -1"),
    (lambda a: ViTOutput(torch.zeros(B, 10), a, 17), ValueError, r"num_prefix_tokens = 17 leaves no patch tokens"),
])
def test_inconsistent_outputs_are_named(make, error, message):
    g = torch.Generator().manual_seed(11)
    with pytest.raises(error, match=message):
        make(random_attention(B, HEADS, N + 1, g, layers=2))


def test_importance_needs_a_class_token():
    g = torch.Generator().manual_seed(12)
    out = output(random_attention(B, HEADS, N, g), prefix=0)
    for method in METHODS:
        with pytest.raises(ValueError, match="CLS token.s attention row, but ViTOutput.num_prefix_tokens is 0"):
            patch_importance(out, method)


def test_the_methods_are_registered_with_the_layers_they_read():
    assert set(METHODS) <= set(IMPORTANCE.names())
    assert [IMPORTANCE.info(m)["layers"] for m in METHODS] == [(-1,), None, None]
    g = torch.Generator().manual_seed(13)
    out = output(random_attention(B, HEADS, N + 1, g))
    for method in METHODS:
        assert torch.equal(patch_importance(out, IMPORTANCE.get(method)), patch_importance(out, method))
        assert attention_layers(IMPORTANCE.get(method)) == attention_layers(method)


def test_a_function_is_an_importance_method():
    def first_layer(out):
        return out.attention(0)[:, :, 0, out.num_prefix_tokens:].float().mean(dim=1) * 7  # any scale
    first_layer.layers = (0,)

    g = torch.Generator().manual_seed(14)
    attn = random_attention(B, HEADS, N + 1, g)
    scores = patch_importance(output(attn), first_layer)
    assert torch.allclose(scores, patch_importance(output(attn[:1]), "mean"))
    assert attention_layers(first_layer) == (0,) and attention_layers(first_layer, "mean") == (-1, 0)
    assert attention_layers(first_layer, "rollout") is None

    def no_layers_named(out):
        return torch.ones(len(out.logits), N)

    assert attention_layers(no_layers_named) is None  # a function that does not say reads every layer
    assert torch.equal(patch_importance(output(attn), no_layers_named), torch.full((B, N), 1 / N))
