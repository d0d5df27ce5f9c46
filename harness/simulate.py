"""Simulated designs for the harness: datasets generated from a seed, with their true parameters.

Each design is a generator function registered with :func:`design`; it takes a
``numpy.random.Generator`` and returns ``(DataFrame, truth)``. ``truth`` holds the true fixed
effects under R's column names (``beta``), the residual standard deviation (``sigma``) and the
variance components as the rows of lme4's ``as.data.frame(VarCorr(m))`` (``varcorr``: grp,
var1, var2, vcov, sdcor), for the model in the design's ``formula``. The GLMM designs (glmer's)
also record ``family`` and ``link`` as R names them; their truth comes from :func:`glmm_truth`,
which follows lme4's conventions for families without a scale parameter (binomial, Poisson:
sigma 1 and no "Residual" row) and with one (Gamma: sigma and a "Residual" row).

To add a design, write a documented function and decorate it::

    @design("sim_mine", seed=2001, formula="y ~ x + (1 | g)")
    def _mine(rng):
        \"\"\"One line saying what the design stresses.\"\"\"
        ...
        return df, truth(beta={...}, sigma=..., components=[...])

then run ``python -m harness.simulate --write`` so R (which cannot run this code) can read the
dataset from harness/data/, and add a case for it to harness/catalog.yaml.

The arithmetic is elementwise on purpose (no BLAS matrix products), so that regenerating a
design from its seed gives the committed file on any machine.
"""

from __future__ import annotations

import argparse
import gzip
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

Generator = Callable[[np.random.Generator], tuple[pd.DataFrame, dict[str, Any]]]

DATA_DIR = Path(__file__).resolve().parent / "data"
METADATA_FILE = "datasets.yaml"
METADATA_HEADER = (  # the same text as r_scripts/export_datasets.R writes
    "# Dataset metadata for this folder (read by harness/datasets.py, r_scripts/catalog.R).\n"
    "# Entries with source lme4, mlmRev or lme4-derived are written by\n"
    "# r_scripts/export_datasets.R, entries with source simulated by\n"
    "# `python -m harness.simulate --write`; each writer keeps the other's entries.\n"
)


@dataclass(frozen=True)
class Design:
    """A registered simulated design: its generator, seed and the model its truth refers to."""

    name: str
    seed: int
    formula: str
    generator: Generator

    @property
    def description(self) -> str:
        """The generator's docstring, as one line."""
        return " ".join((self.generator.__doc__ or "").split())


REGISTRY: dict[str, Design] = {}


def design(name: str, *, seed: int, formula: str) -> Callable[[Generator], Generator]:
    """Register a generator function under ``name`` with its seed and the model of its truth."""

    def register(func: Generator) -> Generator:
        if name in REGISTRY:
            raise ValueError(f"simulated design {name!r} is registered twice")
        if not (func.__doc__ or "").strip():
            raise ValueError(f"simulated design {name!r}: the generator needs a docstring")
        REGISTRY[name] = Design(name=name, seed=seed, formula=formula, generator=func)
        return func

    return register


