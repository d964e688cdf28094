"""The ``[design]`` table of a sweep spec: which runs to plan (isoflop, grid, wsd or points)."""

from __future__ import annotations

from typing import Any

from scalinglab.sweep.spec_checks import (
    as_choice,
    as_integer,
    as_number,
    as_number_list,
    check_keys,
    key_error,
)
from scalinglab.sweep.spec_values import DESIGN_KINDS, DesignSpec, Point

__all__ = ["MAX_DESIGN_RUNS", "parse_design"]

# A design is capped before it is built: no machine this targets trains more runs.
MAX_DESIGN_RUNS = 10_000

_DESIGN_COMMON = ("kind", "min_steps")
_DESIGN_KEYS = {
    "isoflop": (
        "flops",
        "flops_min",
        "flops_max",
        "levels",
        "sizes_per_level",
        "width_decades",
        "tokens_per_param",
    ),
    "grid": ("params", "tokens"),
    "wsd": ("params", "tokens", "branch_tokens", "branch_fractions"),
    "points": ("points",),
}


def parse_design(t: dict[str, Any]) -> DesignSpec:
    """The validated ``[design]`` table ``t``; a :class:`SpecError` names the bad key."""
    kind = as_choice("design.kind", t.get("kind"), DESIGN_KINDS)
    check_keys("design", t, _DESIGN_COMMON + _DESIGN_KEYS[kind])
    min_steps = as_integer("design.min_steps", t.get("min_steps", 20))
    if kind == "isoflop":
        design = _isoflop(t, min_steps)
        levels = len(design.flops) if design.flops is not None else design.levels or 1
        _cap("design.sizes_per_level", levels * design.sizes_per_level)
        return design
    if kind == "grid":
        for key in ("params", "tokens"):
            if key not in t:
                raise key_error(f"design.{key}", "missing: a grid needs params and tokens lists")
        design = DesignSpec(
            kind="grid",
            params=as_number_list("design.params", t["params"]),
            tokens=as_number_list("design.tokens", t["tokens"]),
            min_steps=min_steps,
        )
        _cap("design.params", len(design.params) * len(design.tokens))
        return design
    if kind == "points":
        return _points(t, min_steps)
    design = _wsd(t, min_steps)
    branches = len(design.branch_tokens or design.branch_fractions or ())
    _cap("design.params", len(design.params) * (1 + branches))
    return design


def _cap(key: str, runs: int) -> None:
    if runs > MAX_DESIGN_RUNS:
        raise key_error(
            key, f"the design has {runs:,} runs; at most {MAX_DESIGN_RUNS:,} can be planned"
        )


def _points(t: dict[str, Any], min_steps: int) -> DesignSpec:
    points = t.get("points")
    if not isinstance(points, list) or not points:
        raise key_error(
            "design.points", "missing: a points design needs points = [[params, tokens], ...]"
        )
    _cap("design.points", len(points))  # before each pair is checked
    out: list[Point] = []
    for i, pair in enumerate(points):
        key = f"design.points[{i}]"
        if not isinstance(pair, list) or len(pair) not in (2, 3, 4):
            raise key_error(
                key,
                "must be [params, tokens], [params, tokens, [branch_tokens]] or [params, "
                f"tokens, [branch_tokens], {{warmup_tokens, resume_tokens}}], got {pair!r}",
            )
        params, tokens = as_number(f"{key}[0]", pair[0]), as_number(f"{key}[1]", pair[1])
        if len(pair) == 2:
            out.append((params, tokens))
            continue
        # A third element: where WSD cooldowns branch off this run's stable phase (tokens).
        branches: tuple[float, ...] = ()
        if len(pair) == 3 or pair[2] != []:  # a resumed run may branch nothing
            branches = as_number_list(f"{key}[2]", pair[2], integer=True)
        if branches and branches[-1] >= tokens:
            raise key_error(
                f"{key}[2]",
                f"every branch point must be < the run's tokens ({tokens:g}), got {branches[-1]}",
            )
        if len(pair) == 3:
            out.append((params, tokens, tuple(int(b) for b in branches)))
            continue
        start = _resume(f"{key}[3]", pair[3], tokens)
        out.append((params, tokens, tuple(int(b) for b in branches), start))
    if len(set(out)) != len(out):
        raise key_error("design.points", "has repeated points")
    _cap("design.points", sum(1 + len(p[2]) if len(p) >= 3 else 1 for p in out))
    return DesignSpec(kind="points", points=tuple(out), min_steps=min_steps)


