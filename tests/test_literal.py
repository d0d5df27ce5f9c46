"""mixedref.literal against closed forms: OLS as the random effects vanish, the balanced one-way
ANOVA estimators, the ML/REML sigma^2 ratio, and clear errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from mixedref import literal
from mixedref.errors import DataError


def one_way(a: int = 6, b: int = 5, seed: int = 1):
    """A balanced one-way layout: a groups of b observations, y = 10 + alpha_i + eps."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(a), b)
    y = 10.0 + rng.normal(0, 2.0, a)[codes] + rng.normal(0, 1.0, a * b)
    Z = np.zeros((a * b, a))
    Z[np.arange(a * b), codes] = 1.0
    return y, np.ones((a * b, 1)), Z, codes


@pytest.mark.parametrize("REML", [False, True])
def test_vanishing_random_effects_give_ols(REML):
    rng = np.random.default_rng(0)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=n)
    Z = np.zeros((n, 4))
    Z[np.arange(n), rng.integers(0, 4, n)] = 1.0
    beta_ols, rss = np.linalg.lstsq(X, y, rcond=None)[:2]
    p = X.shape[1]
    denom = n - p if REML else n
    for omega_inv in (np.zeros((4, 4)), 1e-14 * np.eye(4)):  # Omega -> infinity
        ev = literal.profiled(omega_inv, X, Z, y, REML)
        np.testing.assert_allclose(ev.beta, beta_ols, rtol=1e-9)
        assert ev.sigma2 == pytest.approx(rss[0] / denom, rel=1e-9)
        # OLS (restricted) log-likelihood in closed form
        s2 = rss[0] / denom
        expected = -0.5 * denom * (1 + math.log(2 * math.pi * s2))
        if REML:
            expected -= 0.5 * np.linalg.slogdet(X.T @ X)[1]
        assert ev.loglik == pytest.approx(expected, rel=1e-9)
        assert ev.objective == pytest.approx(-2 * expected, rel=1e-9)


@pytest.mark.parametrize("REML", [False, True])
def test_balanced_one_way_matches_anova_estimators(REML):
    a, b = 6, 5
    y, X, Z, codes = one_way(a, b)
    means = np.array([y[codes == i].mean() for i in range(a)])
    ssw = float(((y - means[codes]) ** 2).sum())
    ssb = float(b * ((means - y.mean()) ** 2).sum())
    msw, msb = ssw / (a * (b - 1)), ssb / (a - 1)
    # closed forms (interior optimum): sigma^2 = MSW for both; sigma_a^2 differs
    sigma2_a = (msb - msw) / b if REML else (ssb / a - msw) / b
    assert sigma2_a > 0, "the design must have an interior optimum for the closed form"

    def neg(t: float) -> float:
        return -literal.profiled(t * t * np.eye(a), X, Z, y, REML).loglik

    t = minimize_scalar(neg, bounds=(1e-6, 100), method="bounded", options={"xatol": 1e-10}).x
    ev = literal.profiled(t * t * np.eye(a), X, Z, y, REML)
    assert ev.sigma2 == pytest.approx(msw, rel=1e-6)
    assert t * t * ev.sigma2 == pytest.approx(sigma2_a, rel=1e-6)
    assert ev.beta[0] == pytest.approx(y.mean(), rel=1e-12)  # balanced: GLS mean = grand mean


def test_reml_sigma2_is_ml_sigma2_times_n_over_n_minus_p():
    rng = np.random.default_rng(3)
    n, m = 60, 6
    codes = rng.integers(0, m, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = 1 + 2 * x + rng.normal(size=m)[codes] + rng.normal(size=n)
    Z = literal.random_slopes_Z(codes, x, m)
    omega_inv = literal.slopes_omega_inv((0.8, 0.3, -0.4), m)
    ml = literal.profiled(omega_inv, X, Z, y, REML=False)
    reml = literal.profiled(omega_inv, X, Z, y, REML=True)
    assert reml.sigma2 / ml.sigma2 == pytest.approx(n / (n - 2), rel=1e-12)
    np.testing.assert_allclose(reml.beta, ml.beta, rtol=1e-12)


def test_slopes_parametrization_equals_lme4_cholesky():
    """Omega^{-1} built from the post's theta equals Lambda Lambda' from lme4's theta."""
    fit_theta = np.array([0.9, 0.2, 0.35])
    a, e, rho = fit_theta
    lam = np.array([[a, 0.0], [rho * e, e * math.sqrt(1 - rho * rho)]])
    block = lam @ lam.T
    np.testing.assert_allclose(block, [[a * a, rho * a * e], [rho * a * e, e * e]], rtol=1e-14)


def test_boundary_rho_one_is_finite():
    y, X, Z, codes = one_way()
    x = np.tile(np.arange(5.0), 6)
    Zs = literal.random_slopes_Z(codes, x, 6)
    ev = literal.profiled(literal.slopes_omega_inv((0.5, 0.2, 1.0), 6), X, Zs, y, REML=True)
    assert math.isfinite(ev.objective)


def test_bad_input_errors():
    y, X, Z, _ = one_way()
    omega_inv = np.eye(Z.shape[1])
    with pytest.raises(DataError, match="row counts differ"):
        literal.profiled(omega_inv, X[:-1], Z, y, True)
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(DataError, match=r"y has a non-finite value \(nan\) at \(3,\)"):
        literal.profiled(omega_inv, X, Z, y_nan, True)
    with pytest.raises(DataError, match="p = 31 columns for n = 30"):
        literal.profiled(omega_inv, np.ones((30, 31)), Z, y, True)
    with pytest.raises(DataError, match="rank deficient"):
        literal.profiled(omega_inv, np.column_stack([X, 2 * X]), Z, y, True)
    with pytest.raises(DataError, match="must be 6 x 6"):
        literal.profiled(np.eye(3), X, Z, y, True)
    n = literal.MAX_DENSE_N + 1
    with pytest.raises(DataError, match="exceeds its limit"):
        literal.check_dense_inputs(np.ones((n, 1)), np.ones((n, 1)), np.ones(n))


def test_precision_loss_is_refused_not_silently_wrong():
    """y = 1e9 + noise: the REML quadratic form cancels catastrophically in dense products."""
    y, X, Z, _ = one_way()
    for REML in (True, False):
        with pytest.raises(DataError, match="lost precision"):
            literal.profiled(0.25 * np.eye(Z.shape[1]), X, Z, 1e9 + 1e-3 * y, REML)
