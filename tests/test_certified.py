"""The certified truth (harness.generate.certified) against theory: NIST's own certified values, a
brute-force maximization of the likelihood written from the matrices, scipy's one-way ANOVA and
mixedref's objective at the same θ."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import optimize, stats

from harness.core.datasets import load_dataset
from harness.generate.certified import (
    FORMULA,
    NIST_SETS,
    closed_form,
    exact_values,
    input_truth,
    one_way_sums,
    read_nist,
)


@pytest.mark.parametrize("name", NIST_SETS)
def test_exact_arithmetic_on_the_decimal_data_gives_the_certified_mean_squares(name):
    """NIST's certified mean squares are the exact ones of its decimal data, printed to 15
    digits: reproduced to the last of them (exactly where the 15 digits are the whole value)."""
    s = read_nist(name)
    sums = one_way_sums(s.groups, exact_values(s.responses))
    assert sums.k - 1 == s.df_between and sums.N - sums.k == s.df_within
    for exact, certified in ((sums.ms_between, s.ms_between), (sums.ms_within, s.ms_within)):
        assert abs(exact - certified) <= Fraction(1, 2) * Fraction(10) ** -14 * abs(certified)
    if name != "AtmWtAg":  # its within mean square has more than 15 significant digits
        assert (sums.ms_between, sums.ms_within) == (s.ms_between, s.ms_within)


def test_the_shipped_csv_holds_nists_data_and_the_loader_reads_float64_as_python_does():
    for name in ("SiRstv", "SmLs09"):
        s, d = read_nist(name), load_dataset(name)
        assert list(d.Treatment.astype(str)) == list(s.groups)
        assert [float(t) for t in s.responses] == list(d.Response)


def test_sums_of_squares_match_scipys_one_way_anova():
    d = load_dataset("SmLs01")
    sums = one_way_sums(d.Treatment, exact_values(d.Response))
    F = stats.f_oneway(*[g.to_numpy() for _, g in d.groupby("Treatment", observed=True).Response])
    assert float(sums.ms_between / sums.ms_within) == pytest.approx(F.statistic, rel=1e-12)


def _minus_two_log_lik(params, y, groups, REML):
    """-2 log (restricted) likelihood written from the matrices: V = σ²I + τ²ZZ', β̂ by GLS;
    REML adds log|X'V⁻¹X| and drops one 2π (lme4's REML criterion)."""
    sigma2, tau2 = params
    N = len(y)
    Z = (groups[:, None] == np.unique(groups)[None, :]).astype(float)
    V = sigma2 * np.eye(N) + tau2 * Z @ Z.T
    X = np.ones((N, 1))
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    value = np.linalg.slogdet(V)[1] + r @ Vi @ r + (N - REML) * math.log(2 * math.pi)
    if REML:
        value += np.linalg.slogdet(X.T @ Vi @ X)[1]
    return value, float(beta[0])


def _brute_force(y, groups, REML):
    """Minimize the matrix criterion over (σ², τ² ≥ 0) from a start away from the answer."""
    scale = float(np.var(y))  # the parameters in units of var(y), so the steps are O(1)
    f = lambda q: _minus_two_log_lik(q * scale, y, groups, REML)[0]  # noqa: E731
    best = optimize.minimize(f, [1.0, 1.0], method="L-BFGS-B", bounds=[(1e-8, None), (0, None)],
                             options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000})
    params = best.x * scale
    return params, best.fun, _minus_two_log_lik(params, y, groups, REML)[1]


def _centred(name):
    d = load_dataset(name)
    y = d.Response.to_numpy() - round(float(d.Response.mean()), 1)
    return d.Treatment.astype(str).to_numpy(), y


@pytest.mark.parametrize("name,REML", [("SiRstv", True), ("SiRstv", False),
                                        ("AtmWtAg", True), ("AtmWtAg", False)])
def test_closed_form_matches_a_brute_force_fit(name, REML):
    """SiRstv under ML is at the boundary (SSB/k < MSW), under REML inside; both forms hold."""
    groups, y = _centred(name)
    t = input_truth(groups, y, REML)
    (sigma2, tau2), crit, beta = _brute_force(y, groups, REML)
    assert t.boundary == (name == "SiRstv" and not REML)
    assert float(t.criterion) == pytest.approx(crit, rel=1e-10)
    assert float(t.sigma2) == pytest.approx(sigma2, rel=1e-5)
    assert float(t.var_g) == pytest.approx(tau2, rel=1e-4, abs=1e-7 * sigma2)
    assert float(t.intercept) == pytest.approx(beta, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("REML", [True, False])
def test_closed_form_at_the_boundary_matches_a_brute_force_fit(REML):
    """A layout whose groups differ less than chance (MSB < MSW): var(g) = 0 under both."""
    groups = np.repeat(["a", "b", "c"], 4)
    y = np.array([1.0, 3.0, 2.0, 6.0, 2.0, 4.0, 3.0, 3.0, 3.0, 2.0, 5.0, 2.0])
    t = input_truth(groups, y, REML)
    assert t.boundary and t.var_g == 0
    (sigma2, tau2), crit, _ = _brute_force(y, groups, REML)
    assert tau2 < 1e-6
    assert float(t.sigma2) == pytest.approx(sigma2, rel=1e-6)
    assert float(t.criterion) == pytest.approx(crit, rel=1e-10)


@pytest.mark.parametrize("name", ["SiRstv", "SmLs01", "SmLs07"])
@pytest.mark.parametrize("REML", [True, False])
def test_criterion_is_mixedrefs_objective_at_the_same_theta(name, REML):
    """The closed-form criterion is what lme4's profiled criterion (mixedref's PLS objective)
    gives at θ = sqrt(var(g)/σ²) of the closed form."""
    import mixedref

    d = load_dataset(name)
    t = input_truth(d.Treatment, d.Response, REML)
    objective = mixedref.devfun(FORMULA, d, REML=REML)
    theta = math.sqrt(t.var_g / t.sigma2)
    assert objective(np.array([theta])) == pytest.approx(float(t.criterion), rel=1e-9)


def test_closed_form_refuses_an_unbalanced_layout():
    with pytest.raises(ValueError, match="not a balanced one-way layout"):
        one_way_sums(["a", "a", "b"], [Fraction(1), Fraction(2), Fraction(3)])


def test_ml_and_reml_interior_forms_from_mean_squares():
    """Hand-checked: k = 3, n = 2, SSB = 12, SSW = 3: MSW = 1; REML λ = MSB = 6 -> var(g) =
    5/2; ML λ = SSB/k = 4 -> var(g) = 3/2."""
    reml = closed_form(3, 2, Fraction(12), Fraction(3), True)
    ml = closed_form(3, 2, Fraction(12), Fraction(3), False)
    assert (reml.sigma2, reml.var_g) == (1, Fraction(5, 2))
    assert (ml.sigma2, ml.var_g) == (1, Fraction(3, 2))
