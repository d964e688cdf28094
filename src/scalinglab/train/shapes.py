"""The shape rule: from a target parameter count to the nearest real transformer shape.

A scaling sweep asks for N and needs a model that has N parameters. Kaplan et al. (2020, §3.1,
Fig. 5) found the loss at fixed non-embedding N to change by only a few per cent while the
aspect ratio d_model/n_layer moved over more than an order of magnitude (≈ 20–200), so the
rule may pick depth and width freely inside a sane band, and choose the count first:

1. Candidates: ``n_layer ≥ 1`` and ``d_model`` on a grid whose step is the head dimension
   (below), with aspect ratio ``d_model / n_layer`` in ``[aspect_min, aspect_max]``
   (default 32–128: a factor 2 either side of the preferred 64, well inside the ≈ 20–200
   over which Kaplan et al. saw the loss move by only a few per cent).
2. Keep the candidates whose count (``basis``: total or non-embedding, from
   :func:`scalinglab.counting.count_params`) is nearest the target in log space, together with
   every candidate within ``tolerance`` (default 2 %) of that best relative error.
3. Among those, take the aspect ratio nearest ``aspect`` (default 64, in log space; GPT-3 Small
   and Pythia-160M have 768/12 = 64, Pythia-70M 512/6 ≈ 85), then the shallower model.

Width grid and heads: ``d_model`` is a multiple of 8 below 128, of 16 below 512 and of 64 from
512 (a step of a few per cent of the width, so counts can land near any target). The
head width aims at 16 below d_model 128, 32 up to 512 and 64 from 512 (GPT-2, Pythia), so narrow
models keep several heads instead of one wide one: ``n_head`` is the divisor of d_model/2
(keeping the head width even, as rotary positions need) whose head width is nearest that aim.

This module imports no torch so planners and sweep designers can call it cheaply.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from scalinglab.counting import TransformerShape, count_params

__all__ = ["head_dim_for", "heads_for", "shape_for_params"]

_BASES = ("non_embedding", "total")
_MAX_LAYERS = 256  # 12·L·(16L)² at L = 256 is 8·10^10: beyond any run this tool trains


def head_dim_for(d_model: int) -> int:
    """The head width the rule aims at for a model of width ``d_model`` (16, 32 or 64)."""
    if d_model < 128:
        return 16
    if d_model < 512:
        return 32
    return 64


@lru_cache(maxsize=4096)
def heads_for(d_model: int) -> int:
    """Number of heads the rule gives a model of width ``d_model`` (even head width)."""
    aim = head_dim_for(d_model)
    half = d_model // 2
    divisors = [n for n in range(1, half + 1) if half % n == 0]
    # Nearest head width in log space; on a tie, more (narrower) heads.
    return min(divisors, key=lambda n: (abs(math.log(d_model / n / aim)), -n))


def _width_grid(lo: float, hi: float) -> list[int]:
    """Widths in [lo, hi] on the rule's grid: multiples of 8, 16 and 64 (see module notes)."""
    out = []
    d = 16
    while d <= hi:
        if d >= lo:
            out.append(d)
        d += 8 if d < 128 else 16 if d < 512 else 64
    return out


def shape_for_params(
    target_params: float,
    *,
    vocab_size: int,
    context_length: int,
    basis: str = "non_embedding",
    aspect: float = 64.0,
    aspect_min: float = 32.0,
    aspect_max: float = 128.0,
    tolerance: float = 0.02,
    **shape_options: Any,
) -> TransformerShape:
    """The real shape nearest ``target_params`` under the documented rule (module docstring).

    Parameters
    ----------
    target_params
        Wanted parameter count, counted per ``basis``.
    vocab_size, context_length
        Vocabulary and sequence length of the model (they set the embedding count).
    basis
        ``"non_embedding"`` (Kaplan et al.) or ``"total"`` (Hoffmann et al.).
    aspect, aspect_min, aspect_max
        Preferred d_model/n_layer and the band candidates must lie in.
    tolerance
        Relative slack on the count within which the aspect ratio decides.
    **shape_options
        Passed to :class:`TransformerShape`: ``d_ff``, ``tied_embeddings``, ``positional``,
        ``mlp``, ``bias``.

    Returns
    -------
    TransformerShape
        Read its actual counts with :func:`scalinglab.counting.count_params`.

    Raises
    ------
    ValueError
        For a non-positive target, an unknown basis or option, or an empty aspect band.

    Examples
    --------
    >>> from scalinglab.counting import count_params
    >>> s = shape_for_params(2e6, vocab_size=256, context_length=256)
    >>> (s.n_layer, s.d_model, s.n_head), count_params(s).non_embedding
    ((4, 208, 8), 2078544)
    """
    if not (isinstance(target_params, int | float) and math.isfinite(target_params)):
        raise ValueError(f"target_params must be a finite number, got {target_params!r}")
    if target_params <= 0:
        raise ValueError(f"target_params must be > 0, got {target_params!r}")
    if basis not in _BASES:
        raise ValueError(f"basis must be one of {_BASES}, got {basis!r}")
    if not 0 < aspect_min <= aspect <= aspect_max:
        raise ValueError(
            f"need 0 < aspect_min ≤ aspect ≤ aspect_max, got {aspect_min}, {aspect}, {aspect_max}"
        )
    if tolerance < 0:
        raise ValueError(f"tolerance must be ≥ 0, got {tolerance!r}")
    allowed = {"d_ff", "tied_embeddings", "positional", "mlp", "bias"}
    unknown = set(shape_options) - allowed
    if unknown:
        raise ValueError(f"unknown shape option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")

    def make(n_layer: int, d_model: int) -> TransformerShape:
        return TransformerShape(
            n_layer=n_layer,
            d_model=d_model,
            n_head=heads_for(d_model),
            vocab_size=vocab_size,
            context_length=context_length,
            **shape_options,
        )

    def count(shape: TransformerShape) -> int:
        c = count_params(shape)
        return c.non_embedding if basis == "non_embedding" else c.total

    log_target = math.log(target_params)
    scored: list[tuple[float, float, int, TransformerShape]] = []
    for n_layer in range(1, _MAX_LAYERS + 1):
        widths = _width_grid(aspect_min * n_layer, aspect_max * n_layer)
        if not widths:
            continue
        smallest = count(make(n_layer, widths[0]))
        # Counts grow with depth at the narrowest allowed width: once that overshoots the target
        # by more than the best candidate's error, deeper models cannot come closer.
        if scored and math.log(smallest) - log_target > min(s[0] for s in scored):
            break
        # Count is monotone in width: bisect for the first width at or above the target,
        # then score it and its lower neighbour.
        lo, hi = 0, len(widths) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if count(make(n_layer, widths[mid])) < target_params:
                lo = mid + 1
            else:
                hi = mid
        for i in {max(lo - 1, 0), lo}:
            shape = make(n_layer, widths[i])
            error = abs(math.log(count(shape)) - log_target)
            aspect_error = abs(math.log(shape.d_model / n_layer / aspect))
            scored.append((error, aspect_error, n_layer, shape))
    if not scored:
        raise ValueError("no shape satisfies the aspect band; widen aspect_min/aspect_max")
    best = min(s[0] for s in scored)
    near = [s for s in scored if s[0] <= best + math.log1p(tolerance)]
    return min(near, key=lambda s: (s[1], s[2]))[3]
