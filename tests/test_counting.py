import itertools

import pytest

from scalinglab.counting import TransformerShape, count_params, flops_per_token

NANOGPT_CHAR = TransformerShape(n_layer=4, d_model=128, n_head=4, vocab_size=65, context_length=64)
GPT2_SMALL = TransformerShape(12, 768, 12, vocab_size=50257, context_length=1024, bias=True)


def test_gpt2_small_total_matches_released_checkpoint():
    # 124 439 808: the parameter count of the released GPT-2 small (Radford et al. 2019),
    # as nanoGPT's GPT.from_pretrained("gpt2") reports it.
    assert count_params(GPT2_SMALL).total == 124_439_808


def test_nanogpt_char_counts_match_baselines():
    # ../shared/data/cpu_baselines/baselines.json: params_total 804 096, 12·L·d² = 786 432.
    counts = count_params(NANOGPT_CHAR)
    assert counts.total == 804_096
    assert counts.kaplan_approx == 786_432
    # nanoGPT reports total minus the positional table: 795 904 (same baselines file).
    assert counts.total - 64 * 128 == 795_904


def test_nanogpt_char_flops_per_token():
    # The issue and baselines.json: per-operation 5.22e6 (5 220 864), 6·N = 4.82e6.
    flops = flops_per_token(NANOGPT_CHAR)
    assert flops.per_operation == 5_220_864
    assert flops.six_n_total == 6 * 804_096
    assert flops.per_operation == 3 * flops.forward


def test_parts_add_up_for_every_option():
    for tied, positional, mlp, bias in itertools.product(
        (True, False), ("learned", "rotary"), ("gelu", "gated"), (True, False)
    ):
        shape = TransformerShape(
            3, 96, 4, 300, 32, tied_embeddings=tied, positional=positional, mlp=mlp, bias=bias
        )
        counts = count_params(shape)
        assert counts.total == counts.non_embedding + counts.embedding
        vocab = 300 * 96 * (1 if tied else 2)
        positions = 32 * 96 if positional == "learned" else 0
        assert counts.embedding == vocab + positions


def test_gated_default_width_matches_plain_mlp_weights():
    plain = TransformerShape(2, 384, 6, 256, 64)
    gated = TransformerShape(2, 384, 6, 256, 64, mlp="gated")
    assert gated.ffn_width == 1024  # 8/3·384, a multiple of 8
    assert count_params(gated).non_embedding == count_params(plain).non_embedding


def test_per_operation_exceeds_six_n_non_embedding_at_small_scale():
    # Attention and vocabulary terms that 6·N_non-embedding ignores matter most for small models.
    flops = flops_per_token(NANOGPT_CHAR)
    assert flops.per_operation > flops.six_n_non_embedding


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_layer": 0}, "n_layer"),
        ({"d_model": 100, "n_head": 3}, "divisible"),
        ({"positional": "alibi"}, "positional"),
        ({"mlp": "relu"}, "mlp"),
        ({"d_ff": -4}, "d_ff"),
    ],
)
def test_bad_shapes_name_the_field(kwargs, message):
    base = dict(n_layer=2, d_model=96, n_head=4, vocab_size=256, context_length=32)
    with pytest.raises(ValueError, match=message):
        TransformerShape(**{**base, **kwargs})