def simulate(name: str, seed: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Generate design ``name`` from ``seed`` (default: its registered seed)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown simulated design {name!r}; known: {', '.join(REGISTRY)}")
    d = REGISTRY[name]
    rng = np.random.default_rng(d.seed if seed is None else seed)
    return d.generator(rng)


# ----------------------------------------------------------------------------------------------
# building blocks


def factor(codes: np.ndarray, prefix: str, labels: Sequence[str] | None = None) -> pd.Categorical:
    """Categorical from 0-based codes, labels prefix + 1-based zero-padded number ("g0001").

    Only the levels that occur are kept (lme4 drops unused levels of a grouping factor), and
    the padding makes the alphabetical order the natural one, as R would sort them. With
    ``labels`` (one per code, in an order R would sort the same way, e.g. "a", "b") those are
    the level names instead and ``prefix`` is ignored.
    """
    used = np.unique(codes)
    if labels is None:
        width = max(len(str(len(used))), 2)
        names = [f"{prefix}{i + 1:0{width}d}" for i in range(len(used))]
    else:
        if list(labels) != sorted(labels) or len(set(labels)) != len(labels):
            raise ValueError("factor labels must be distinct and in sorted (R's) order")
        names = [str(labels[i]) for i in used]
    compact = np.searchsorted(used, codes)
    return pd.Categorical.from_codes(compact, categories=names)


def correlated_effects(
    rng: np.random.Generator, n_groups: int, sds: Sequence[float], corr: np.ndarray
) -> np.ndarray:
    """Draw n_groups rows of random effects with the given sds and correlation matrix.

    ``corr`` may be singular (correlations of ±1): the factor comes from an eigen-free
    Cholesky with zero pivots allowed, applied elementwise.
    """
    k = len(sds)
    cov = np.asarray(corr, dtype=float) * np.outer(sds, sds)
    chol = _semidefinite_cholesky(cov)
    z = rng.standard_normal((n_groups, k))
    out = np.zeros((n_groups, k))
    for i in range(k):
        for j in range(i + 1):
            out[:, i] += chol[i, j] * z[:, j]
    return out


def _semidefinite_cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower-triangular L with L L' = cov for a positive semidefinite cov (zero pivots kept)."""
    k = cov.shape[0]
    low = np.zeros_like(cov)
    for j in range(k):
        d = cov[j, j] - sum(low[j, m] ** 2 for m in range(j))
        if d < -1e-12 * max(cov[j, j], 1.0):
            raise ValueError("covariance of the random effects is not positive semidefinite")
        low[j, j] = math.sqrt(max(d, 0.0))
        for i in range(j + 1, k):
            s = cov[i, j] - sum(low[i, m] * low[j, m] for m in range(j))
            low[i, j] = s / low[j, j] if low[j, j] > 0 else 0.0
    return low


Components = Sequence[tuple[str, Sequence[str], Sequence[float], np.ndarray | None]]


def truth(
    beta: dict[str, float],
    sigma: float,
    components: Components,
    *,
    residual: bool = True,
) -> dict[str, Any]:
    """True parameters as lme4 reports them: beta, sigma and varcorr rows.

    ``components`` lists (grp, term names, sds, correlation matrix or None) per random-effects
    term, in lme4's order (terms sorted by decreasing number of levels); varcorr rows follow
    as.data.frame(VarCorr(m)): per term the sds, then the correlations (lower triangle, column
    by column), and last the residual, unless ``residual`` is false (a GLMM family without a
    scale parameter, see :func:`glmm_truth`).
    """
    rows: list[dict[str, Any]] = []
    for grp, names, sds, corr in components:
        for name, sd in zip(names, sds, strict=True):
            rows.append(_vc_row(grp, name, None, float(sd) ** 2, float(sd)))
        if corr is not None:
            for j in range(len(names)):
                for i in range(j + 1, len(names)):
                    r = float(corr[i, j])
                    rows.append(_vc_row(grp, names[j], names[i], r * sds[i] * sds[j], r))
    if residual:
        rows.append(_vc_row("Residual", None, None, sigma**2, sigma))
    return {"beta": {k: float(v) for k, v in beta.items()}, "sigma": float(sigma), "varcorr": rows}


#: GLMM families (R's names) whose dispersion is fixed at 1: lme4 reports sigma = 1 and no
#: "Residual" row in VarCorr for them.
FIXED_DISPERSION_FAMILIES = ("binomial", "poisson")


def glmm_truth(
    family: str,
    link: str,
    beta: dict[str, float],
    components: Components,
    sigma: float | None = None,
) -> dict[str, Any]:
    """True parameters of a GLMM as lme4's glmer reports them, plus ``family`` and ``link``.

    The varcorr rows of the random effects are on the linear-predictor scale. For binomial and
    Poisson (``sigma`` omitted) sigma is 1 and there is no "Residual" row; for a family with a
    scale parameter (Gamma) ``sigma`` is lme4's sigma (for Gamma the coefficient of variation,
    1/sqrt(shape)) and the last row is the residual, as as.data.frame(VarCorr(m)) gives it.
    """
    fixed = family in FIXED_DISPERSION_FAMILIES
    if fixed and sigma is not None:
        raise ValueError(f"family {family!r} has no scale parameter: leave sigma out")
    if not fixed and sigma is None:
        raise ValueError(f"family {family!r} has a scale parameter: give its sigma")
    tr = truth(beta, 1.0 if fixed else sigma, components, residual=not fixed)
    return {**tr, "family": family, "link": link}


def plogis(eta: np.ndarray) -> np.ndarray:
    """The inverse logit, elementwise (R's plogis)."""
    return 1.0 / (1.0 + np.exp(-eta))


def _vc_row(grp: str, var1: str | None, var2: str | None, vcov: float, sdcor: float) -> dict:
    # 15 significant digits: 0.4**2 is recorded as 0.16, the value meant (and what R writes)
    vcov, sdcor = float(f"{vcov:.15g}"), float(f"{sdcor:.15g}")
    return {"grp": grp, "var1": var1, "var2": var2, "vcov": vcov, "sdcor": sdcor}


def _random_intercept_slope(
    rng: np.random.Generator,
    n_groups: int,
    n_per: int,
    beta: tuple[float, float],
    sds: tuple[float, float],
    rho: float,
    sigma: float,
) -> pd.DataFrame:
    """y = b0 + b1 x + u0_g + u1_g x + e with x = 0..n_per-1 in every group (as sleepstudy)."""
    corr = np.array([[1.0, rho], [rho, 1.0]])
    u = correlated_effects(rng, n_groups, sds, corr)
    g = np.repeat(np.arange(n_groups), n_per)
    x = np.tile(np.arange(n_per, dtype=float), n_groups)
    e = sigma * rng.standard_normal(len(g))
    y = beta[0] + u[g, 0] + (beta[1] + u[g, 1]) * x + e
    return pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})


