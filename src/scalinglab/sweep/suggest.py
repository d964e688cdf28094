"""Which runs next: the few buildable runs that shrink a decision's uncertainty most per FLOP.

Given the runs at hand and a target (a loss prediction at (N, D), or the compute-optimal size
N_opt at a budget C), :func:`suggest` fits the law, scores every buildable candidate run by how
much it would shrink the target's variance (:mod:`.information`: the local Fisher / delta-method
approximation, closed form per candidate), and picks up to K of them within a compute budget.

The choice is greedy, twice: once by variance removed per FLOP, once by variance removed alone
(both within the budget and K), keeping the pair's better end state. Ratio-greedy alone can
spend K picks on cheap runs that each tell little; plain greedy alone can spend the budget on
one dear run; the better of the two is the standard remedy for budgeted greedy selection with a
guarantee (Krause & Guestrin 2005, "A note on the budgeted maximization of submodular
functions"), and it costs one more pass over a few hundred candidates.

Two covariances play two parts. With a bootstrap ensemble in the fit, its covariance ranks the
candidates (it sees the directions a few runs leave unidentified); the intervals now and after,
and each run's share, come from the Fisher covariance, because the ensemble's predicted
shrinkage is not the one a refit then shows: in ``benchmarks/adaptive_design.py`` (Chinchilla
and 15 Porian configurations, 171 rounds) the ensemble predicts a median per-round width ratio
of 0.01 where the refit's bootstrap width shrinks by 0.85; the Fisher model predicts 0.94.
Ranking with Fisher instead met the benchmark's target less often on both halves of its data
sets (0/9 and 0/7 against 1/9 and 2/7; the benchmark's docstring says how the halves are used).

Candidates are real: sizes snapped to the shapes of the trainer's family and lengths to whole
steps by the sweep design itself (a ``points`` design, :mod:`.design`), or, for imported runs,
the sizes the user can build (``sizes``). A WSD family also gets bundles, a trunk and its
cooldowns at their whole cost, scored as the set of their points (:mod:`.candidates`,
:func:`.information.group_drops`). The chosen runs become a sweep spec
(:func:`write_spec`) that ``scalinglab sweep run`` trains into the same store; the next
:func:`suggest` sees them, even before they finish: a run's information does not depend on its
loss, so planned runs count at once.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from scalinglab.errors import ScalingLabError
from scalinglab.fitting import Fit, fit
from scalinglab.laws import BaseLaw, get_law
from scalinglab.outputs import check_output, write_atomic
from scalinglab.runs import Runs, as_runs, load_runs
from scalinglab.store import STORE_SUFFIXES
from scalinglab.sweep import information as info
from scalinglab.sweep.candidates import (
    TOKENS_PER_PARAM_RANGE,
    Candidate,
    candidate_family,
    design_point,
    family_candidates,
    grid_sizes,
    new_candidates,
    overlaps,
    plain_candidates,
    resumed_candidates,
    spec_table,
    store_family,
    wsd_notes,
)
from scalinglab.sweep.information import Target, TargetError
from scalinglab.sweep.spec import load_spec
from scalinglab.sweep.spec_values import DesignSpec, SweepSpec

__all__ = [
    "TOKENS_PER_PARAM_RANGE",
    "Candidate",
    "Proposal",
    "SuggestError",
    "Suggestion",
    "Target",
    "TargetError",
    "choose_runs",
    "suggest",
    "write_spec",
]


class SuggestError(ScalingLabError):
    """Bad options for :func:`suggest`; ``field`` names the option (``budget``, ``k``, ...)."""


@dataclass(frozen=True)
class Proposal:
    """A chosen run and its expected share of the target's variance reduction (in pick order)."""

    candidate: Candidate
    variance_drop: float
    share: float


