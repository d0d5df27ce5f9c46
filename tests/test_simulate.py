"""simulate() by its moments: R's generator is not numpy's, so the draws cannot match R's number
for number; their means, variances and covariances must match the fitted model's closed forms
(E y = Xβ, Var y = σ²(ZΛΛᵀZᵀ + W⁻¹) for new random effects; the family's mean and variance at
the fitted μ for GLMMs with the modes kept). Bounds are 5 standard errors of the Monte Carlo
estimate, so a correct simulator fails with probability below 1e-5 per check."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedref
from harness.core.datasets import load_dataset
from mixedref.errors import MixedrefError
from mixedref.frontend.reterm import split_theta

NSIM = 4000
Z_SE = 5.0


@pytest.fixture(scope="module")
def sleep() -> mixedref.LmerFit:
    return mixedref.lmer("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))


def _marginal_covariance(fit) -> np.ndarray:
    """σ²(Z T Tᵀ Zᵀ + W⁻¹) over the observations, from the fit's θ, σ and terms."""
    m = fit.model
    n = m.n
    V = np.diag(np.ones(n) if m.weights is None else 1.0 / m.weights)
    for term, th in zip(m.reterms, split_theta(fit.theta, m.reterms), strict=True):
        S = term.covariance(th)
        same = term.codes[:, None] == term.codes[None, :]
        V += same * (term.X @ S @ term.X.T)
    return fit.sigma**2 * V


def _var_se(y: np.ndarray) -> np.ndarray:
    """The Monte Carlo standard error of each row's sample variance, from the draws' own
    fourth moments (counts and proportions are far from normal)."""
    d2 = (y - y.mean(axis=1, keepdims=True)) ** 2
    return np.sqrt(d2.var(axis=1, ddof=1) / y.shape[1])


def _within(sample: np.ndarray, expected: np.ndarray, se: np.ndarray) -> None:
    worst = np.max(np.abs(sample - expected) / se)
    assert worst < Z_SE, f"{worst:.2f} standard errors off"


def test_new_random_effects_give_the_marginal_moments(sleep) -> None:
    y = sleep.simulate(NSIM, seed=20261201).to_numpy()
    V = _marginal_covariance(sleep)
    mean = sleep.model.X @ sleep.fixef.to_numpy()
    var = np.diag(V)
    _within(y.mean(axis=1), mean, np.sqrt(var / NSIM))
    _within(y.var(axis=1, ddof=1), var, var * np.sqrt(2.0 / (NSIM - 1)))
    # covariances: two days of one subject (Days 0 and 9), and two subjects (none)
    for i, j in ((0, 9), (0, 10)):
        c = np.cov(y[i], y[j])[0, 1]
        _within(np.array([c]), np.array([V[i, j]]),
                np.array([np.sqrt((V[i, i] * V[j, j] + V[i, j] ** 2) / NSIM)]))
    assert V[0, 9] > 0 and V[0, 10] == 0


def test_kept_modes_leave_only_the_residual_noise(sleep) -> None:
    y = sleep.simulate(NSIM, seed=7, use_u=True).to_numpy()
    s2 = sleep.sigma**2
    _within(y.mean(axis=1), sleep.fitted, np.full(sleep.nobs, np.sqrt(s2 / NSIM)))
    _within(y.var(axis=1, ddof=1), np.full(sleep.nobs, s2),
            np.full(sleep.nobs, s2 * np.sqrt(2.0 / (NSIM - 1))))


def test_prior_weights_scale_the_residual_variance() -> None:
    data = load_dataset("sleepstudy").assign(w=lambda d: 1.0 + d["Days"] % 3)
    fit = mixedref.lmer("Reaction ~ Days + (1 | Subject)", data, weights="w")
    y = fit.simulate(NSIM, seed=3, use_u=True).to_numpy()
    var = fit.sigma**2 / data["w"].to_numpy()
    _within(y.var(axis=1, ddof=1), var, var * np.sqrt(2.0 / (NSIM - 1)))


def test_shape_names_seed_and_bad_nsim(sleep) -> None:
    a, b = sleep.simulate(3, seed=11), sleep.simulate(3, seed=11)
    assert list(a.columns) == ["sim_1", "sim_2", "sim_3"] and a.shape == (180, 3)
    assert a.equals(b) and not a.equals(sleep.simulate(3, seed=12))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(MixedrefError, match="nsim must be a positive whole number"):
            sleep.simulate(bad)


@pytest.mark.parametrize("formula, family, variance", [
    ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial",
     lambda mu, n, s2: mu * (1 - mu) / n),
    ("incidence ~ period + (1 | herd)", "poisson", lambda mu, n, s2: mu),
])
def test_glmm_draws_have_the_familys_moments(formula, family, variance) -> None:
    data = load_dataset("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mixedref.glmer(formula, data, family)
    y = fit.simulate(NSIM, seed=5, use_u=True).to_numpy()
    mu = np.asarray(fit.fitted, dtype=float)
    n = data["size"].to_numpy(float) if family == "binomial" else np.ones(len(mu))
    var = variance(mu, n, fit.sigma**2)
    _within(y.mean(axis=1), mu, np.sqrt(var / NSIM))
    _within(y.var(axis=1, ddof=1), var, _var_se(y))


def test_gamma_draws_have_variance_sigma2_mu2() -> None:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 20)
    u = rng.normal(0, 0.3, 30)[g]
    x = rng.uniform(0, 1, g.size)
    mu = np.exp(1 + 0.5 * x + u)
    data = pd.DataFrame({"y": rng.gamma(4.0, mu / 4.0), "x": x, "g": g.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mixedref.glmer("y ~ x + (1 | g)", data, "Gamma", link="log")
    y = fit.simulate(NSIM, seed=9, use_u=True).to_numpy()
    m = np.asarray(fit.fitted, dtype=float)
    var = fit.sigma**2 * m**2
    _within(y.mean(axis=1), m, np.sqrt(var / NSIM))
    _within(y.var(axis=1, ddof=1), var, _var_se(y))
