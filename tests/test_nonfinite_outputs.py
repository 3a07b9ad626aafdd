"""A model that returns NaN or infinite logits, attention or tokens is a clear error on every path, naming the
adapter's class, its method and the images (by their index in the call), never a silent class 0 or an arbitrary
choice of patches."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_custom_adapter import Broken, TorchEncoderViT

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.gating import Gate, uncertainty
from semcomm.edge.selection import TopK
from semcomm.inference import NonFiniteOutputError, predict_logits
from semcomm.server.decoder import ServerDecoder

CASES = settings(max_examples=15, deadline=None)


class BlackIsNaN(TorchEncoderViT):
    """The custom adapter, spoiled: ``value`` (NaN or an infinity) in the logits (of both methods, ``spoil="logits"``)
    or the attention of layer 1 (``spoil="attention"``) of every all-black image."""

    def __init__(self, spoil: str = "logits", value: float = math.nan, **kwargs):
        super().__init__(**kwargs)
        self.spoil, self.value = spoil, value

    def _black(self, x: torch.Tensor) -> torch.Tensor:
        return (x == -1).flatten(1).all(dim=1)  # a black pixel normalises to (0 - 0.5) / 0.5

    def _forward_tokens(self, x, positions):
        logits = super()._forward_tokens(x, positions)
        return logits.masked_fill(self._black(x)[:, None], self.value) if self.spoil == "logits" else logits

    def _forward_with_attention(self, x, layers=None):
        out = super()._forward_with_attention(x, layers)
        black = self._black(x)[:, None]
        if self.spoil == "logits":
            out.logits = out.logits.masked_fill(black, self.value)
        elif out.attentions[1] is not None:
            out.attentions[1] = out.attentions[1].masked_fill(black[..., None, None], self.value)
        return out


def spoil_image_2(states: dict) -> None:
    """Image 2's tokens after block 1 set to NaN (a ``Broken(spoil_hidden=...)`` adapter)."""
    states[1] = states[1].clone()
    states[1][2] = math.nan


