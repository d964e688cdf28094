"""The GPT: exact parameter counts for every option, causality, rotary positions, init loss."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scalinglab.counting import TransformerShape, count_params
from scalinglab.train.model import GPT, GPTConfig, _rotary_tables, _rotate

OPTIONS = list(
    itertools.product(
        ("learned", "rotary"),  # positional
        (True, False),  # tied_embeddings
        ("gelu", "gated"),  # mlp
        (False, True),  # bias
        (None, 72),  # d_ff
    )
)


@pytest.mark.parametrize(("positional", "tied", "mlp", "bias", "d_ff"), OPTIONS)
def test_parameter_count_matches_counting_for_every_option(positional, tied, mlp, bias, d_ff):
    shape = TransformerShape(
        n_layer=2,
        d_model=48,
        n_head=3,
        vocab_size=97,
        context_length=24,
        d_ff=d_ff,
        tied_embeddings=tied,
        positional=positional,
        mlp=mlp,
        bias=bias,
    )
    model = GPT(shape)
    expected = count_params(shape)
    assert model.num_params() == expected.total
    assert model.num_params(non_embedding=True) == expected.non_embedding
    # Every parameter tensor is a distinct trainable tensor (the tied matrix appears once).
    assert len({id(p) for p in model.parameters()}) == len(list(model.parameters()))


@pytest.mark.slow  # the meta device pulls in torch's reference ops: seconds on first use
def test_gpt2_small_has_the_released_checkpoint_count():
    # 124 439 808: the parameter count of OpenAI's released GPT-2 small (Radford et al. 2019),
    # built on the meta device so no memory is allocated.
    with torch.device("meta"):
        model = GPT(TransformerShape(12, 768, 12, 50257, 1024, bias=True))
    assert model.num_params() == 124_439_808


def test_initial_loss_is_near_uniform():
    # With N(0, 0.02) weights the logits are ≈ 0, so the loss is ≈ ln(vocab).
    torch.manual_seed(0)
    shape = TransformerShape(2, 64, 4, 256, 32)
    model = GPT(shape)
    idx = torch.randint(0, 256, (4, 32))
    _, loss = model(idx, torch.roll(idx, -1, dims=1))
    assert loss.item() == pytest.approx(math.log(256), abs=0.05)


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_attention_is_causal(positional):
    torch.manual_seed(0)
    model = GPT(TransformerShape(2, 32, 2, 50, 16, positional=positional)).eval()
    idx = torch.randint(0, 50, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % 50
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.equal(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_rotary_scores_depend_only_on_relative_position():
    head_dim, length = 8, 20
    cos, sin = _rotary_tables(head_dim, length, 10_000.0)
    q = torch.randn(head_dim)
    k = torch.randn(head_dim)
    # Place the same q and k at positions (m, n) and (m + s, n + s).
    qs = _rotate(q.expand(length, head_dim), cos, sin)
    ks = _rotate(k.expand(length, head_dim), cos, sin)
    assert torch.dot(qs[7], ks[3]).item() == pytest.approx(
        torch.dot(qs[15], ks[11]).item(), rel=1e-5
    )
    assert torch.linalg.norm(qs[5]).item() == pytest.approx(torch.linalg.norm(q).item(), rel=1e-5)


def test_every_parameter_gets_a_gradient():
    shape = TransformerShape(
        2, 32, 4, 40, 16, positional="rotary", mlp="gated", bias=True, tied_embeddings=False
    )
    model = GPT(shape)
    idx = torch.randint(0, 40, (2, 16))
    _, loss = model(idx, idx)
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_residual_projections_use_gpt2_scaled_init():
    torch.manual_seed(0)
    n_layer = 8
    model = GPT(TransformerShape(n_layer, 256, 8, 64, 16))
    std = model.blocks[0].mlp.proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(2 * n_layer), rel=0.05)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="even head dimension"):
        GPTConfig(TransformerShape(1, 15, 5, 10, 8, positional="rotary"))
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(TransformerShape(1, 16, 2, 10, 8), dropout=1.0)
    model = GPT(TransformerShape(1, 16, 2, 10, 8))
    with pytest.raises(ValueError, match="exceeds context"):
        model(torch.zeros(1, 9, dtype=torch.long))