def _resume(key: str, value: Any, tokens: float) -> tuple[int, int]:
    """A point's fourth element: ``{warmup_tokens = W, resume_tokens = R}``, a WSD run that
    continues a kept stable-phase checkpoint at R tokens of a run that warmed up for W."""
    if not isinstance(value, dict):
        raise key_error(key, f"must be a table {{warmup_tokens, resume_tokens}}, got {value!r}")
    check_keys(key, value, ("warmup_tokens", "resume_tokens"))
    for name in ("warmup_tokens", "resume_tokens"):
        if name not in value:
            raise key_error(f"{key}.{name}", "missing")
    warmup = as_integer(f"{key}.warmup_tokens", value["warmup_tokens"], minimum=0)
    resume = as_integer(f"{key}.resume_tokens", value["resume_tokens"])
    if not warmup <= resume < tokens:
        raise key_error(
            f"{key}.resume_tokens",
            f"must lie between warmup_tokens ({warmup}) and the run's tokens ({tokens:g}), "
            f"got {resume}",
        )
    return warmup, resume


def _isoflop(t: dict[str, Any], min_steps: int) -> DesignSpec:
    explicit = "flops" in t
    ranged = [k for k in ("flops_min", "flops_max", "levels") if k in t]
    if explicit and ranged:
        raise key_error(
            "design.flops", f"give flops or flops_min/flops_max/levels, not both ({ranged})"
        )
    if not explicit and len(ranged) != 3:
        lacking = [k for k in ("flops_min", "flops_max", "levels") if k not in t]
        raise key_error(
            f"design.{lacking[0]}",
            "missing: an isoflop design needs flops = [levels] or flops_min, flops_max, levels",
        )
    flops = as_number_list("design.flops", t["flops"]) if explicit else None
    flops_min = flops_max = None
    levels = None
    if not explicit:
        flops_min = as_number("design.flops_min", t["flops_min"])
        flops_max = as_number("design.flops_max", t["flops_max"])
        levels = as_integer("design.levels", t["levels"])
        if flops_max < flops_min:
            raise key_error(
                "design.flops_max", f"must be ≥ flops_min ({flops_min:g}), got {flops_max:g}"
            )
        if levels > 1 and flops_max == flops_min:
            raise key_error("design.levels", "must be 1 when flops_min == flops_max")
    sizes = as_integer("design.sizes_per_level", t.get("sizes_per_level", 5))
    width = as_number("design.width_decades", t.get("width_decades", 1.0))
    if sizes > 1 and width <= 0:
        raise key_error("design.width_decades", "must be > 0")
    return DesignSpec(
        kind="isoflop",
        flops=flops,
        flops_min=flops_min,
        flops_max=flops_max,
        levels=levels,
        sizes_per_level=sizes,
        width_decades=width,
        tokens_per_param=as_number("design.tokens_per_param", t.get("tokens_per_param", 20.0)),
        min_steps=min_steps,
    )


def _wsd(t: dict[str, Any], min_steps: int) -> DesignSpec:
    for key in ("params", "tokens"):
        if key not in t:
            raise key_error(f"design.{key}", "missing: a wsd design needs params and tokens")
    tokens = t["tokens"]
    if isinstance(tokens, list):
        if len(tokens) != 1:
            raise key_error(
                "design.tokens", f"a wsd design trains one length: give one number, got {tokens!r}"
            )
        tokens = tokens[0]
    total = as_integer("design.tokens", tokens)
    if "branch_tokens" in t and "branch_fractions" in t:
        raise key_error("design.branch_tokens", "give branch_tokens or branch_fractions, not both")
    branch_tokens = branch_fractions = None
    if "branch_tokens" in t:
        branch_tokens = tuple(
            int(v) for v in as_number_list("design.branch_tokens", t["branch_tokens"], integer=True)
        )
        if branch_tokens[-1] >= total:
            raise key_error(
                "design.branch_tokens",
                f"every branch point must be < design.tokens ({total}), got {branch_tokens[-1]}",
            )
    elif "branch_fractions" in t:
        branch_fractions = as_number_list("design.branch_fractions", t["branch_fractions"])
        if branch_fractions[-1] >= 1:
            raise key_error(
                "design.branch_fractions",
                f"every fraction must be in (0, 1), got {branch_fractions[-1]!r}",
            )
    else:
        raise key_error(
            "design.branch_tokens", "missing: a wsd design needs branch_tokens or branch_fractions"
        )
    return DesignSpec(
        kind="wsd",
        params=as_number_list("design.params", t["params"]),
        tokens=(float(total),),
        branch_tokens=branch_tokens,
        branch_fractions=branch_fractions,
        min_steps=min_steps,
    )
