"""Parameters and training FLOPs of a decoder-only transformer.

Two parameter counts matter in the scaling-law literature and they differ most at small
scale (Pearce & Song 2024 trace much of the Kaplan/Chinchilla disagreement to it):

- ``total``: every trainable weight (Hoffmann et al. 2022 count this, embeddings included);
- ``non_embedding``: everything except the vocabulary matrices and the learned positional
  table (Kaplan et al. 2020; ≈ 12·n_layer·d_model² for a plain GPT).

Training FLOPs per token are given two ways: the usual ``6·N`` and the per-operation count of
Hoffmann et al. (2022, Appendix F), which adds the attention logits, softmax and vocabulary
projections that 6·N leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from scalinglab.errors import ScalingLabError

__all__ = [
    "FLOPS_PER_PARAM_TOKEN",
    "FlopsPerToken",
    "ParamCount",
    "TransformerShape",
    "complete_ndc",
    "count_params",
    "flops_per_token",
]

# The 6 of C ≈ 6·N·D, written once for the whole package: each parameter costs 2 FLOP per token
# in the forward pass (a multiply and an add) and 4 in the backward pass (gradients with respect
# to both the activations and the weight), Kaplan et al. (2020), §2.1. It leaves out attention
# over the context and the embeddings, which the per-operation count below adds.
FLOPS_PER_PARAM_TOKEN = 6.0


# A float, a numpy array or a pandas Series: whatever supports the arithmetic.
Count = TypeVar("Count")


def complete_ndc(
    params: Count | None = None, tokens: Count | None = None, flops: Count | None = None
) -> tuple[Count, Count, Count]:
    """Any two of N, D, C as all three, the third from C = 6·N·D.

    Parameters
    ----------
    params, tokens, flops
        Two or three of parameters N, training tokens D and training FLOPs C: floats, numpy
        arrays or pandas Series. Given all three, they are returned unchanged.

    Returns
    -------
    tuple
        ``(params, tokens, flops)``.

    Raises
    ------
    ScalingLabError
        Fewer than two given (``field`` names the first missing one).

    Examples
    --------
    >>> complete_ndc(params=70e9, tokens=1.4e12)[2]
    5.88e+23
    """
    six = FLOPS_PER_PARAM_TOKEN
    if flops is None and params is not None and tokens is not None:
        return params, tokens, six * params * tokens  # type: ignore[operator,return-value]
    if tokens is None and params is not None and flops is not None:
        return params, flops / (six * params), flops  # type: ignore[operator,return-value]
    if params is None and tokens is not None and flops is not None:
        return flops / (six * tokens), tokens, flops  # type: ignore[operator,return-value]
    if params is None or tokens is None or flops is None:
        lacking = [
            n for n, v in (("params", params), ("tokens", tokens), ("flops", flops)) if v is None
        ]
        raise ScalingLabError(
            f"need two of params, tokens and flops (C = 6·N·D); missing {', '.join(lacking)}",
            field=lacking[0],
        )
    return params, tokens, flops


Positional = Literal["learned", "rotary"]
MLPKind = Literal["gelu", "gated"]


@dataclass(frozen=True)
class TransformerShape:
    """The shape of a pre-norm decoder-only transformer (GPT-2 / nanoGPT family).

    Parameters
    ----------
    n_layer, d_model, n_head
        Depth, width and number of attention heads (``d_model % n_head == 0``).
    vocab_size
        Tokens in the vocabulary (256 for byte-level corpora).
    context_length
        Tokens per training sequence; sets the learned positional table and attention FLOPs.
    d_ff
        Hidden width of the MLP. ``None`` means 4·d_model for a plain MLP and the
        parameter-matched 8/3·d_model (rounded up to a multiple of 8) for a gated one.
    tied_embeddings
        Share the token embedding with the output projection (GPT-2, nanoGPT).
    positional
        ``"learned"`` adds a context_length × d_model table; ``"rotary"`` has no parameters.
    mlp
        ``"gelu"``: two matrices; ``"gated"`` (SwiGLU-style): three.
    bias
        Biases in linear layers and LayerNorms. GPT-2 has them; nanoGPT's recipes turn them off.
    """

    n_layer: int
    d_model: int
    n_head: int
    vocab_size: int
    context_length: int
    d_ff: int | None = None
    tied_embeddings: bool = True
    positional: Positional = "learned"
    mlp: MLPKind = "gelu"
    bias: bool = False

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "vocab_size", "context_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ScalingLabError(
                    f"{name} must be a positive integer, got {value!r}", field=name
                )
        if self.d_ff is not None and (not isinstance(self.d_ff, int) or self.d_ff <= 0):
            raise ScalingLabError(
                f"d_ff must be a positive integer or None, got {self.d_ff!r}", field="d_ff"
            )
        if self.d_model % self.n_head:
            raise ScalingLabError(
                f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})",
                field="n_head",
            )
        if self.positional not in ("learned", "rotary"):
            raise ScalingLabError(
                f"positional must be 'learned' or 'rotary', got {self.positional!r}",
                field="positional",
            )
        if self.mlp not in ("gelu", "gated"):
            raise ScalingLabError(f"mlp must be 'gelu' or 'gated', got {self.mlp!r}", field="mlp")

    @property
    def ffn_width(self) -> int:
        """The MLP hidden width actually used (resolves ``d_ff=None``)."""
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "gated":
            # 3 matrices of d×(8d/3) hold as many weights as 2 of d×4d (Shazeer 2020).
            return -(-8 * self.d_model // 3 // 8) * 8
        return 4 * self.d_model

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_head


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of a shape; ``total == non_embedding + embedding``.

    Attributes
    ----------
    total
        Every trainable weight.
    non_embedding
        Kaplan et al.'s N: excludes the token embedding, an untied output matrix and the
        learned positional table.
    embedding
        The vocabulary matrices (one if tied, two if untied) plus the positional table.
    kaplan_approx
        12·n_layer·d_model², the closed form Kaplan et al. (2020) use for ``non_embedding``.
    """

    total: int
    non_embedding: int
    embedding: int
    kaplan_approx: int


