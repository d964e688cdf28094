"""Sweep designs: IsoFLOP, grid and WSD reuse; budgets; coverage; wall-time estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalinglab.counting import count_params, flops_per_token
from scalinglab.sweep.budget import BudgetError, ThroughputModel, makespan_s, plan_sweep
from scalinglab.sweep.coverage import check_coverage
from scalinglab.sweep.design import design_runs
from scalinglab.sweep.runspec import run_key
from scalinglab.sweep.spec import SpecError, parse_spec
from scalinglab.train.schedule import branch_total_steps

HEAD = """
[data]
vocab_size = 256
[model]
context_length = 32
[train]
batch_size = 8
"""
STEP_TOKENS = 8 * 32


def spec(design: str, extra: str = "") -> object:
    return parse_spec(HEAD + extra + "[design]\n" + design)


ISO = 'kind = "isoflop"\nflops = [1e11, 1e12, 1e13]\nsizes_per_level = 5\n'


def test_isoflop_levels_sizes_and_lengths():
    runs, _ = design_runs(spec(ISO))
    assert len(runs) == 15
    for r in runs:
        assert r.tokens % STEP_TOKENS == 0
        # D is C / (6·N) rounded to whole steps, so C is hit to within half a step's FLOPs.
        half_step = 0.5 * STEP_TOKENS * 6 * r.params
        assert abs(r.flops - r.compute_level) <= half_step + 1e-6
        assert r.params == count_params(r.shape).non_embedding
    for level in (1e11, 1e12, 1e13):
        sizes = sorted(r.params for r in runs if r.compute_level == level)
        assert len(sizes) == 5
        # Centred in log N on the expected optimum sqrt(C / (6·20)) (Hoffmann et al. 2022).
        centre = math.exp(np.mean(np.log(sizes)))
        assert centre == pytest.approx(math.sqrt(level / 120), rel=0.35)
        # Spread over about the asked decade (snapping moves the ends a little).
        assert math.log10(sizes[-1] / sizes[0]) == pytest.approx(1.0, abs=0.3)


def test_keys_are_stable_and_depend_on_what_changes_the_result():
    a, _ = design_runs(spec(ISO))
    b, _ = design_runs(spec(ISO))
    assert [r.key for r in a] == [r.key for r in b]
    assert len({r.key for r in a}) == len(a)
    seeded, _ = design_runs(parse_spec("[sweep]\nseed = 1\n" + HEAD + "[design]\n" + ISO))
    assert not {r.key for r in a} & {r.key for r in seeded}
    config = a[0].config_dict
    assert run_key(config) == a[0].key
    assert run_key(config | {"threads": 7}) == a[0].key, "threads change speed, not results"
    assert run_key(config | {"lr": 0.123}) != a[0].key


def test_grid_and_impossible_sizes():
    runs, _ = design_runs(spec('kind = "grid"\nparams = [2e4, 1e5]\ntokens = [1e5, 4e5]\n'))
    assert len(runs) == 4
    assert {r.tokens for r in runs} == {round(t / STEP_TOKENS) * STEP_TOKENS for t in (1e5, 4e5)}
    with pytest.raises(SpecError, match=r"^design\.params\[0\]: 10 non-embedding"):
        design_runs(spec('kind = "grid"\nparams = [10, 1e5]\ntokens = [1e5]\n'))
    with pytest.raises(SpecError, match=r"^design\.tokens\[0\]: .* fewer than design\.min_steps"):
        design_runs(spec('kind = "grid"\nparams = [1e5]\ntokens = [1000]\n'))
    with pytest.raises(SpecError, match=r"^design\.flops: the level 1e\+06"):
        design_runs(spec('kind = "isoflop"\nflops = [1e6]\n'))


def test_wsd_branches_follow_the_trainer_schedule():
    s = spec('kind = "wsd"\nparams = [2e4, 1e5]\ntokens = 1e6\nbranch_fractions = [0.25, 0.5]\n')
    runs, _ = design_runs(s)
    assert len(runs) == 2 and all(r.schedule == "wsd" for r in runs)
    steps = round(1e6 / STEP_TOKENS)
    for r in runs:
        assert r.tokens == steps * STEP_TOKENS
        assert [b.branch_tokens for b in r.branches] == [
            round(f * r.tokens / STEP_TOKENS) * STEP_TOKENS for f in (0.25, 0.5)
        ]
        for b in r.branches:
            end_steps = branch_total_steps(b.branch_tokens // STEP_TOKENS, 0.2)
            assert b.tokens == end_steps * STEP_TOKENS
            assert b.flops == pytest.approx(6 * r.params * b.tokens)
        cooldowns = sum(b.tokens - b.branch_tokens for b in r.branches)
        assert r.cost_flops == pytest.approx(6 * r.params * (r.tokens + cooldowns))
        assert r.points == 3
    with pytest.raises(SpecError, match=r"^design\.branch_fractions\[0\]: .* past the stable"):
        design_runs(spec('kind = "wsd"\nparams = [1e5]\ntokens = 1e6\nbranch_fractions = [0.9]\n'))
    with pytest.raises(SpecError, match=r"^train\.schedule: a wsd design"):
        design_runs(
            spec(
                'kind = "wsd"\nparams = [1e5]\ntokens = 1e6\nbranch_fractions = [0.5]\n',
                extra='schedule = "cosine"\n',
            )
        )


def test_a_point_with_branches_is_the_wsd_designs_run():
    """``[N, T, [b...]]`` in a points design plans the run a wsd design plans for that size."""
    wsd, _ = design_runs(
        spec('kind = "wsd"\nparams = [1e5]\ntokens = 1e6\nbranch_tokens = [2e5, 4.5e5]\n')
    )
    points = 'kind = "points"\npoints = [[1e5, 1e6, [2e5, 4.5e5]], [2e4, 5e5]]\n'
    runs, _ = design_runs(spec(points, extra='schedule = "wsd"\n'))
    assert runs[0] == wsd[0] and runs[0].points == 3
    assert runs[1].branches == () and runs[1].schedule == "wsd"
    with pytest.raises(SpecError, match=r"^design\.points\[0\]\[2\]: cooldown branches need"):
        design_runs(spec(points))  # the trainer's default schedule has no stable phase
    with pytest.raises(SpecError, match=r"^design\.points\[0\]\[2\]\[0\]: .* past the stable"):
        design_runs(
            spec('kind = "points"\npoints = [[1e5, 1e6, [9e5]]]\n', extra='schedule = "wsd"\n')
        )


def test_a_resumed_point_pins_its_warmup_and_costs_its_steps_after_the_checkpoint():
    """``[N, T, [], {warmup_tokens, resume_tokens}]``: the run continuing a kept stable phase."""
    wsd = 'schedule = "wsd"\n'

    def point(text: str) -> str:
        return f'kind = "points"\npoints = [{text}]\n'

    # 3 906 steps of 256 tokens (≈ 1e6 tokens): the cooldown starts at step 3 125 (800 000 tokens).
    (run,) = design_runs(
        spec(point("[1e5, 1e6, [], {warmup_tokens = 2560, resume_tokens = 512000}]"), wsd)
    )[0]
    (whole,) = design_runs(spec(point("[1e5, 1e6]"), 'schedule = "wsd"\nwarmup_tokens = 2560\n'))[0]
    assert run.key == whole.key and run.warmup_tokens == 2560  # the same run: the same key
    assert run.resume_tokens == 512000 and whole.resume_tokens == 0
    assert run.cost_flops == pytest.approx(whole.cost_flops * (1 - 512000 / run.tokens))
    bad = {
        "[1e5, 1e6, [], {warmup_tokens = 2560, resume_tokens = 900096}]": "past the run's cooldown",
        "[1e5, 1e6, [], {warmup_tokens = 2560, resume_tokens = 512001}]": "whole number of steps",
        "[1e5, 1e6, [2e5], {warmup_tokens = 2560, resume_tokens = 512000}]": "branch point 199936",
    }
    for text, message in bad.items():
        with pytest.raises(
            SpecError, match=rf"^design\.points\[0\]\[3\]\.resume_tokens: .*{message}"
        ):
            design_runs(spec(point(text), wsd))
    with pytest.raises(SpecError, match=r"cooldown branches need train.schedule = 'wsd'"):
        design_runs(spec(point("[1e5, 1e6, [], {warmup_tokens = 0, resume_tokens = 2560}]")))
    for text, message in {
        "[1e5, 1e6, [], {warmup_tokens = 0}]": r"\[3\]\.resume_tokens: missing",
        "[1e5, 1e6, [], {resume = 5}]": r"\[3\]\.resume: unknown key",
        "[1e5, 1e6, [], 7]": r"\[3\]: must be a table",
        "[1e5, 1e6, [], {warmup_tokens = 2560, resume_tokens = 2e6}]": "must lie between",
    }.items():
        with pytest.raises(SpecError, match=message):
            spec(point(text), wsd)


def test_schedule_warmup_and_decay_as_the_trainer_resolves_them():
    cosine, _ = design_runs(spec('kind = "grid"\nparams = [2e4]\ntokens = [1e6]\n'))
    steps = cosine[0].tokens // STEP_TOKENS
    # The trainer's defaults: warmup 5 % of the steps; a cosine decays over the whole run.
    assert cosine[0].warmup_tokens == round(0.05 * steps) * STEP_TOKENS
    assert cosine[0].decay_tokens == cosine[0].tokens
    wsd, _ = design_runs(
        spec('kind = "wsd"\nparams = [2e4]\ntokens = 1e6\nbranch_fractions = [0.5]\n')
    )
    # WSD decays over its final cooldown only: 20 % of the steps (Hägele et al. 2024).
    assert wsd[0].decay_tokens == round(0.2 * steps) * STEP_TOKENS


def test_aspect_options_reach_the_shape_rule():
    grid = 'kind = "grid"\nparams = [5e3]\ntokens = [1e6]\n'
    with pytest.raises(SpecError, match=r"^design\.params\[0\]: 5e\+03 .* cannot be built"):
        design_runs(spec(grid))
    # A lower aspect_min admits one layer of width 24: 6 984 non-embedding parameters.
    narrow = HEAD.replace("[model]", "[model]\naspect_min = 16")
    runs, _ = design_runs(parse_spec(narrow + "[design]\n" + grid))
    assert (runs[0].shape.n_layer, runs[0].shape.d_model) == (1, 24)
    assert runs[0].params == count_params(runs[0].shape).non_embedding == 6984


def test_lr_ref_width_scales_each_runs_learning_rate_inversely_with_width():
    grid = 'kind = "grid"\nparams = [1e5, 1e6]\ntokens = [1e6]\n'
    scaled = HEAD.replace("batch_size = 8", "batch_size = 8\nlr = 3e-3\nlr_ref_width = 64")
    runs, _ = design_runs(parse_spec(scaled + "[design]\n" + grid))
    plain, _ = design_runs(
        parse_spec(
            HEAD.replace("batch_size = 8", "batch_size = 8\nlr = 3e-3") + "[design]\n" + grid
        )
    )
    for run, base in zip(runs, plain, strict=True):
        assert run.config_dict["lr"] == pytest.approx(3e-3 * 64 / run.shape.d_model)
        assert base.config_dict["lr"] == 3e-3
        # At the reference width the lr, and so the run, are the same.
        assert (run.key == base.key) == (run.shape.d_model == 64)
    assert {r.shape.d_model for r in runs} != {64}
    assert "lr_ref_width" not in runs[0].config_dict
    with pytest.raises(SpecError, match=r"^train\.lr_ref_width: "):
        parse_spec(HEAD.replace("batch_size = 8", "lr_ref_width = 0") + "[design]\n" + grid)


def test_per_operation_flops_and_total_basis():
    s = parse_spec(
        HEAD.replace("[model]", '[model]\nparam_basis = "total"\nflops_method = "per_operation"')
        + "[design]\n"
        + ISO
    )
    runs, _ = design_runs(s)
    for r in runs:
        assert r.params == count_params(r.shape).total
        assert r.flops == pytest.approx(flops_per_token(r.shape).per_operation * r.tokens)


def test_budget_refused_or_trimmed_with_the_reason():
    runs, _ = design_runs(spec(ISO))
    need = sum(r.cost_flops for r in runs)
    with pytest.raises(BudgetError, match=r"^budget\.flops: the design needs .* over budget"):
        plan_sweep(spec(ISO, extra=f"[budget]\nflops = {need / 2:.6g}\n"))
    trimmed = plan_sweep(spec(ISO, extra=f'[budget]\nflops = {need / 2:.6g}\non_over = "trim"\n'))
    assert {r.compute_level for r in trimmed.runs} == {1e11, 1e12}
    assert trimmed.total_flops <= need / 2
    assert "dropped the level 1e+13 FLOP (5 runs)" in trimmed.trimmed[0]
    with pytest.raises(BudgetError, match="even the cheapest"):
        plan_sweep(spec(ISO, extra='[budget]\nflops = 1e9\non_over = "trim"\n'))
    fits = plan_sweep(spec(ISO, extra=f"[budget]\nflops = {need * 1.01:.6g}\n"))
    assert len(fits.runs) == 15 and not fits.trimmed


def test_wall_clock_budget_uses_measured_throughput():
    s = spec(ISO, extra='[budget]\nwall_clock_s = 60\non_over = "trim"\n')
    with pytest.raises(BudgetError, match=r"^budget\.wall_clock_s: .* needs a measured"):
        plan_sweep(s)
    runs, _ = design_runs(s)
    per_token = sorted(flops_per_token(r.shape).per_operation for r in runs)
    tp = ThroughputModel((per_token[0], per_token[-1]), (2e5, 5e4), device="cpu", threads=1)
    plan = plan_sweep(s, throughput=tp, workers=2)
    assert plan.est_wall_s is not None and plan.est_wall_s <= 60
    assert plan.est_wall_s == pytest.approx(makespan_s([tp.seconds(r) for r in plan.runs], 2))
    assert plan.trimmed and "budget.wall_clock_s" in plan.trimmed[0]
    durations = [tp.seconds(r) for r in plan.runs]
    assert durations == sorted(durations, reverse=True), "runs are submitted longest first"


def test_throughput_model_interpolates_in_log_space():
    runs, _ = design_runs(spec(ISO))
    small = min(runs, key=lambda r: r.params)
    large = max(runs, key=lambda r: r.params)
    fs, fl = (flops_per_token(r.shape).per_operation for r in (small, large))
    tp = ThroughputModel((fs, fl), (1e5, 1e4), device="cpu", threads=1)
    assert tp.tokens_per_second(small.shape) == pytest.approx(1e5)
    assert tp.tokens_per_second(large.shape) == pytest.approx(1e4)
    mid = next(r for r in runs if fs < flops_per_token(r.shape).per_operation < fl)
    t = (math.log(flops_per_token(mid.shape).per_operation) - math.log(fs)) / math.log(fl / fs)
    assert tp.tokens_per_second(mid.shape) == pytest.approx(1e5 * 10 ** (-t))


def test_makespan_longest_first():
    assert makespan_s([4, 1, 1, 1, 1], 2) == 4
    assert makespan_s([1, 2, 3], 1) == 6
    assert makespan_s([3, 3, 2, 2, 2], 2) == 7  # LPT's known worst case here; optimum is 6


def test_coverage_warns_on_thin_designs():
    good = check_coverage(design_runs(spec(ISO))[0])
    assert good.compute_decades == pytest.approx(2.0, abs=0.01)
    assert good.sizes_per_level == {1e11: 5, 1e12: 5, 1e13: 5}
    assert good.ok, good.warnings
    thin = check_coverage(
        design_runs(spec('kind = "isoflop"\nflops = [1e12]\nsizes_per_level = 2\n'))[0]
    )
    text = " ".join(thin.warnings)
    assert "has 2 size(s): at least 3" in text
    assert "compute spans 0.00 decades" in text
    assert "2 distinct N" in text
    four = check_coverage(design_runs(spec(ISO.replace("5\n", "4\n")))[0])
    assert any("5 or more" in w for w in four.warnings)
    # The diagonal of a grid moves N and D together: log N and log D are collinear.
    grid, _ = design_runs(
        spec('kind = "grid"\nparams = [2e4, 6e4, 2e5]\ntokens = [1e5, 3e5, 1e6]\n')
    )
    sizes = sorted({r.params for r in grid})
    lengths = sorted({r.tokens for r in grid})
    diagonal = [r for r in grid if sizes.index(r.params) == lengths.index(r.tokens)]
    assert len(diagonal) == 3
    warn = " ".join(check_coverage(diagonal).warnings)
    assert "correlated at +1.00" in warn and "D/N spans" in warn