def with_black(count: int, black: list[int]) -> torch.Tensor:
    """``count`` random uint8 32 x 32 images, those at ``black`` all black."""
    images = torch.randint(1, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[black] = 0
    return images


def model(**kwargs) -> BlackIsNaN:
    torch.manual_seed(0)
    return BlackIsNaN(**kwargs).eval()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_forward_and_forward_tokens_name_the_adapter_method_and_images(value):
    images, spoiled = with_black(5, [1, 3]), model(value=value)
    with torch.no_grad():
        with pytest.raises(NonFiniteOutputError, match=r"BlackIsNaN\._forward_tokens \(in forward\) returned NaN "
                                                       r"or infinite logits for images 1, 3$") as caught:
            spoiled(images)
        assert caught.value.images == [1, 3] and isinstance(caught.value, ValueError)
        with pytest.raises(NonFiniteOutputError, match=r"_forward_tokens \(in forward_tokens\) .* for images 1, 3$"):
            spoiled.forward_tokens(images, torch.tensor([[0, 5]] * 5))
        spoiled(with_black(3, []))  # finite outputs pass


def test_forward_with_attention_names_logits_attention_and_hidden_tokens():
    images = with_black(4, [2])
    with torch.no_grad():
        with pytest.raises(NonFiniteOutputError, match=r"BlackIsNaN\._forward_with_attention \(in "
                                                       r"forward_with_attention\) returned NaN or infinite "
                                                       r"ViTOutput\.logits for image 2$"):
            model().forward_with_attention(images)
        with pytest.raises(NonFiniteOutputError, match=r"_forward_with_attention .* attention in layer 1 "
                                                       r"\(ViTOutput\.attentions\[1\]\) for image 2$"):
            model(spoil="attention").forward_with_attention(images, [-1])
        model(spoil="attention").forward_with_attention(images, [0])  # layer 1 not recorded: nothing spoiled
        with pytest.raises(NonFiniteOutputError, match=r"Broken\._record_hidden .* patch tokens of block 1 "
                                                       r"for image 2$"):
            Broken(spoil_hidden=spoil_image_2).eval().forward_with_attention(images, [-1], hidden=(-1,))


@pytest.mark.parametrize("gate", [None, Gate(threshold=0.8)], ids=["no-gate", "gate"])
@pytest.mark.parametrize("spoil", ["logits", "attention"])
def test_the_edge_encoder_names_the_image_among_all_it_was_given(gate, spoil):
    """In batches of 2, image 5 is the third batch's second: the error names it 5, its index among all given."""
    encoder = EdgeEncoder(model(spoil=spoil), TopK(4), gate=gate, batch_size=2)
    with pytest.raises(NonFiniteOutputError, match=r"BlackIsNaN\._forward_with_attention \(in forward_with_attention\) "
                                                   rf"returned NaN or infinite .*{spoil}.* for image 5$"):
        encoder.encode(with_black(7, [5]))


def test_the_edge_encoder_refuses_nonfinite_edge_logits_given_to_transmit():
    encoder = EdgeEncoder(TorchEncoderViT().eval(), TopK(4), gate=None)
    logits = torch.zeros(3, 10)
    logits[1, 4] = math.nan
    mask = torch.zeros(3, 64, dtype=torch.bool)
    mask[:, :4] = True
    with pytest.raises(ValueError, match=r"edge_logits given to EdgeEncoder.transmit hold NaN or infinite values "
                                         r"for image 1"):
        encoder.transmit(with_black(3, []), logits, mask)


def test_the_gate_names_the_rows():
    logits = torch.zeros(4, 10)
    logits[[0, 3], 2] = math.inf
    with pytest.raises(ValueError, match=r"logits contain NaN or infinite values in rows 0, 3"):
        uncertainty(logits)


def test_the_server_names_its_adapter_and_the_strings():
    images = with_black(4, [0, 2])
    sent = EdgeEncoder(TorchEncoderViT().eval(), TopK(64), gate=None).encode(images)
    for errors in ("raise", "nan"):  # a model's NaN is not a damaged string
        with pytest.raises(NonFiniteOutputError, match=r"BlackIsNaN\._forward_tokens \(in forward_tokens\) returned "
                                                       r"NaN or infinite logits for images 0, 2$"):
            ServerDecoder(model(dim=96), bf16=False).classify(sent.strings, errors=errors)


@CASES
@given(count=st.integers(1, 9), data=st.data())
def test_batched_inference_names_exactly_the_spoiled_images(count, data):
    """Property: whatever the images spoiled and the batch size, predict_logits names exactly those images, by
    their index among all given; with none spoiled it returns finite logits."""
    black = sorted(data.draw(st.sets(st.integers(0, count - 1)), label="black"))
    batch = data.draw(st.integers(1, count), label="batch size")
    spoiled = model()
    if not black:
        assert torch.isfinite(predict_logits(spoiled, with_black(count, []), batch_size=batch, bf16=False)).all()
        return
    with pytest.raises(NonFiniteOutputError) as caught:
        predict_logits(spoiled, with_black(count, black), batch_size=batch, bf16=False)
    first = black[0] // batch  # the first batch holding a spoiled image raises, naming its spoiled images
    assert caught.value.images == [i for i in black if i // batch == first]


def test_the_server_numbers_the_strings_as_its_caller_does():
    """Strings of other lengths and lost strings come between: the error names each string by its place in the call."""
    images = with_black(4, [1])
    edge = TorchEncoderViT().eval()
    sent = [EdgeEncoder(edge, TopK(k), gate=None).encode(images).strings for k in (8, 16)]
    strings = [None, sent[0][0], sent[1][0], sent[1][1], sent[0][2]]  # image 1 (black) is string 3
    with pytest.raises(NonFiniteOutputError, match=r"logits for image 3$"):
        ServerDecoder(model(dim=96), bf16=False).classify(strings, errors="nan")