def _random_intercept(
    rng: np.random.Generator,
    n_groups: int,
    n_per: int,
    beta: tuple[float, float],
    sd: float,
    sigma: float,
    scale: float = 1.0,
    offset: float = 0.0,
) -> pd.DataFrame:
    """y = offset + scale * (b0 + b1 x + u_g + e), x ~ N(0, 1) rounded to 3 decimals."""
    g = np.repeat(np.arange(n_groups), n_per)
    u = sd * rng.standard_normal(n_groups)
    x = np.round(rng.standard_normal(len(g)), 3)
    e = sigma * rng.standard_normal(len(g))
    y = offset + scale * (beta[0] + beta[1] * x + u[g] + e)
    return pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})


def _intercept_truth(beta0: float, beta1: float, sd: float, sigma: float) -> dict[str, Any]:
    return truth({"(Intercept)": beta0, "x": beta1}, sigma, [("g", ["(Intercept)"], [sd], None)])


def _slope_truth(beta, sds, rho, sigma) -> dict[str, Any]:
    corr = np.array([[1.0, rho], [rho, 1.0]])
    return truth(
        {"(Intercept)": beta[0], "x": beta[1]}, sigma, [("g", ["(Intercept)", "x"], sds, corr)]
    )


# ----------------------------------------------------------------------------------------------
# the designs


@design("sim_unbalanced", seed=101, formula="y ~ x + (x | g)")
def _unbalanced(rng: np.random.Generator):
    """Unbalanced groups: 80 groups of 1 to 40 rows, correlated random intercept and slope."""
    n_groups = 80
    sizes = rng.integers(1, 41, n_groups)
    sizes[0], sizes[1] = 1, 40  # both extremes present
    g = np.repeat(np.arange(n_groups), sizes)
    sds, rho = (2.0, 0.4), 0.3
    u = correlated_effects(rng, n_groups, sds, np.array([[1.0, rho], [rho, 1.0]]))
    x = np.round(rng.uniform(0.0, 10.0, len(g)), 2)
    y = 5.0 + u[g, 0] + (1.5 + u[g, 1]) * x + 1.5 * rng.standard_normal(len(g))
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    return df, _slope_truth((5.0, 1.5), sds, rho, 1.5)


