"""The shape rule: nearest count, sane aspect ratios, heads, options, and no torch import."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from scalinglab.counting import TransformerShape, count_params
from scalinglab.train.shapes import _width_grid, head_dim_for, heads_for, shape_for_params

TARGETS = [3e4, 1e5, 4.2e5, 1e6, 2e6, 7.7e6, 3e7, 1.3e8]


def _count(shape: TransformerShape, basis: str) -> int:
    c = count_params(shape)
    return c.non_embedding if basis == "non_embedding" else c.total


@pytest.mark.parametrize("basis", ["non_embedding", "total"])
@pytest.mark.parametrize("target", TARGETS)
def test_no_candidate_in_the_band_is_nearer_than_the_tolerance(target, basis):
    shape = shape_for_params(target, vocab_size=256, context_length=128, basis=basis)
    chosen = abs(math.log(_count(shape, basis) / target))
    # Brute force over the whole candidate set the rule documents.
    best = math.inf
    for n_layer in range(1, 60):
        for d in _width_grid(32 * n_layer, 128 * n_layer):
            cand = TransformerShape(n_layer, d, heads_for(d), 256, 128)
            best = min(best, abs(math.log(_count(cand, basis) / target)))
    assert chosen <= best + math.log1p(0.02) + 1e-12


@pytest.mark.parametrize("target", TARGETS)
def test_shapes_are_sane(target):
    s = shape_for_params(target, vocab_size=256, context_length=256)
    assert 32 <= s.d_model / s.n_layer <= 128
    assert s.d_model % s.n_head == 0
    assert s.head_dim % 2 == 0
    # Head width is the divisor nearest the documented aim, within a factor 2.
    assert 0.5 <= s.head_dim / head_dim_for(s.d_model) <= 2


def test_counts_grow_with_the_target():
    counts = [
        count_params(shape_for_params(t, vocab_size=256, context_length=256)).non_embedding
        for t in TARGETS
    ]
    assert counts == sorted(counts)
    for target, n in zip(TARGETS, counts, strict=True):
        assert abs(n / target - 1) < 0.15  # the grid is coarse only below ~1e5


def test_options_are_passed_through_and_counted():
    s = shape_for_params(
        5e6,
        vocab_size=4096,
        context_length=512,
        mlp="gated",
        positional="rotary",
        tied_embeddings=False,
    )
    assert (s.mlp, s.positional, s.tied_embeddings) == ("gated", "rotary", False)
    assert abs(count_params(s).non_embedding / 5e6 - 1) < 0.05


def test_total_basis_includes_the_embeddings():
    # A big vocabulary moves the total count far from the non-embedding one.
    a = shape_for_params(2e6, vocab_size=32000, context_length=256, basis="total")
    b = shape_for_params(2e6, vocab_size=32000, context_length=256, basis="non_embedding")
    assert abs(count_params(a).total / 2e6 - 1) < 0.1
    assert count_params(a).non_embedding < count_params(b).non_embedding


def test_heads_keep_an_even_width_near_the_aim():
    assert heads_for(128) == 4  # 32-wide heads
    assert heads_for(768) == 12  # GPT-2 small: 64-wide heads
    assert heads_for(64) == 4  # 16-wide heads for narrow models
    for d in range(16, 1024, 8):
        assert (d // heads_for(d)) % 2 == 0


def test_bad_requests_fail_clearly():
    with pytest.raises(ValueError, match="> 0"):
        shape_for_params(-5, vocab_size=256, context_length=64)
    with pytest.raises(ValueError, match="basis"):
        shape_for_params(1e6, vocab_size=256, context_length=64, basis="kaplan")
    with pytest.raises(ValueError, match="unknown shape option"):
        shape_for_params(1e6, vocab_size=256, context_length=64, n_layer=3)


def test_module_does_not_import_torch():
    code = (
        "import sys, scalinglab.train.shapes, scalinglab.train; "
        "scalinglab.train.shape_for_params(1e6, vocab_size=256, context_length=64); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
