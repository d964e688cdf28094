"""A decoder-only transformer built from a :class:`~scalinglab.counting.TransformerShape`.

The model follows nanoGPT (Karpathy, commit 3adf61e) and GPT-2: pre-norm blocks, causal
self-attention through :func:`torch.nn.functional.scaled_dot_product_attention`, a GELU MLP,
and the GPT-2 initialisation. Options mirror the shape: rotary or learned positions, tied or
untied embeddings, a gated (SwiGLU) MLP, biases on or off. Its parameter count equals
``count_params(shape).total`` for every combination (tests/test_model.py checks all of them),
so the N a sweep records is the N that was trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scalinglab.counting import TransformerShape, count_params

__all__ = ["GPT", "GPTConfig"]


@dataclass(frozen=True)
class GPTConfig:
    """Everything the model needs beyond its shape.

    Parameters
    ----------
    shape
        Layers, widths, vocabulary, context and architectural options.
    dropout
        Dropout on attention weights and residual branches. Off (0.0) because scaling-law runs
        see each token about once, where dropout only slows learning; nanoGPT's CPU recipe
        also sets it to 0.
    init_std
        Standard deviation of the normal initialisation of every matrix: 0.02 as in GPT-2
        (Radford et al. 2019) and nanoGPT.
    rotary_base
        Base of the rotary frequencies: 10 000 as in RoFormer (Su et al. 2021) and LLaMA.
    norm_eps
        LayerNorm epsilon: 1e-5, torch's default and GPT-2's value.
    """

    shape: TransformerShape
    dropout: float = 0.0
    init_std: float = 0.02
    rotary_base: float = 10_000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.shape.positional == "rotary" and self.shape.head_dim % 2:
            raise ValueError(
                f"rotary positions need an even head dimension, got {self.shape.head_dim}"
            )


def _rotary_tables(head_dim: int, context_length: int, base: float) -> tuple[torch.Tensor, ...]:
    """cos and sin of the rotation angles, shaped (context_length, head_dim // 2)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(context_length, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # GPT-NeoX "rotate half" layout: pairs (i, i + hd/2) rotate together, no interleaving copy.
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused QKV projection."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        s = config.shape
        self.n_head, self.head_dim = s.n_head, s.head_dim
        self.qkv = nn.Linear(s.d_model, 3 * s.d_model, bias=s.bias)
        self.proj = nn.Linear(s.d_model, s.d_model, bias=s.bias)
        self.proj.residual = True  # type: ignore[assignment]  # marks GPT-2's scaled init
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = s.positional == "rotary"
        if self.rotary:
            cos, sin = _rotary_tables(s.head_dim, s.context_length, config.rotary_base)
            # Non-persistent buffers: derived from the shape, so neither parameters nor state.
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, self.head_dim).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, h, t, hd)
        if self.rotary:
            q = _rotate(q, self.cos[:t], self.sin[:t])
            k = _rotate(k, self.cos[:t], self.sin[:t])
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """GELU MLP (two matrices) or gated SiLU MLP (SwiGLU, three matrices, the first two fused)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        s = config.shape
        self.gated = s.mlp == "gated"
        width = s.ffn_width
        self.fc = nn.Linear(s.d_model, (2 if self.gated else 1) * width, bias=s.bias)
        self.proj = nn.Linear(width, s.d_model, bias=s.bias)
        self.proj.residual = True  # type: ignore[assignment]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)  # exact erf GELU, as nanoGPT's nn.GELU()
        return self.dropout(self.proj(h))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        s = config.shape
        self.ln_1 = nn.LayerNorm(s.d_model, eps=config.norm_eps, bias=s.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(s.d_model, eps=config.norm_eps, bias=s.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The language model: embeddings, ``n_layer`` blocks, final norm, vocabulary head.

    Parameters
    ----------
    config
        A :class:`GPTConfig`, or a bare :class:`TransformerShape` (default options).

    Examples
    --------
    >>> from scalinglab.counting import TransformerShape, count_params
    >>> shape = TransformerShape(2, 64, 4, 256, 32, positional="rotary")
    >>> GPT(shape).num_params() == count_params(shape).total
    True
    """

    def __init__(self, config: GPTConfig | TransformerShape) -> None:
        super().__init__()
        if isinstance(config, TransformerShape):
            config = GPTConfig(config)
        self.config = config
        s = config.shape
        self.wte = nn.Embedding(s.vocab_size, s.d_model)
        self.wpe = nn.Embedding(s.context_length, s.d_model) if s.positional == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(s.n_layer))
        self.ln_f = nn.LayerNorm(s.d_model, eps=config.norm_eps, bias=s.bias)
        self.lm_head = nn.Linear(s.d_model, s.vocab_size, bias=False)
        if s.tied_embeddings:
            self.lm_head.weight = self.wte.weight  # one matrix, counted once
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) everywhere, residual outputs scaled by 1/√(2L)."""
        if self.wte.weight.is_meta:
            return  # a shape-only model (device "meta") has no values to draw
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.shape.n_layer)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                s = residual_std if getattr(module, "residual", False) else std
                nn.init.normal_(module.weight, mean=0.0, std=s)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def num_params(self, non_embedding: bool = False) -> int:
        """Trainable parameters, a tied matrix once; ``non_embedding`` drops vocab and positions."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        embedding = sum(p.numel() for p in self.wte.parameters())
        if self.wpe is not None:
            embedding += self.wpe.weight.numel()
        if not self.config.shape.tied_embeddings:
            embedding += self.lm_head.weight.numel()
        return total - embedding

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean cross-entropy (nats/token) if ``targets``.

        Parameters
        ----------
        idx
            Token ids, shape (batch, time), time ≤ context_length.
        targets
            Next-token ids, same shape; positions equal to -1 are ignored.
        """
        _, t = idx.shape
        if t > self.config.shape.context_length:
            raise ValueError(
                f"sequence of {t} tokens exceeds context {self.config.shape.context_length}"
            )
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe.weight[:t]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
        )
        return logits, loss

    def check_count(self) -> None:
        """Raise if the built model disagrees with :func:`count_params` (a guard for subclasses)."""
        expected = count_params(self.config.shape)
        if self.num_params() != expected.total:
            raise AssertionError(
                f"model has {self.num_params()} parameters, counting says {expected.total}"
            )