@design("sim_many_groups", seed=102, formula="y ~ x + (1 | g)")
def _many_groups(rng: np.random.Generator):
    """Many groups: 2,500 groups of 4 rows (10,000 rows), random intercept."""
    df = _random_intercept(rng, 2500, 4, (1.0, 0.5), 0.8, 1.0)
    return df, _intercept_truth(1.0, 0.5, 0.8, 1.0)


@design("sim_corr3", seed=103, formula="y ~ x1 + x2 + (1 + x1 + x2 | g)")
def _corr3(rng: np.random.Generator):
    """Three correlated random effects (1 + x1 + x2 | g), correlations 0.95, -0.9, -0.8."""
    n_groups, n_per = 60, 15
    sds = (2.0, 1.0, 0.5)
    corr = np.array([[1.0, 0.95, -0.9], [0.95, 1.0, -0.8], [-0.9, -0.8, 1.0]])
    u = correlated_effects(rng, n_groups, sds, corr)
    g = np.repeat(np.arange(n_groups), n_per)
    x1 = np.round(rng.standard_normal(len(g)), 3)
    x2 = np.round(rng.standard_normal(len(g)), 3)
    e = 0.5 * rng.standard_normal(len(g))
    y = 3.0 + u[g, 0] + (1.0 + u[g, 1]) * x1 + (-2.0 + u[g, 2]) * x2 + e
    df = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": factor(g, "g")})
    tr = truth(
        {"(Intercept)": 3.0, "x1": 1.0, "x2": -2.0},
        0.5,
        [("g", ["(Intercept)", "x1", "x2"], sds, corr)],
    )
    return df, tr


@design("sim_near_singular", seed=104, formula="y ~ x + (x | g)")
def _near_singular(rng: np.random.Generator):
    """Near-singular: random slope sd 0.05 sigma next to an intercept sd of 1 sigma (30 x 10)."""
    df = _random_intercept_slope(rng, 30, 10, (10.0, 1.0), (1.0, 0.05), 0.0, 1.0)
    return df, _slope_truth((10.0, 1.0), (1.0, 0.05), 0.0, 1.0)


@design("sim_crossed_partial", seed=105, formula="y ~ x + (1 | a) + (1 | b)")
def _crossed_partial(rng: np.random.Generator):
    """Crossed factors with partial overlap: 30 a-levels each meet a window of 12 of 40 b-levels."""
    n_a, n_b, window, reps = 30, 40, 12, 2
    starts = rng.integers(0, n_b - window + 1, n_a)
    a = np.repeat(np.arange(n_a), window * reps)
    b = np.concatenate([np.repeat(np.arange(s, s + window), reps) for s in starts])
    sd_a, sd_b, sigma = 1.0, 0.7, 0.5
    ua = sd_a * rng.standard_normal(n_a)
    ub = sd_b * rng.standard_normal(n_b)
    x = np.round(rng.standard_normal(len(a)), 3)
    y = 3.0 + 1.0 * x + ua[a] + ub[b] + sigma * rng.standard_normal(len(a))
    df = pd.DataFrame({"y": y, "x": x, "a": factor(a, "a"), "b": factor(b, "b")})
    tr = truth(
        {"(Intercept)": 3.0, "x": 1.0},
        sigma,
        [("b", ["(Intercept)"], [sd_b], None), ("a", ["(Intercept)"], [sd_a], None)],
    )
    return df, tr


@design("sim_scale_large", seed=106, formula="y ~ x + (1 | g)")
def _scale_large(rng: np.random.Generator):
    """Response on the 1e6 scale: every parameter of a random-intercept model times 1e6."""
    s = 1e6
    df = _random_intercept(rng, 30, 10, (2.0, 0.5), 1.0, 0.7, scale=s)
    return df, _intercept_truth(2.0 * s, 0.5 * s, 1.0 * s, 0.7 * s)


