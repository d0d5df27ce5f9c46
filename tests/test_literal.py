"""mixedref.literal against closed forms: OLS as the random effects vanish, the balanced one-way
ANOVA estimators, the ML/REML sigma^2 ratio, and clear errors for bad input."""

from __future__ import annotations

import math
from types import SimpleNamespace

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


def test_slopes_omega_inv_is_the_random_slopes_covariance():
    """Z Omega^{-1} Z' (the code's) equals the closed-form covariance of y / sigma^2 under
    y_ij = alpha_i + eta_i x_ij: a^2 + rho a e (x + x') + e^2 x x' within a group, 0 across;
    and its 2x2 block is Lambda Lambda' from SlopesFit.lme4_theta (lme4's Cholesky theta)."""
    rng = np.random.default_rng(4)
    m, n = 4, 23
    codes = rng.integers(0, m, n)
    x = rng.normal(size=n)
    a, e, rho = 0.9, 0.2, 0.35
    V = literal.random_slopes_Z(codes, x, m) @ literal.slopes_omega_inv((a, e, rho), m)
    V = V @ literal.random_slopes_Z(codes, x, m).T
    same = codes[:, None] == codes[None, :]
    expected = np.where(same, a * a + rho * a * e * (x[:, None] + x[None, :])
                        + e * e * np.outer(x, x), 0.0)
    np.testing.assert_allclose(V, expected, rtol=1e-13, atol=1e-15)
    t = literal.SlopesFit.lme4_theta.fget(SimpleNamespace(theta=np.array([a, e, rho])))
    lam = np.array([[t[0], 0.0], [t[1], t[2]]])
    omega = literal.slopes_omega_inv((a, e, rho), m)
    np.testing.assert_allclose(lam @ lam.T, omega[np.ix_([0, m], [0, m])], rtol=1e-14)


@pytest.mark.parametrize("REML", [False, True])
def test_boundary_rho_one_is_a_single_random_effect(REML):
    """At rho = 1, alpha_i + eta_i x = (a + e x) u_i with u_i ~ N(0, sigma^2): the criterion
    equals that of one random effect per group with covariate a + e x and Omega^{-1} = I."""
    y, X, _, codes = one_way()
    x = np.tile(np.arange(5.0), 6)
    a, e = 0.5, 0.2
    Zs = literal.random_slopes_Z(codes, x, 6)
    ev = literal.profiled(literal.slopes_omega_inv((a, e, 1.0), 6), X, Zs, y, REML=REML)
    Zeq = np.zeros((len(y), 6))
    Zeq[np.arange(len(y)), codes] = a + e * x
    eq = literal.profiled(np.eye(6), X, Zeq, y, REML=REML)
    assert ev.objective == pytest.approx(eq.objective, rel=1e-10)
    assert ev.sigma2 == pytest.approx(eq.sigma2, rel=1e-10)
    np.testing.assert_allclose(ev.beta, eq.beta, rtol=1e-10)


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
