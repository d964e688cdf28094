"""Law forms: registry, formulas, analytic Jacobians and Hessians against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.laws import LAWS, BaseLaw, Law, LawError, get_law
from scalinglab.laws.data_constrained import effective_count

# Hoffmann et al. (2022), eq. 10 (their Approach 3 fit).
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# Kaplan et al. (2020), eq. 1.5 and Table 2 (non-embedding N).
KAPLAN = {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
# Muennighoff et al. (2023): their Chinchilla-form refit and R_D* = 15.4, R_N* = 5.3.
MUENNIGHOFF = {
    "E": 1.87,
    "A": 521.0,
    "B": 1488.0,
    "alpha": 0.35,
    "beta": 0.353,
    "R_D_star": 15.4,
    "R_N_star": 5.3,
}
# A smoothly broken power law whose exponent flattens from 0.12 to 0.07 past x_b.
BROKEN = {"E": 1.7, "A": 40.0, "alpha": 0.12, "x_b": 1e19, "delta": -0.05}

CASES = [
    ("chinchilla", {}, HOFFMANN),
    ("kaplan-nd", {}, KAPLAN),
    ("power", {"x": "params"}, {"E": 1.5, "A": 300.0, "alpha": 0.3}),
    ("power", {"x": "tokens"}, {"E": 1.5, "A": 300.0, "alpha": 0.3}),
    ("power", {"x": "flops", "fix_E": True}, {"A": 3e3, "alpha": 0.05}),
    ("data-constrained", {}, {k: v for k, v in MUENNIGHOFF.items() if k != "R_N_star"}),
    ("data-constrained", {"excess_params": True}, MUENNIGHOFF),
    ("broken-power", {"x": "params"}, {**BROKEN, "x_b": 1e8}),  # the break inside the inputs
]


def _inputs(law: BaseLaw, n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = 10 ** rng.uniform(7, 10, n)
    tokens = 10 ** rng.uniform(9, 12, n)
    pool = {
        "params": params,
        "tokens": tokens,
        "flops": 6 * params * tokens,
        "unique_tokens": tokens / rng.uniform(0.5, 20, n),
    }
    return {k: pool[k] for k in law.inputs}


def test_registry_names():
    assert set(LAWS) == {"chinchilla", "kaplan-nd", "power", "data-constrained", "broken-power"}
    assert get_law("chinchilla").param_names == ("E", "A", "B", "alpha", "beta")
    assert get_law("power", x="flops", fix_E=False).param_names == ("E", "A", "alpha")
    assert get_law("power", fix_E=True).param_names == ("A", "alpha")
    for name in LAWS:
        assert isinstance(get_law(name), Law)


def test_unknown_law_and_options():
    with pytest.raises(LawError, match="unknown law 'nope'"):
        get_law("nope")
    with pytest.raises(LawError, match="power law: x must be one of"):
        get_law("power", x="steps")
    with pytest.raises(LawError, match="chinchilla"):
        get_law("chinchilla", x="flops")


def test_chinchilla_formula_and_6nd_inputs():
    law = get_law("chinchilla")
    n, d = 7e10, 1.4e12
    expected = HOFFMANN["E"] + HOFFMANN["A"] / n**0.34 + HOFFMANN["B"] / d**0.28
    assert law.predict(HOFFMANN, params=n, tokens=d) == pytest.approx(expected, rel=1e-12)
    # Any two of N, D, C stand for the third through C = 6·N·D.
    assert law.predict(HOFFMANN, params=n, flops=6 * n * d) == pytest.approx(expected, rel=1e-12)
    assert law.predict(HOFFMANN, tokens=d, flops=6 * n * d) == pytest.approx(expected, rel=1e-12)
    grid = law.predict(HOFFMANN, params=np.array([1e9, 1e10]), tokens=np.array([[1e10], [1e11]]))
    assert grid.shape == (2, 2)


def test_kaplan_formula():
    law = get_law("kaplan-nd")
    n, d = 1e9, 2e10
    k = KAPLAN
    expected = ((k["N_c"] / n) ** (k["alpha_N"] / k["alpha_D"]) + k["D_c"] / d) ** k["alpha_D"]
    assert law.predict(KAPLAN, params=n, tokens=d) == pytest.approx(expected, rel=1e-12)


def test_power_formula_and_pure_form():
    law = get_law("power", x="flops")
    c = np.array([1e18, 1e21])
    theta = {"E": 1.7, "A": 2e3, "alpha": 0.15}
    np.testing.assert_allclose(law.predict(theta, flops=c), 1.7 + 2e3 / c**0.15, rtol=1e-12)
    pure = get_law("power", x="flops", fix_E=True)
    np.testing.assert_allclose(pure.predict({"A": 2e3, "alpha": 0.05}, flops=c), 2e3 / c**0.05)


def test_data_constrained_reduces_to_chinchilla_on_unique_data():
    dc = get_law("data-constrained", excess_params=True)
    ch = get_law("chinchilla")
    n, d = np.array([1e8, 1e9]), np.array([2e9, 3e10])
    base = {k: MUENNIGHOFF[k] for k in ch.param_names}
    np.testing.assert_allclose(
        dc.predict(MUENNIGHOFF, params=n, tokens=d, unique_tokens=d),
        ch.predict(base, params=n, tokens=d),
        rtol=1e-12,
    )


def test_repeated_data_decays_as_muennighoff():
    # With R_D* = 15.4 (Muennighoff et al. 2023), 4 epochs are worth nearly 4 epochs of fresh
    # data, 40 epochs much less: U(1 + R*(1 − e^{−R/R*})) with R = epochs − 1.
    u = 1e9
    four = effective_count(np.array(u), np.array(3.0), 15.4)
    forty = effective_count(np.array(u), np.array(39.0), 15.4)
    assert four / (4 * u) == pytest.approx((1 + 15.4 * (1 - np.exp(-3 / 15.4))) / 4)
    assert four / (4 * u) > 0.9
    assert forty / (40 * u) < 0.5
    law = get_law("data-constrained")
    theta = {k: v for k, v in MUENNIGHOFF.items() if k != "R_N_star"}
    fresh = law.predict(theta, params=1e9, tokens=4e10, unique_tokens=4e10)
    repeated = law.predict(theta, params=1e9, tokens=4e10, unique_tokens=1e9)
    assert repeated > fresh


@pytest.mark.parametrize(("name", "options", "theta"), CASES)
def test_jacobian_matches_finite_differences(name, options, theta):
    law = get_law(name, **options)
    design = law.design(law.prepare_inputs(_inputs(law)))
    z = law.to_raw(theta)
    _, jac = law.log_predict_jac(z[None], design)
    assert jac.shape == (1, law.n_params, 40)
    for p in range(law.n_params):
        h = 1e-6 * (1 + abs(z[p]))
        up, down = z.copy(), z.copy()
        up[p] += h
        down[p] -= h
        fd = (law.log_predict(up[None], design) - law.log_predict(down[None], design)) / (2 * h)
        np.testing.assert_allclose(jac[0, p], fd[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("name", "options", "theta"), CASES)
def test_natural_gradient_matches_finite_differences(name, options, theta):
    law = get_law(name, **options)
    inputs = _inputs(law)
    grad = law.gradient(theta, **inputs)
    assert grad.shape == (40, law.n_params)
    for i, p in enumerate(law.param_names):
        h = 1e-6 * abs(theta[p])
        up, down = dict(theta), dict(theta)
        up[p] += h
        down[p] -= h
        fd = (law.predict(up, **inputs) - law.predict(down, **inputs)) / (2 * h)
        np.testing.assert_allclose(grad[:, i], fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(("name", "options", "theta"), CASES)
def test_weighted_hessian_matches_finite_differences(name, options, theta):
    law = get_law(name, **options)
    design = law.design(law.prepare_inputs(_inputs(law)))
    z = law.to_raw(theta)
    weights = np.random.default_rng(1).normal(size=(1, 40))
    hess = law.weighted_log_hessian(z[None], design, weights)[0]
    fd = np.empty_like(hess)
    for q in range(law.n_params):
        h = 1e-5 * (1 + abs(z[q]))
        up, down = z.copy(), z.copy()
        up[q] += h
        down[q] -= h
        j_up = law.log_predict_jac(up[None], design)[1][0] @ weights[0]
        j_down = law.log_predict_jac(down[None], design)[1][0] @ weights[0]
        fd[:, q] = (j_up - j_down) / (2 * h)
    # Closed forms (chinchilla, power) are exact; the default differentiates the Jacobian
    # forward with steps of 1e-6, good to about 1e-4 of the Hessian's scale.
    scale = max(1.0, float(np.max(np.abs(fd))))
    np.testing.assert_allclose(hess, fd, atol=1e-4 * scale)


def test_raw_parametrisation_round_trip_and_bounds():
    law = get_law("chinchilla")
    z = law.to_raw(HOFFMANN)
    assert z[0] == pytest.approx(np.log(1.69))
    back = law.from_raw(z)
    for k, v in HOFFMANN.items():
        assert back[k] == pytest.approx(v)
    bounds = law.raw_bounds({"alpha": (0.1, 1.0)})
    assert bounds[3] == pytest.approx([0.1, 1.0])
    with pytest.raises(LawError, match="no parameters gamma"):
        law.raw_bounds({"gamma": (0, 1)})
    with pytest.raises(LawError, match="must be > 0"):
        law.to_raw({**HOFFMANN, "A": -1.0})
    with pytest.raises(LawError, match="missing B"):
        law.to_raw({k: v for k, v in HOFFMANN.items() if k != "B"})


def test_missing_and_bad_inputs():
    law = get_law("chinchilla")
    with pytest.raises(LawError, match="missing tokens"):
        law.predict(HOFFMANN, params=1e9)
    with pytest.raises(LawError, match="unknown inputs steps"):
        law.predict(HOFFMANN, params=1e9, tokens=1e10, steps=3)
    with pytest.raises(LawError, match="finite and > 0"):
        law.predict(HOFFMANN, params=-1.0, tokens=1e10)


def test_derived_compute_optimal_exponent():
    # a = β/(α+β): with Hoffmann et al.'s α = 0.34, β = 0.28, a = 0.4516.
    assert get_law("chinchilla").derived(HOFFMANN)["a"] == pytest.approx(0.28 / 0.62)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_default_starts_are_finite_and_inside_bounds(name):
    law = get_law(name)
    inputs = _inputs(law, n=60)
    design = law.design(law.prepare_inputs(inputs))
    loss = np.random.default_rng(2).uniform(2.0, 4.0, 60)
    starts = law.default_starts(design, np.log(loss))
    assert starts.shape[1] == law.n_params and len(starts) >= 10
    assert np.all(np.isfinite(starts))
    bounds = law.raw_bounds()
    assert np.all(starts >= bounds[:, 0]) and np.all(starts <= bounds[:, 1])


def test_broken_power_law_formula_and_limits():
    law = get_law("broken-power", x="flops", smoothness=0.5)
    c = np.array([1e17, 1e19, 1e21])
    got = law.predict(BROKEN, flops=c)
    f = 0.5
    want = BROKEN["E"] + BROKEN["A"] * c ** -BROKEN["alpha"] * (
        1 + (c / BROKEN["x_b"]) ** (1 / f)
    ) ** (-BROKEN["delta"] * f)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # Far from the break the local exponent of L − E is α below it and α + Δ above it.
    lo = np.log(law.predict(BROKEN, flops=[1e13, 1.01e13]) - BROKEN["E"])
    hi = np.log(law.predict(BROKEN, flops=[1e25, 1.01e25]) - BROKEN["E"])
    assert -(lo[1] - lo[0]) / np.log(1.01) == pytest.approx(BROKEN["alpha"], abs=1e-4)
    assert -(hi[1] - hi[0]) / np.log(1.01) == pytest.approx(
        BROKEN["alpha"] + BROKEN["delta"], abs=1e-4
    )