@design("sim_scale_small", seed=107, formula="y ~ x + (1 | g)")
def _scale_small(rng: np.random.Generator):
    """Response on the 1e-6 scale: every parameter of a random-intercept model times 1e-6."""
    s = 1e-6
    df = _random_intercept(rng, 30, 10, (2.0, 0.5), 1.0, 0.7, scale=s)
    return df, _intercept_truth(2.0 * s, 0.5 * s, 1.0 * s, 0.7 * s)


@design("sim_corr_plus1", seed=108, formula="y ~ x + (x | g)")
def _corr_plus1(rng: np.random.Generator):
    """Perfectly correlated random intercept and slope: true correlation +1 (40 x 10)."""
    df = _random_intercept_slope(rng, 40, 10, (5.0, 1.0), (1.5, 0.5), 1.0, 1.0)
    return df, _slope_truth((5.0, 1.0), (1.5, 0.5), 1.0, 1.0)


@design("sim_corr_minus1", seed=109, formula="y ~ x + (x | g)")
def _corr_minus1(rng: np.random.Generator):
    """Perfectly correlated random intercept and slope: true correlation -1 (40 x 10)."""
    df = _random_intercept_slope(rng, 40, 10, (5.0, 1.0), (1.5, 0.5), -1.0, 1.0)
    return df, _slope_truth((5.0, 1.0), (1.5, 0.5), -1.0, 1.0)


@design("sim_tiny_variance", seed=110, formula="y ~ x + (1 | g)")
def _tiny_variance(rng: np.random.Generator):
    """A variance component of 1e-8 relative size: sd_g = 1e-4 sigma (50 x 8)."""
    df = _random_intercept(rng, 50, 8, (1.0, 0.5), 1e-4, 1.0)
    return df, _intercept_truth(1.0, 0.5, 1e-4, 1.0)


@design("sim_huge_offset", seed=111, formula="y ~ x + (1 | g)")
def _huge_offset(rng: np.random.Generator):
    """Huge offset: y = 1e9 + 2 x + u_g + e, with sd_g = 1 and sigma = 0.5 (30 x 10)."""
    df = _random_intercept(rng, 30, 10, (0.0, 2.0), 1.0, 0.5, offset=1e9)
    return df, _intercept_truth(1e9, 2.0, 1.0, 0.5)


@design("sim_collinear", seed=112, formula="y ~ x1 + x2 + (1 | g)")
def _collinear(rng: np.random.Generator):
    """Near-collinear fixed effects: x2 = x1 + N(0, 1e-3^2), correlation about 1 - 5e-7."""
    n_groups, n_per = 30, 10
    g = np.repeat(np.arange(n_groups), n_per)
    x1 = rng.standard_normal(len(g))
    x2 = x1 + 1e-3 * rng.standard_normal(len(g))
    u = 1.0 * rng.standard_normal(n_groups)
    y = 1.0 + 2.0 * x1 - 1.0 * x2 + u[g] + 0.5 * rng.standard_normal(len(g))
    df = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": factor(g, "g")})
    beta = {"(Intercept)": 1.0, "x1": 2.0, "x2": -1.0}
    return df, truth(beta, 0.5, [("g", ["(Intercept)"], [1.0], None)])


@design("sim_singular", seed=113, formula="y ~ x + (1 | g)")
def _singular(rng: np.random.Generator):
    """Singular fit: zero true between-group variance, and the noise centred within each group
    (20 groups x 6 rows), so the groups show no sample variation either and the estimate of
    the variance component sits on the boundary. Centring leaves each row's noise variance
    at 5/6, so the recorded sigma is sqrt(5/6)."""
    n_groups, n_per = 20, 6
    g = np.repeat(np.arange(n_groups), n_per)
    x = np.round(rng.standard_normal(len(g)), 3)
    e = rng.standard_normal(len(g))
    e = e - np.repeat(e.reshape(n_groups, n_per).mean(axis=1), n_per)
    y = 1.0 + 0.5 * x + e
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    return df, _intercept_truth(1.0, 0.5, 0.0, math.sqrt(5.0 / 6.0))