@dataclass(frozen=True)
class FlopsPerToken:
    """Training FLOPs per token (forward + backward) of a shape.

    Attributes
    ----------
    six_n_total, six_n_non_embedding
        6·N with N the total or the non-embedding count.
    per_operation
        Hoffmann et al. (2022), Appendix F: embeddings, QKV, attention logits, softmax,
        attention over values, output projection, FFN and final logits; backward = 2× forward.
    forward
        The forward part of ``per_operation`` (``per_operation == 3 * forward``).
    """

    six_n_total: int
    six_n_non_embedding: int
    per_operation: int
    forward: int


def count_params(shape: TransformerShape) -> ParamCount:
    """Count the parameters of ``shape``, exactly as :mod:`scalinglab.train.model` builds it.

    Parameters
    ----------
    shape
        The transformer shape.

    Returns
    -------
    ParamCount
        Total, non-embedding and embedding counts.

    Examples
    --------
    GPT-2 small has 124 439 808 parameters (the count of the released checkpoint):

    >>> gpt2 = TransformerShape(12, 768, 12, 50257, 1024, bias=True)
    >>> count_params(gpt2).total
    124439808
    """
    d, f, b = shape.d_model, shape.ffn_width, int(shape.bias)
    norm = d * (1 + b)  # LayerNorm: gain, and a shift when biases are on
    attention = d * 3 * d + 3 * d * b + d * d + d * b
    n_mlp_in = 2 if shape.mlp == "gated" else 1
    mlp = n_mlp_in * (d * f + f * b) + f * d + d * b
    per_layer = 2 * norm + attention + mlp
    # The untied output head carries a bias only in GPT-2-style models with biases on;
    # GPT-2 itself ties it and has none, so we never give it one.
    vocabulary = shape.vocab_size * d * (1 if shape.tied_embeddings else 2)
    positional = shape.context_length * d if shape.positional == "learned" else 0
    non_embedding = shape.n_layer * per_layer + norm  # + final LayerNorm
    embedding = vocabulary + positional
    return ParamCount(
        total=non_embedding + embedding,
        non_embedding=non_embedding,
        embedding=embedding,
        kaplan_approx=12 * shape.n_layer * d * d,
    )


def flops_per_token(shape: TransformerShape) -> FlopsPerToken:
    """Training FLOPs per token of ``shape``, as 6·N and per operation.

    Parameters
    ----------
    shape
        The transformer shape; ``context_length`` is the sequence length of training.

    Returns
    -------
    FlopsPerToken

    Notes
    -----
    The per-operation count follows Hoffmann et al. (2022), Appendix F, divided by the
    sequence length: embeddings 2·V·d; per layer QKV 6·d², logits 2·T·d, softmax 3·H·T,
    attention over values 2·T·d, output projection 2·d², FFN 4·d·d_ff (6·d·d_ff gated);
    final logits 2·d·V. Backward costs twice the forward. Like the paper, it counts the full
    T×T attention matrix (no causal halving) and ignores norms, biases and nonlinearities.

    Examples
    --------
    nanoGPT's char-level Shakespeare model: 5.22e6 per operation, 4.82e6 as 6·N.

    >>> s = TransformerShape(4, 128, 4, 65, 64)
    >>> flops_per_token(s).per_operation, flops_per_token(s).six_n_total
    (5220864, 4824576)
    """
    d, t, h, v = shape.d_model, shape.context_length, shape.n_head, shape.vocab_size
    ffn_matrices = 3 if shape.mlp == "gated" else 2
    attention = 6 * d * d + 2 * t * d + 3 * h * t + 2 * t * d + 2 * d * d
    ffn = 2 * ffn_matrices * d * shape.ffn_width
    forward = 2 * v * d + shape.n_layer * (attention + ffn) + 2 * d * v
    counts = count_params(shape)
    return FlopsPerToken(
        six_n_total=int(FLOPS_PER_PARAM_TOKEN) * counts.total,
        six_n_non_embedding=int(FLOPS_PER_PARAM_TOKEN) * counts.non_embedding,
        per_operation=3 * forward,
        forward=forward,
    )