@dataclass(frozen=True)
class Suggestion:
    """The runs to train next and the target's interval now and expected after them.

    ``value`` is the target at the fit (the loss in nats, or N_opt); ``sd_now``/``sd_after`` are
    the delta-method (Fisher) standard deviations of its log, with or without a bootstrap
    ensemble; intervals are at ``level``.
    """

    target: Target
    law: str
    value: float
    sd_now: float
    sd_after: float
    level: float
    budget_flops: float
    proposals: tuple[Proposal, ...]
    rule: str
    n_runs: int
    n_pending: int
    n_candidates: int
    residual_scale: float
    notes: tuple[str, ...] = ()
    spec: SweepSpec | None = None

    @property
    def spent_flops(self) -> float:
        """Compute of the proposed runs (their WSD cooldowns included)."""
        return sum(p.candidate.cost_flops for p in self.proposals)

    def interval(self, sd: float) -> tuple[float, float]:
        """The target's interval at ``level`` for a log-scale standard deviation ``sd``."""
        z = statistics.NormalDist().inv_cdf(0.5 + self.level / 2)
        return self.value * math.exp(-z * sd), self.value * math.exp(z * sd)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready mapping."""
        now, after = self.interval(self.sd_now), self.interval(self.sd_after)
        return {
            "target": {k: v for k, v in vars(self.target).items() if v is not None},
            "law": self.law,
            "value": self.value,
            "level": self.level,
            "interval_now": list(now),
            "interval_after": list(after),
            "width_ratio": (after[1] - after[0]) / (now[1] - now[0]),
            "budget_flops": self.budget_flops,
            "spent_flops": self.spent_flops,
            "rule": self.rule,
            "runs": self.n_runs,
            "pending": self.n_pending,
            "candidates": self.n_candidates,
            "proposals": [
                {
                    "params": p.candidate.params,
                    "tokens": p.candidate.tokens,
                    # A WSD bundle's cooldowns, as `sweep plan --json` lists a run's branches.
                    "branches": [
                        {"branch_tokens": b.branch_tokens, "tokens": b.tokens, "flops": b.flops}
                        for b in (p.candidate.run.branches if p.candidate.run else ())
                    ],
                    "cost_flops": p.candidate.cost_flops,
                    # Continues a kept stable-phase checkpoint at this many tokens (0: no).
                    "resume_tokens": p.candidate.run.resume_tokens if p.candidate.run else 0,
                    "share": p.share,
                    "key": p.candidate.run.key if p.candidate.run else None,
                    "n_layer": p.candidate.run.shape.n_layer if p.candidate.run else None,
                    "d_model": p.candidate.run.shape.d_model if p.candidate.run else None,
                }
                for p in self.proposals
            ],
            "spec": self.spec.name if self.spec else None,
            "notes": list(self.notes),
        }


# --- choosing -------------------------------------------------------------------------------


def _greedy(
    sigma: np.ndarray,
    grad: np.ndarray,
    a: np.ndarray,
    groups: Sequence[np.ndarray],
    cost: np.ndarray,
    budget: float,
    k: int,
    per_flop: bool,
    excludes: Sequence[np.ndarray],
) -> list[tuple[int, float]]:
    """``info.pick_greedily`` over the linearised model: covariance ``sigma``; candidate i is
    the rows ``groups[i]`` of ``a`` (the j/σ of its points: one run, or a WSD trunk and its
    branches); buying i rules out ``excludes[i]``."""
    state = [sigma]

    def bought(i: int) -> None:
        state[0] = info.add_points(state[0], a[groups[i]])

    return info.pick_greedily(
        float(grad @ sigma @ grad),
        lambda: info.group_drops(state[0], grad, a, groups),
        bought,
        cost,
        budget,
        k,
        per_flop,
        excludes,
    )


def choose_runs(
    fitted: Fit,
    runs: Runs,
    target: Target,
    budget_flops: float,
    candidates: Sequence[Candidate],
    *,
    k: int = 4,
    pending: Sequence[tuple[float, float]] = (),
    level: float = 0.95,
) -> Suggestion:
    """Pick up to ``k`` of ``candidates`` within ``budget_flops`` for ``target``.

    Parameters
    ----------
    fitted
        The law fitted to ``runs`` (its inputs must include ``params`` and ``tokens``).
    runs
        The runs the fit was made on (their Jacobian is the information at hand).
    target
        :meth:`Target.predict` or :meth:`Target.allocation`.
    budget_flops
        Total compute the proposed runs may cost.
    candidates
        The runs that could be trained.
    k
        At most this many runs.
    pending
        (N, D) of runs planned but not finished: they count as information already bought.
    level
        Confidence level of the intervals.

    Returns
    -------
    Suggestion
    """
    _check_options(budget_flops, k, level)
    law = fitted.law_object
    if not {"params", "tokens"} <= set(law.inputs):
        raise SuggestError(
            f"law {law.name!r} takes {', '.join(law.inputs)}; suggest needs a law of N and D "
            "(chinchilla, kaplan-nd, data-constrained)",
            field="law",
        )
    raw = law.to_raw(fitted.params)
    n, d = runs.column("params"), runs.column("tokens")
    scale = info.residual_scale(law, raw, n, d, runs.column("loss"))
    jac = info.jacobian(law, raw, n, d)
    fisher = info.posterior(jac, scale)
    ensemble = _ensemble(fitted, law)
    if pending:
        pn, pd_ = (np.asarray(v, dtype=float) for v in zip(*pending, strict=True))
        jp = info.jacobian(law, raw, pn, pd_)
        fisher = _add_runs(fisher, jp, scale)
        ensemble = None if ensemble is None else _add_runs(ensemble, jp, scale)
    value, grad = info.gradient(law, raw, target)
    var_now = float(grad @ fisher @ grad)
    notes: list[str] = []
    if pending:
        notes.append(f"{len(pending)} planned runs not finished yet count as already bought")
    picked: list[tuple[int, float]] = []
    rule = "none"
    a = np.empty((0, len(raw)))
    groups: list[np.ndarray] = []
    if candidates:
        # Every candidate's points (a WSD bundle has several) as rows of one Jacobian.
        points = [pt for c in candidates for pt in c.points]
        ends = np.cumsum([len(c.points) for c in candidates])
        groups = [np.arange(e - len(c.points), e) for c, e in zip(candidates, ends, strict=True)]
        cost = np.array([c.cost_flops for c in candidates])
        a = info.jacobian(law, raw, *(np.array(v) for v in zip(*points, strict=True))) / scale
        a = np.where(np.isfinite(a), a, 0.0)
        # Choose with the ensemble when there is one: it ranks runs better (benchmark, both
        # halves); report with the Fisher Σ, whose predicted shrinkage matches the realised one.
        choose_with = fisher if ensemble is None else ensemble
        pools = {"": np.ones(len(candidates), dtype=bool)}
        if any(c.branches for c in candidates):
            # Greedy is not monotone in its candidates: offering bundles can lead it to a worse
            # end than plain runs alone (the README's WSD store at 5e11 FLOP: width ×0.572
            # against ×0.566), so the plain runs' passes run too and the best end is kept.
            pools[" (plain runs)"] = np.array([not c.branches for c in candidates])
        excludes = overlaps(candidates)
        options = {
            rule_name + pool: _greedy(
                choose_with,
                grad,
                a,
                groups,
                np.where(mask, cost, np.inf),
                budget_flops,
                k,
                pf,
                excludes,
            )
            for pool, mask in pools.items()
            for rule_name, pf in (("per-FLOP greedy", True), ("greedy", False))
        }
        rule, picked = max(options.items(), key=lambda kv: sum(drop for _, drop in kv[1]))
        if ensemble is not None:
            rule += " on the bootstrap ensemble"
    if not picked:
        notes.append("no candidate fits the budget and reduces the target's variance")
    drops = _drops(fisher, grad, [a[groups[i]] for i, _ in picked])
    total = sum(drops)
    proposals = tuple(
        Proposal(candidates[i], drop, drop / total if total > 0 else 0.0)
        for (i, _), drop in zip(picked, drops, strict=True)
    )
    return Suggestion(
        target=target,
        law=law.name,
        value=float(np.exp(value)),
        sd_now=math.sqrt(max(var_now, 0.0)),
        sd_after=math.sqrt(max(var_now - total, 0.0)),
        level=level,
        budget_flops=float(budget_flops),
        proposals=proposals,
        rule=rule,
        n_runs=len(runs),
        n_pending=len(pending),
        n_candidates=len(candidates),
        residual_scale=scale,
        notes=tuple(notes),
    )


def _add_runs(sigma: np.ndarray, jac: np.ndarray, scale: float) -> np.ndarray:
    """Σ after runs of Jacobian ``jac`` (Woodbury: Σ − ΣJᵀ(σ²I + JΣJᵀ)⁻¹JΣ), their loss unseen."""
    return info.add_points(sigma, jac / scale)


def _drops(sigma: np.ndarray, grad: np.ndarray, picked: Sequence[np.ndarray]) -> list[float]:
    """The target variance each pick (its points' j/σ rows, in pick order) removes."""
    out = []
    for rows in picked:
        out.append(float(info.group_drops(sigma, grad, rows, [np.arange(len(rows))])[0]))
        sigma = info.add_points(sigma, rows)
    return out


def _ensemble(fitted: Fit, law: BaseLaw) -> np.ndarray | None:
    """The covariance of the bootstrap ensemble's raw parameters, if the fit has one."""
    rows = fitted.bootstrap_params
    if rows is None:
        return None
    raw = law.raw_array(rows)
    raw = raw[np.all(np.isfinite(raw), axis=1)]
    if len(raw) <= 2 * law.n_params:
        return None
    return np.cov(raw, rowvar=False)


def _check_options(budget_flops: float, k: int, level: float) -> None:
    if not (isinstance(budget_flops, int | float) and math.isfinite(budget_flops)):
        raise SuggestError(
            f"budget must be a finite number of FLOPs, got {budget_flops!r}", field="budget"
        )
    if budget_flops <= 0:
        raise SuggestError(f"budget must be > 0 FLOPs, got {budget_flops:g}", field="budget")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise SuggestError(f"k must be a whole number ≥ 1, got {k!r}", field="k")
    if not 0 < level < 1:
        raise SuggestError(f"level must lie in (0, 1), got {level!r}", field="level")


def write_spec(suggestion: Suggestion, path: str | Path) -> SweepSpec:
    """Write the suggestion's sweep spec (TOML, for ``scalinglab sweep run``) to ``path``.

    Raises
    ------
    SuggestError
        The suggestion has no spec (no trainer family was known, or nothing was proposed).
    scalinglab.outputs.OutputError
        ``path`` is a folder, a store, or cannot be written; the write is atomic.
    """
    if suggestion.spec is None:
        raise SuggestError(
            "no sweep spec to write: the runs came without a trainer family (read a store, "
            "or give a spec) or no run was proposed",
            field="out",
        )
    check_output(path, field="out")
    write_atomic(path, tomli_w.dumps(spec_table(suggestion.spec.to_dict())), field="out")
    return suggestion.spec


def suggest(
    source: str | Path | Runs | pd.DataFrame,
    target: Target | str,
    budget_flops: float,
    *,
    k: int = 4,
    law: str = "chinchilla",
    spec: str | Path | SweepSpec | None = None,
    sizes: Sequence[float] | None = None,
    step_tokens: int = 1,
    level: float = 0.95,
    fit_options: dict[str, Any] | None = None,
) -> Suggestion:
    """Propose up to ``k`` buildable runs within ``budget_flops`` that best pin ``target`` down.

    Parameters
    ----------
    source
        A store (its finished points are the runs; its latest sweep's spec is the trainer
        family; its planned runs count as pending) or a runs table (path, DataFrame, Runs).
    target
        A :class:`Target`, or ``"params=N,tokens=D"``.
    budget_flops
        Total compute the proposed runs may cost (WSD cooldowns counted at their own cost).
    k
        At most this many runs.
    law
        The law to fit (of N and D).
    spec
        The trainer family to snap candidates to (a spec path or value); overrides the store's.
    sizes
        The model sizes that can be built (N as the runs count it); default: a log-spaced grid
        snapped to the family. Required for a runs table without ``spec``.
    step_tokens
        Tokens per optimiser step for imported runs' lengths (a family's own steps otherwise).
    level
        Confidence level of the intervals.
    fit_options
        Keyword arguments for :func:`scalinglab.fit`.

    Returns
    -------
    Suggestion
        With ``spec`` set (a ``points`` sweep of the chosen runs) when a family is known.

    Raises
    ------
    SuggestError, TargetError
        Bad budget, k, sizes or target (``field`` names the option).
    """
    _check_options(budget_flops, k, level)
    if isinstance(target, str):
        target = Target.parse(target)
    if sizes is not None and (
        not len(sizes) or any(not (math.isfinite(s) and s > 0) for s in sizes)
    ):
        raise SuggestError(f"sizes must be numbers > 0, got {list(sizes)!r}", field="sizes")
    if isinstance(step_tokens, bool) or not isinstance(step_tokens, int) or step_tokens < 1:
        raise SuggestError(
            f"step_tokens must be a whole number ≥ 1, got {step_tokens!r}", field="step_tokens"
        )
    family, sweeps, known, pending, kept = None, [], set(), [], pd.DataFrame()
    store_path = None
    if isinstance(source, str | Path) and Path(source).suffix.lower() in STORE_SUFFIXES:
        store_path = Path(source)
        runs = load_runs(store_path)
        family, sweeps, known, pending, kept = store_family(store_path)
    else:
        runs = as_runs(source)
    if spec is not None:
        family = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    if family is None and sizes is None:
        raise SuggestError(
            "give the model sizes you can build (sizes), or a trainer family (a store, or spec)",
            field="sizes",
        )
    notes: list[str] = []
    grid = np.asarray(sorted(sizes), dtype=float) if sizes else grid_sizes(runs, budget_flops)
    if family is not None:
        family = candidate_family(family)
        candidates = family_candidates(family, grid, budget_flops, known, notes)
        candidates += resumed_candidates(family, kept, budget_flops, known)
        notes += wsd_notes(candidates)
    else:
        candidates = plain_candidates(grid, step_tokens, runs, budget_flops)
    candidates = new_candidates(candidates, runs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = fit(get_law(law), runs, **(fit_options or {}))
    notes += [f"fit: {w.message}" for w in caught]
    out = choose_runs(
        fitted, runs, target, budget_flops, candidates, k=k, pending=pending, level=level
    )
    chosen = [p.candidate.run for p in out.proposals if p.candidate.run is not None]
    next_spec = None
    if family is not None and chosen:
        base = family.name.split("-suggest-")[0]
        number = 1 + sum(name.startswith(f"{base}-suggest-") for name in sweeps)
        next_spec = replace(
            family,
            name=f"{base}-suggest-{number}",
            store=str(store_path) if store_path else family.store,
            budget=replace(family.budget, flops=float(budget_flops), wall_clock_s=None),
            design=DesignSpec(
                kind="points",
                points=tuple(design_point(r) for r in chosen),
                min_steps=family.design.min_steps,
            ),
        )
    return replace(out, notes=(*notes, *out.notes), spec=next_spec)