# ----------------------------------------------------------------------------------------------
# the GLMM designs (glmer's cases): truth on the linear-predictor scale, with family and link


def _glmm_slope_truth(family, link, beta, sds, rho) -> dict[str, Any]:
    corr = np.array([[1.0, rho], [rho, 1.0]])
    return glmm_truth(
        family,
        link,
        {"(Intercept)": beta[0], "x": beta[1]},
        [("g", ["(Intercept)", "x"], sds, corr)],
    )


@design("sim_glmm_slopes", seed=201, formula="y ~ x + (x | g)")
def _glmm_slopes(rng: np.random.Generator):
    """Binomial (logit) 0/1 response with a correlated random intercept and slope (1 + x | g),
    sds 1 and 0.5, correlation 0.3 (60 groups x 20 rows): glmer's vector-valued random effects."""
    n_groups, n_per = 60, 20
    beta, sds, rho = (-0.5, 1.0), (1.0, 0.5), 0.3
    u = correlated_effects(rng, n_groups, sds, np.array([[1.0, rho], [rho, 1.0]]))
    g = np.repeat(np.arange(n_groups), n_per)
    x = np.round(rng.standard_normal(len(g)), 3)
    eta = beta[0] + u[g, 0] + (beta[1] + u[g, 1]) * x
    y = rng.binomial(1, plogis(eta)).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    return df, _glmm_slope_truth("binomial", "logit", beta, sds, rho)


@design("sim_glmm_crossed", seed=202, formula="y ~ x + (1 | subj) + (1 | item)")
def _glmm_crossed(rng: np.random.Generator):
    """Binomial (logit) 0/1 response with fully crossed random intercepts, 40 subjects x 30 items
    each pair once (sds 0.8 and 0.5): a crossed GLMM that needs Laplace (nAGQ = 1)."""
    n_subj, n_item = 40, 30
    sd_subj, sd_item = 0.8, 0.5
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    us = sd_subj * rng.standard_normal(n_subj)
    ui = sd_item * rng.standard_normal(n_item)
    x = np.round(rng.standard_normal(len(subj)), 3)
    eta = 0.2 + 0.7 * x + us[subj] + ui[item]
    y = rng.binomial(1, plogis(eta)).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "subj": factor(subj, "s"), "item": factor(item, "i")})
    tr = glmm_truth(
        "binomial",
        "logit",
        {"(Intercept)": 0.2, "x": 0.7},
        [("subj", ["(Intercept)"], [sd_subj], None), ("item", ["(Intercept)"], [sd_item], None)],
    )
    return df, tr


@design("sim_glmm_rare", seed=203, formula="y ~ x + (1 | g)")
def _glmm_rare(rng: np.random.Generator):
    """Rare events: binomial (logit) 0/1 response with intercept -4.5 (an event rate of about
    1-2%), random intercept sd 0.7 (50 groups x 40 rows): most groups have no event at all."""
    n_groups, n_per, sd = 50, 40, 0.7
    g = np.repeat(np.arange(n_groups), n_per)
    u = sd * rng.standard_normal(n_groups)
    x = np.round(rng.standard_normal(len(g)), 3)
    y = rng.binomial(1, plogis(-4.5 + 0.5 * x + u[g])).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    tr = glmm_truth(
        "binomial", "logit", {"(Intercept)": -4.5, "x": 0.5}, [("g", ["(Intercept)"], [sd], None)]
    )
    return df, tr


