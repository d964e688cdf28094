"""Candidate runs for ``sweep suggest``: buildable sizes and lengths, and the store's family.

With a trainer family (a sweep spec, or the store's last sweep) the sizes and lengths are
snapped by the sweep design itself (a ``points`` design, :mod:`.design`): real shapes, whole
steps, the design's ``min_steps``. Imported runs take the sizes the user can build and lengths
in whole steps of ``step_tokens``. Either way D/N stays in :data:`TOKENS_PER_PARAM_RANGE`.

A family that trains with a WSD schedule also gets *bundles*: one trunk and 1 to
:data:`MAX_BRANCHES` cooldowns branched off its stable phase, each a point of the law at the
price of its cooldown (Hägele et al. 2024), the whole bundle priced as the sweep's budget counts
it (:attr:`RunSpec.cost_flops`: the trunk plus every cooldown). The trunk and its branches are
spaced evenly in log D from the shortest length of the grid: an untuned choice, one bundle per
trunk length and branch count, so that the greedy sees a few hundred of them, not every subset.
A finished WSD run the store keeps a stable-phase checkpoint of (:mod:`.trunks`) also offers
*continuations*: longer runs at its size that start from that checkpoint, priced at their
steps after it only (:func:`resumed_candidates`). A cooldown that starts *before* the
checkpoint cannot start from it (training does not run backwards), so a new, shorter point on
a finished trunk still costs a new trunk, which is what a bundle is; so does everything on a
store without kept checkpoints (older stores, deleted files).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.runs import Runs
from scalinglab.store import Store
from scalinglab.sweep.design import design_runs, resolve_vocab_size
from scalinglab.sweep.runspec import RunSpec
from scalinglab.sweep.spec import parse_spec
from scalinglab.sweep.spec_values import DesignSpec, Point, SpecError, SweepSpec
from scalinglab.sweep.trunks import stable_key
from scalinglab.train.config import TrainConfig

__all__ = [
    "MAX_BRANCHES",
    "TOKENS_PER_PARAM_RANGE",
    "Candidate",
    "candidate_family",
    "design_point",
    "family_candidates",
    "grid_sizes",
    "new_candidates",
    "overlaps",
    "plain_candidates",
    "resumed_candidates",
    "spec_table",
    "store_family",
    "wsd_notes",
]

# The candidate grid: sizes spaced evenly in log N, and per size D/N from 5 to 200 tokens per
# parameter, about a decade either side of Chinchilla's optimum (~20, Hoffmann et al. 2022), as
# far as IsoFLOP arms usually reach. Outside it a law of N and D is least trusted, so the
# information the linearisation promises there is the least real. The band against none was
# chosen on half A of benchmarks/adaptive_design.py (Chinchilla + 8 Porian configurations:
# target met 1/9 either way, median width at half compute 1.20 against 1.33 × IsoFLOP's final)
# and held on half B, not looked at for the choice (2/7 against 0/7; 1.61 against 2.34); the
# benchmark reruns both. The end points (a decade either side of 20) were not tuned.
TOKENS_PER_PARAM_RANGE = (5.0, 200.0)
_GRID_SIZES = 14
MAX_BRANCHES = 3
_GRID_RATIOS = np.geomspace(*TOKENS_PER_PARAM_RANGE, 12)


@dataclass(frozen=True)
class Candidate:
    """A run that could be trained next: N as the law counts it, D, and what it costs.

    ``run`` is the planned run (snapped shape, whole steps) when the trainer's family is known.
    ``branches`` holds the D of each WSD cooldown branched off the run (a bundle: the run and
    its branches are bought together, for ``cost_flops`` in all).
    """

    params: float
    tokens: float
    cost_flops: float
    run: RunSpec | None = None
    branches: tuple[float, ...] = ()

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        """The (N, D) points of the law the candidate yields: the run's, then its branches'."""
        return ((self.params, self.tokens), *((self.params, d) for d in self.branches))


def grid_sizes(runs: Runs, budget_flops: float) -> np.ndarray:
    """Target sizes when the user gives none: log-spaced from half the smallest run's N to the
    largest N whose shortest candidate run fits the budget."""
    lo = float(runs.column("params").min()) / 2
    hi = max(lo * 2, math.sqrt(budget_flops / (6.0 * _GRID_RATIOS[0])))
    return np.geomspace(lo, hi, _GRID_SIZES)


def candidate_family(family: SweepSpec) -> SweepSpec:
    """The family as a ``points`` sweep trains it: a ``wsd`` design's schedule made explicit.

    A ``wsd`` design implies ``train.schedule = "wsd"``; a ``points`` design does not, so
    without this the runs suggested for a WSD family would train with the default schedule.
    """
    if family.design.kind == "wsd" and family.train.schedule is None:
        return replace(family, train=replace(family.train, schedule="wsd"))
    return family


def family_candidates(
    family: SweepSpec, sizes: np.ndarray, budget_flops: float, known: set[str], notes: list[str]
) -> list[Candidate]:
    """Candidates snapped by the sweep design itself: one ``points`` design per size, and for a
    WSD family (scalinglab's trainer) the bundles of a trunk and its cooldowns."""
    family = candidate_family(family)
    vocab = resolve_vocab_size(family)
    bundles = family.train.schedule == "wsd" and family.command is None
    out: list[Candidate] = []
    for size in sizes:
        lengths = [size * r for r in _GRID_RATIOS if 6.0 * size * size * r <= budget_flops]
        if not lengths:
            continue
        design = DesignSpec(
            kind="points",
            points=tuple((float(size), float(t)) for t in lengths),
            min_steps=family.design.min_steps,
        )
        try:
            planned = _design_longest_first(replace(family, design=design), vocab)
            if bundles:
                planned += _bundles(family, planned, vocab)
        except SpecError as exc:
            notes.append(f"N≈{size:.3g} skipped: {exc}")
            continue
        out += _as_candidates(planned, budget_flops, known)
    return out


def new_candidates(candidates: list[Candidate], runs: Runs) -> list[Candidate]:
    """Each set of new points once, at its lowest cost: a candidate any of whose points the runs
    already hold is dropped, and of candidates yielding the same points the cheapest is kept.

    Training is deterministic (one seed), so a point trained again tells the fit nothing new,
    but the information model would count it as a second measurement. Repeats arise when
    neighbouring grid sizes snap to the same shape and length, when a plain run or a bundle's
    cooldown repeats a point the store holds (a cooldown from a kept trunk's stable phase is the
    run continued to that length), or when a continuation reaches a length the grid also offers
    from step 0 (a spec that repeats a point is refused by ``sweep run``). Two candidates that
    share some points but not all are both kept: ``choose_runs`` buys at most one of them.
    """
    held = set(zip(runs.column("params").tolist(), runs.column("tokens").tolist(), strict=True))
    best: dict[frozenset[tuple[float, float]], Candidate] = {}
    for c in candidates:
        points = frozenset(c.points)
        if points & held:
            continue
        if points not in best or c.cost_flops < best[points].cost_flops:
            best[points] = c
    return list(best.values())


def overlaps(candidates: Sequence[Candidate]) -> list[np.ndarray]:
    """For each candidate, the others that share one of its points: a bundle and a plain run
    (or another bundle) yielding the same (N, D) would train that point twice, which the fit
    would count as two measurements and ``sweep run`` refuses in one spec."""
    owners: dict[tuple[float, float], list[int]] = {}
    for i, c in enumerate(candidates):
        for pt in set(c.points):
            owners.setdefault(pt, []).append(i)
    out = []
    for i, c in enumerate(candidates):
        shared = {j for pt in set(c.points) for j in owners[pt] if j != i}
        out.append(np.array(sorted(shared), dtype=int))
    return out


def _as_candidates(planned: list[RunSpec], budget_flops: float, known: set[str]) -> list[Candidate]:
    """The planned runs not in the store yet, within the budget, every point in the D/N band."""
    return [
        Candidate(
            float(r.params),
            float(r.tokens),
            r.cost_flops,
            r,
            tuple(float(b.tokens) for b in r.branches),
        )
        for r in planned
        if r.key not in known
        and r.cost_flops <= budget_flops
        and all(_in_band(r.params, t) for t in (r.tokens, *(b.tokens for b in r.branches)))
    ]


def resumed_candidates(
    family: SweepSpec, kept: pd.DataFrame, budget_flops: float, known: set[str]
) -> list[Candidate]:
    """Longer runs that continue the store's kept stable-phase checkpoints (see the module).

    For each kept checkpoint (its file present), the grid's lengths at its run's size whose
    cooldown starts at or after it, designed by the family as ``points`` with the run's warmup
    pinned (``[N, D, [], {warmup_tokens, resume_tokens}]``), and their bundles with cooldowns
    branched after the checkpoint; kept only if the family reproduces that run's stable phase
    exactly (same shape, lr, seed ...), so that the checkpoint really starts them.
    """
    family = candidate_family(family)
    if family.train.schedule != "wsd" or family.command is not None or kept.empty:
        return []
    vocab = resolve_vocab_size(family)
    out: list[Candidate] = []
    for row in kept[kept["exists"].astype(bool)].itertuples():
        trunk = TrainConfig.from_dict(json.loads(row.config_json))
        warmup = trunk.schedule_for_run().warmup_steps * trunk.tokens_per_step
        n, start = float(row.params), int(row.tokens)
        points = tuple(
            (n, float(n * r), (), (warmup, start))
            for r in _GRID_RATIOS
            if n * r > row.run_tokens and 6.0 * n * (n * r - start) <= budget_flops
        )
        design = _resumable(trunk, points, family.design.min_steps)
        if not design.points:
            continue
        try:
            planned = design_runs(replace(family, design=design), vocab_size=vocab)[0]
            planned += _bundles(family, planned, vocab, (warmup, start))
        except SpecError:
            continue  # the family no longer builds this size (changed shape options)
        planned = [r for r in planned if stable_key(r.config_dict) == row.stable_key]
        out += _as_candidates(planned, budget_flops, known)
    return out


def _resumable(trunk: TrainConfig, points: tuple, min_steps: int) -> DesignSpec:
    """The points whose cooldown would start at or after the checkpoint, by the trunk's own
    step and cooldown fraction (the design refuses the others, and one refused point would
    refuse them all)."""
    step, fraction = trunk.tokens_per_step, trunk.cooldown_fraction
    keep = []
    for p in points:
        steps = round(p[1] / step)
        cooldown_start = (steps - max(1, round(fraction * steps))) * step
        if steps >= min_steps and p[3][1] <= cooldown_start:
            keep.append(p)
    return DesignSpec(kind="points", points=tuple(keep), min_steps=min_steps)


def _bundles(
    family: SweepSpec, singles: list[RunSpec], vocab: int, resume: tuple[int, int] | None = None
) -> list[RunSpec]:
    """One size's WSD bundles: each single run as a trunk, with 1..MAX_BRANCHES cooldowns that
    end near the shorter singles' lengths, inside the trunk's stable phase (and after the
    checkpoint continued singles ``resume`` from: (warmup, resume) tokens)."""
    if len(singles) < 2:
        return []
    singles = sorted(singles, key=lambda r: r.tokens)
    step = singles[0].config_dict["batch_size"] * singles[0].shape.context_length
    floor = family.design.min_steps * step
    # A cooldown branched at step b ends at the smallest S with S − round(f·S) = b, so to end
    # where a shorter single ends, branch where that single's own cooldown starts.
    starts = [r.tokens - (r.decay_tokens or 0) for r in singles]
    points: list[Point] = []
    for j, trunk in enumerate(singles):
        assert trunk.warmup_tokens is not None and trunk.decay_tokens is not None
        lo, hi = (
            max(floor, trunk.warmup_tokens, resume[1] if resume else 0),
            trunk.tokens - trunk.decay_tokens,
        )
        fits = sorted({b for b in starts[:j] if lo <= b <= hi})
        for k in range(1, min(MAX_BRANCHES, len(fits)) + 1):
            # The branches and the trunk evenly spaced in log D from the shortest length.
            picks = {fits[int(i)] for i in np.linspace(0, len(fits), k + 1)[:-1]}
            point: Point = (float(trunk.params), float(trunk.tokens), tuple(sorted(picks)))
            if resume is not None:
                point = (*point, resume)
            if point not in points:
                points.append(point)
    if not points:
        return []
    design = DesignSpec(kind="points", points=tuple(points), min_steps=family.design.min_steps)
    return design_runs(replace(family, design=design), vocab_size=vocab)[0]


def _in_band(params: float, tokens: float) -> bool:
    # Snapping moves N (and D to whole steps), so the band is checked on the built run.
    lo, hi = TOKENS_PER_PARAM_RANGE
    return lo <= tokens / params <= hi


def _design_longest_first(spec: SweepSpec, vocab: int) -> list[RunSpec]:
    """Design the points, dropping lengths shorter than ``design.min_steps`` whole steps."""
    assert spec.design.points
    longest = spec.design.points[-1:]
    first = design_runs(
        replace(spec, design=replace(spec.design, points=longest)), vocab_size=vocab
    )
    config = first[0][0].config_dict
    step = config["batch_size"] * config["shape"]["context_length"]
    keep = tuple(p for p in spec.design.points if round(p[1] / step) >= spec.design.min_steps)
    return design_runs(replace(spec, design=replace(spec.design, points=keep)), vocab_size=vocab)[0]


def plain_candidates(
    sizes: np.ndarray, step_tokens: int, runs: Runs, budget_flops: float
) -> list[Candidate]:
    """Candidates of imported runs: the user's sizes, lengths in whole steps of ``step_tokens``."""
    have = {
        (round(math.log(n), 2), round(math.log(t), 2))
        for n, t in zip(runs.column("params"), runs.column("tokens"), strict=True)
    }
    out = []
    for size in sizes:
        for r in _GRID_RATIOS:
            tokens = max(1, round(size * r / step_tokens)) * step_tokens
            cost = 6.0 * size * tokens
            if (
                cost <= budget_flops
                and _in_band(size, tokens)
                and (round(math.log(size), 2), round(math.log(tokens), 2)) not in have
            ):
                out.append(Candidate(float(size), float(tokens), cost))
    return out


def spec_table(spec_dict: dict[str, Any]) -> dict[str, Any]:
    """A SweepSpec's ``to_dict()`` (as the store keeps it) as the TOML tables the loader reads."""

    def clean(table: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in table.items() if v is not None}

    out = {"sweep": clean({k: spec_dict[k] for k in ("name", "seed", "store")})}
    for table in ("data", "model", "train", "budget", "execution", "design"):
        if clean(spec_dict[table]):
            out[table] = clean(spec_dict[table])
    if out.get("design", {}).get("points"):
        # A resumed point's (warmup, resume) pair reads back as the table the loader takes.
        out["design"]["points"] = [
            [*p[:3], {"warmup_tokens": p[3][0], "resume_tokens": p[3][1]}] if len(p) == 4 else p
            for p in out["design"]["points"]
        ]
    return out


def store_family(
    store_path: Path,
) -> tuple[SweepSpec | None, list[str], set[str], list, pd.DataFrame]:
    """The store's latest sweep spec, its sweeps' names, every key, the unfinished (N, D) and
    the stable-phase checkpoints it keeps."""
    with Store(store_path, readonly=True) as store:
        sweeps = store.sweeps()
        rows = store.runs()
        kept = store.kept_checkpoints()
        recorded = None
        if len(sweeps):
            recorded = store.sweep_spec(sweeps.sort_values("updated_at").iloc[-1]["name"])
    family = None if recorded is None else parse_spec(spec_table(recorded))
    open_rows = rows[rows["status"].isin(["planned", "running"])]
    count = np.where(
        open_rows["param_basis"] == "total",
        open_rows["params_total"],
        open_rows["params_non_embedding"],
    )
    pending = list(zip(count.astype(float), open_rows["tokens"].astype(float), strict=True))
    return family, list(sweeps["name"]), set(rows["key"]), pending, kept


def wsd_notes(candidates: list[Candidate]) -> list[str]:
    """What the WSD candidates cost, for the suggestion's notes."""
    notes = []
    if any(c.branches for c in candidates):
        notes.append(
            "WSD: a trunk and its cooldowns are one candidate at their whole cost; a new "
            "cooldown before a finished trunk's kept checkpoint (or on a trunk with none) "
            "costs a new trunk"
        )
    resumed = sum(bool(c.run and c.run.resume_tokens) for c in candidates)
    if resumed:
        notes.append(
            f"WSD: {resumed} candidates continue a finished run from its kept stable-phase "
            "checkpoint and cost only their steps after it"
        )
    return notes


def design_point(run: RunSpec) -> Point:
    """A chosen run as a ``points`` design's point: with its branch points if it has any, and
    the warmup and checkpoint it resumes from if it continues a kept stable phase."""
    branches = tuple(b.branch_tokens for b in run.branches)
    if run.resume_tokens:
        assert run.warmup_tokens is not None
        return (
            float(run.params),
            float(run.tokens),
            branches,
            (run.warmup_tokens, run.resume_tokens),
        )
    if branches:
        return (float(run.params), float(run.tokens), branches)
    return (float(run.params), float(run.tokens))