@design("sim_glmm_separation", seed=204, formula="y ~ z + x + (1 | g)")
def _glmm_separation(rng: np.random.Generator):
    """Separation-prone binomial (logit): a factor z whose level b adds 3.5 to the logit, so many
    groups have only 1s in their z = b cell, though the pooled data are not separated and glmer's
    estimates stay finite (30 groups x 10 rows, random intercept sd 0.6)."""
    n_groups, n_per, sd = 30, 10, 0.6
    g = np.repeat(np.arange(n_groups), n_per)
    u = sd * rng.standard_normal(n_groups)
    zb = rng.integers(0, 2, len(g))
    x = np.round(rng.standard_normal(len(g)), 3)
    eta = -1.0 + 3.5 * zb + 0.5 * x + u[g]
    y = rng.binomial(1, plogis(eta)).astype(float)
    df = pd.DataFrame(
        {"y": y, "z": factor(zb, "z", labels=["a", "b"]), "x": x, "g": factor(g, "g")}
    )
    tr = glmm_truth(
        "binomial",
        "logit",
        {"(Intercept)": -1.0, "zb": 3.5, "x": 0.5},
        [("g", ["(Intercept)"], [sd], None)],
    )
    return df, tr


@design("sim_glmm_olre", seed=205, formula="y ~ x + (1 | g) + (1 | obs)")
def _glmm_olre(rng: np.random.Generator):
    """Overdispersed Poisson counts with an observation-level random effect (factor obs, one
    level per row, sd 0.6) next to a group intercept (sd 0.5; 40 groups x 10 rows): as many
    random effects as rows."""
    n_groups, n_per = 40, 10
    sd_g, sd_obs = 0.5, 0.6
    g = np.repeat(np.arange(n_groups), n_per)
    n = len(g)
    u = sd_g * rng.standard_normal(n_groups)
    x = np.round(rng.standard_normal(n), 3)
    e = sd_obs * rng.standard_normal(n)
    y = rng.poisson(np.exp(1.0 + 0.5 * x + u[g] + e)).astype(np.int64)
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g"), "obs": factor(np.arange(n), "obs")})
    tr = glmm_truth(  # lme4 orders the terms by decreasing number of levels: obs (400) first
        "poisson",
        "log",
        {"(Intercept)": 1.0, "x": 0.5},
        [("obs", ["(Intercept)"], [sd_obs], None), ("g", ["(Intercept)"], [sd_g], None)],
    )
    return df, tr


@design("sim_glmm_poisson_slopes", seed=206, formula="y ~ x + (x | g)")
def _glmm_poisson_slopes(rng: np.random.Generator):
    """Poisson (log) counts with a correlated random intercept and slope (1 + x | g), sds 0.5
    and 0.3, correlation -0.4, x uniform on (-1, 1) (50 groups x 12 rows)."""
    n_groups, n_per = 50, 12
    beta, sds, rho = (1.5, 0.4), (0.5, 0.3), -0.4
    u = correlated_effects(rng, n_groups, sds, np.array([[1.0, rho], [rho, 1.0]]))
    g = np.repeat(np.arange(n_groups), n_per)
    x = np.round(rng.uniform(-1.0, 1.0, len(g)), 3)
    eta = beta[0] + u[g, 0] + (beta[1] + u[g, 1]) * x
    y = rng.poisson(np.exp(eta)).astype(np.int64)
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    return df, _glmm_slope_truth("poisson", "log", beta, sds, rho)


@design("sim_glmm_gamma", seed=207, formula="y ~ x + (1 | g)")
def _glmm_gamma(rng: np.random.Generator):
    """Gamma (log link) response with shape 5, so lme4's sigma (the coefficient of variation)
    is 1/sqrt(5), and a random intercept sd 0.4 (40 groups x 10 rows): a family with a scale."""
    n_groups, n_per, sd, shape = 40, 10, 0.4, 5.0
    g = np.repeat(np.arange(n_groups), n_per)
    u = sd * rng.standard_normal(n_groups)
    x = np.round(rng.standard_normal(len(g)), 3)
    mu = np.exp(1.0 + 0.3 * x + u[g])
    y = rng.gamma(shape, mu / shape)
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    tr = glmm_truth(
        "Gamma",
        "log",
        {"(Intercept)": 1.0, "x": 0.3},
        [("g", ["(Intercept)"], [sd], None)],
        sigma=1.0 / math.sqrt(shape),
    )
    return df, tr


@design("sim_glmm_trials", seed=208, formula="prop ~ x + (1 | g)")
def _glmm_trials(rng: np.random.Generator):
    """Binomial (logit) proportions prop = k/n with varying trials n from 5 to 20, fitted with
    weights = n, random intercept sd 0.9 (40 groups x 5 rows): glmer's prior weights."""
    n_groups, n_per, sd = 40, 5, 0.9
    g = np.repeat(np.arange(n_groups), n_per)
    u = sd * rng.standard_normal(n_groups)
    x = np.round(rng.standard_normal(len(g)), 3)
    n = rng.integers(5, 21, len(g)).astype(np.int64)
    k = rng.binomial(n, plogis(-0.3 + 0.8 * x + u[g])).astype(np.int64)
    df = pd.DataFrame({"k": k, "n": n, "prop": k / n, "x": x, "g": factor(g, "g")})
    tr = glmm_truth(
        "binomial", "logit", {"(Intercept)": -0.3, "x": 0.8}, [("g", ["(Intercept)"], [sd], None)]
    )
    return df, tr


# ----------------------------------------------------------------------------------------------
# writing to harness/data/ (for R) and checking the committed files


def column_metadata(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per column: name, type (numeric, integer, factor, ordered), levels in order for factors."""
    cols: list[dict[str, Any]] = []
    for name, s in df.items():
        if isinstance(s.dtype, pd.CategoricalDtype):
            kind = "ordered" if s.cat.ordered else "factor"
            cols.append({"name": name, "type": kind, "levels": [str(c) for c in s.cat.categories]})
        elif pd.api.types.is_integer_dtype(s):
            cols.append({"name": name, "type": "integer"})
        elif pd.api.types.is_float_dtype(s):
            cols.append({"name": name, "type": "numeric"})
        else:
            raise TypeError(f"column {name!r} has unsupported dtype {s.dtype}")
    return cols


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The CSV text of a dataset: shortest round-trip floats, factor labels, no index."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode()


def metadata_entry(name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Generate design ``name`` and its datasets.yaml entry."""
    d = REGISTRY[name]
    df, tr = simulate(name)
    entry = {
        "source": "simulated",
        "description": d.description,
        "file": f"{name}.csv.gz",
        "nrow": len(df),
        "generator": f"harness.simulate:{d.generator.__name__}",
        "seed": d.seed,
        "formula": d.formula,
        "truth": tr,
        "columns": column_metadata(df),
    }
    return df, entry


def read_metadata(data_dir: Path) -> dict[str, Any]:
    """The ``datasets`` mapping of data_dir/datasets.yaml ({} when the file is absent)."""
    path = Path(data_dir) / METADATA_FILE
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("datasets") or {}


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes the strings R's yaml package would read as booleans or NA."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "'" if value.lower() in {"y", "n", "na"} else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def write_all(data_dir: Path = DATA_DIR, names: Sequence[str] | None = None) -> list[Path]:
    """Write every (or the named) design's csv.gz and update datasets.yaml, keeping lme4 entries."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    old = read_metadata(data_dir)
    keep = {k: v for k, v in old.items() if v.get("source") != "simulated"}
    if names is not None:  # rewriting some designs keeps the other simulated entries
        keep.update({k: v for k, v in old.items() if v.get("source") == "simulated"})
    written = []
    for name in names or list(REGISTRY):
        df, entry = metadata_entry(name)
        path = data_dir / entry["file"]
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        ):
            gz.write(csv_bytes(df))
        keep[name] = entry
        written.append(path)
    text = yaml.dump(
        {"datasets": keep}, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100
    )
    (data_dir / METADATA_FILE).write_text(METADATA_HEADER + text)
    return written


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.simulate",
        description="Generate the simulated datasets from their seeds.",
    )
    parser.add_argument("--write", action="store_true", help="write csv.gz + datasets.yaml")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder (default harness/data)")
    parser.add_argument("names", nargs="*", help="designs to write (default: all)")
    args = parser.parse_args(argv)
    if not args.write:
        for d in REGISTRY.values():
            print(f"{d.name:22s} seed={d.seed:<6d} {d.formula:36s} {d.description}")
        return 0
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown design(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    for path in write_all(args.out, args.names or None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
