"""Simulated designs for the harness: datasets generated from a seed, with their true parameters.

Each design is a generator function registered with :func:`design`; it takes a
``numpy.random.Generator`` and returns ``(DataFrame, truth)``. ``truth`` holds the true fixed
effects under R's column names (``beta``), the residual standard deviation (``sigma``) and the
variance components as the rows of lme4's ``as.data.frame(VarCorr(m))`` (``varcorr``: grp,
var1, var2, vcov, sdcor), for the model in the design's ``formula``. The GLMM designs (glmer's)
also record ``family`` and ``link`` as R names them; their truth comes from :func:`glmm_truth`,
which follows lme4's conventions for families without a scale parameter (binomial, Poisson:
sigma 1 and no "Residual" row) and with one (Gamma: sigma and a "Residual" row). The negative
binomial's (lme4's glmer.nb) truth adds its dispersion θ as ``nb_theta`` (variance μ + μ²/θ).

To add a design, write a documented function and decorate it::

    @design("sim_mine", seed=2001, formula="y ~ x + (1 | g)")
    def _mine(rng):
        \"\"\"One line saying what the design stresses.\"\"\"
        ...
        return df, truth(beta={...}, sigma=..., components=[...])

then run ``python -m harness.generate.simulate --write`` so R (which cannot run this code) can read
the
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

from harness import HOME
from harness.core import yaml_text

Generator = Callable[[np.random.Generator], tuple[pd.DataFrame, dict[str, Any]]]

DATA_DIR = HOME / "data"
METADATA_FILE = "datasets.yaml"
METADATA_HEADER = (  # the same text as r_scripts/export_datasets.R writes
    "# Dataset metadata for this folder (read by harness/core/datasets.py, r_scripts/catalog.R).\n"
    "# Entries with source lme4, mlmRev or lme4-derived are written by\n"
    "# r_scripts/export_datasets.R, entries with source simulated by\n"
    "# `python -m harness.generate.simulate --write`; each writer keeps the other's entries.\n"
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
FIXED_DISPERSION_FAMILIES = ("binomial", "poisson", "negative.binomial")


def glmm_truth(
    family: str,
    link: str,
    beta: dict[str, float],
    components: Components,
    sigma: float | None = None,
    nb_theta: float | None = None,
) -> dict[str, Any]:
    """True parameters of a GLMM as lme4's glmer reports them, plus ``family`` and ``link``.

    The varcorr rows of the random effects are on the linear-predictor scale. For binomial and
    Poisson (``sigma`` omitted) sigma is 1 and there is no "Residual" row; for a family with a
    scale parameter (Gamma) ``sigma`` is lme4's sigma (for Gamma the coefficient of variation,
    1/sqrt(shape); for inverse.gaussian the square root of the dispersion) and the last row is
    the residual, as as.data.frame(VarCorr(m)) gives it. The negative binomial (glmer.nb: sigma 1,
    no "Residual" row) needs its ``nb_theta``, lme4's
    ``getME(m, "glmer.nb.theta")``.
    """
    if (family == "negative.binomial") != (nb_theta is not None):
        raise ValueError("nb_theta is the negative binomial's dispersion: give it for family "
                         f"'negative.binomial' only (family {family!r})")
    fixed = family in FIXED_DISPERSION_FAMILIES
    if fixed and sigma is not None:
        raise ValueError(f"family {family!r} has no scale parameter: leave sigma out")
    if not fixed and sigma is None:
        raise ValueError(f"family {family!r} has a scale parameter: give its sigma")
    tr = truth(beta, 1.0 if fixed else sigma, components, residual=not fixed)
    out = {**tr, "family": family, "link": link}
    if nb_theta is not None:
        out["nb_theta"] = float(nb_theta)
    return out


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
# the hard shapes (issue 15): designs where lme4's default optimizer is known to stop short


def _corr_matrix(k: int, pairs: dict[tuple[int, int], float]) -> np.ndarray:
    """A k x k correlation matrix with the given off-diagonal entries (i, j) and (j, i)."""
    corr = np.eye(k)
    for (i, j), r in pairs.items():
        corr[i, j] = corr[j, i] = r
    return corr


KB07_SUBJ_SDS = (300.0, 40.0, 60.0, 70.0)
KB07_ITEM_SDS = (360.0, 40.0, 250.0, 20.0)
KB07_SUBJ_CORR = _corr_matrix(
    4, {(0, 1): 0.6, (0, 2): 0.2, (0, 3): 0.4, (1, 2): 0.3, (1, 3): 0.9, (2, 3): 0.1}
)
KB07_ITEM_CORR = _corr_matrix(
    4, {(0, 1): 0.4, (0, 2): -0.6, (0, 3): 0.3, (1, 2): -0.5, (1, 3): 0.8, (2, 3): -0.2}
)


@design(
    "sim_kb07_maximal",
    seed=2,
    formula="rt ~ 1 + spkr * prec * load + (1 + spkr + prec + load | subj)"
    " + (1 + spkr + prec + load | item)",
)
def _kb07_maximal(rng: np.random.Generator):
    """A kb07-like maximal crossed design: 56 subjects x 32 items, every subject sees every item
    once (1,792 rows), the 2 x 2 x 2 conditions spkr, prec, load (coded -1/+1) counterbalanced
    by a Latin square so that they vary within subjects and within items; correlated random
    intercepts and slopes of all three main effects on both factors (4 x 4 covariance on each:
    20 covariance parameters). Sds on the scale of reaction times in ms (subject 300, 40, 60,
    70; item 360, 40, 250, 20; residual 670), some slopes small next to the residual so the
    fit is usually singular."""
    n_subj, n_item, sigma = 56, 32, 670.0
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    cond = (subj + item) % 8  # Latin square: each item in every condition across subjects
    spkr = np.where(cond % 2 == 0, -1.0, 1.0)
    prec = np.where((cond // 2) % 2 == 0, -1.0, 1.0)
    load = np.where((cond // 4) % 2 == 0, -1.0, 1.0)
    us = correlated_effects(rng, n_subj, KB07_SUBJ_SDS, KB07_SUBJ_CORR)
    ui = correlated_effects(rng, n_item, KB07_ITEM_SDS, KB07_ITEM_CORR)
    beta = {
        "(Intercept)": 2180.0, "spkr": 67.0, "prec": -333.0, "load": 78.0,
        "spkr:prec": -22.0, "spkr:load": 18.0, "prec:load": 5.0, "spkr:prec:load": -24.0,
    }  # fmt: skip
    mu = (
        beta["(Intercept)"] + us[subj, 0] + ui[item, 0]
        + (beta["spkr"] + us[subj, 1] + ui[item, 1]) * spkr
        + (beta["prec"] + us[subj, 2] + ui[item, 2]) * prec
        + (beta["load"] + us[subj, 3] + ui[item, 3]) * load
        + beta["spkr:prec"] * spkr * prec + beta["spkr:load"] * spkr * load
        + beta["prec:load"] * prec * load + beta["spkr:prec:load"] * spkr * prec * load
    )  # fmt: skip
    rt = np.round(mu + sigma * rng.standard_normal(len(subj)), 1)
    df = pd.DataFrame(
        {
            "rt": rt, "spkr": spkr, "prec": prec, "load": load,
            "subj": factor(subj, "s"), "item": factor(item, "i"),
        }
    )  # fmt: skip
    names = ["(Intercept)", "spkr", "prec", "load"]
    tr = truth(
        beta,
        sigma,
        [
            ("subj", names, KB07_SUBJ_SDS, KB07_SUBJ_CORR),
            ("item", names, KB07_ITEM_SDS, KB07_ITEM_CORR),
        ],
    )
    return df, tr


def _three_slopes(
    rng: np.random.Generator,
    n_groups: int,
    n_per: int,
    beta: tuple[float, float, float],
    sds: tuple[float, float, float],
    corr: np.ndarray,
    sigma: float,
    scales: tuple[float, float] = (1.0, 1.0),
) -> pd.DataFrame:
    """y = b0 + u0 + (b1 + u1) x1 + (b2 + u2) x2 + e, x_k = scale_k * N(0, 1) (4 significant
    digits), (u0, u1, u2) correlated per group."""
    u = correlated_effects(rng, n_groups, sds, corr)
    g = np.repeat(np.arange(n_groups), n_per)
    x1 = scales[0] * np.round(rng.standard_normal(len(g)), 3)
    x2 = scales[1] * np.round(rng.standard_normal(len(g)), 3)
    e = sigma * rng.standard_normal(len(g))
    y = beta[0] + u[g, 0] + (beta[1] + u[g, 1]) * x1 + (beta[2] + u[g, 2]) * x2 + e
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": factor(g, "g")})


BADSCALE_SCALES = (1e-4, 1e4)
BADSCALE_BETA = (1.0, 2.0e4, -3.0e-4)  # effects of about 2 and -3 per sd of x1, x2
BADSCALE_SDS = (1.0, 1.0e4, 1.0e-4)  # about 1 per sd of x1, x2 too
BADSCALE_CORR = _corr_matrix(3, {(0, 1): 0.5, (0, 2): -0.4, (1, 2): 0.3})


@design("sim_badscale3", seed=3002, formula="y ~ x1 + x2 + (1 + x1 + x2 | g)")
def _badscale3(rng: np.random.Generator):
    """Badly scaled predictors under a correlated 3-term random slope (1 + x1 + x2 | g): x1 on
    the scale 1e-4 and x2 on the scale 1e4, so the random-slope sds (1e4 and 1e-4) and hence
    lme4's theta span eight orders of magnitude each way (50 groups x 20 rows, correlations
    0.5, -0.4, 0.3, sigma 1)."""
    df = _three_slopes(
        rng, 50, 20, BADSCALE_BETA, BADSCALE_SDS, BADSCALE_CORR, 1.0, scales=BADSCALE_SCALES
    )
    tr = truth(
        dict(zip(["(Intercept)", "x1", "x2"], BADSCALE_BETA, strict=True)),
        1.0,
        [("g", ["(Intercept)", "x1", "x2"], BADSCALE_SDS, BADSCALE_CORR)],
    )
    return df, tr


CORR3B_SDS = (1.0, 0.6, 0.4)
CORR3B_CORR = _corr_matrix(3, {(0, 1): 1.0, (0, 2): -0.6, (1, 2): -0.6})


@design("sim_corr3_boundary", seed=28, formula="y ~ x1 + x2 + (1 + x1 + x2 | g)")
def _corr3_boundary(rng: np.random.Generator):
    """A 3-dimensional correlated term (1 + x1 + x2 | g) whose true intercept-x1 correlation is
    +1 (and the other two -0.6), so the covariance is singular and the optimum sits on the
    boundary of the Cholesky parametrization (40 groups x 10 rows, sds 1, 0.6, 0.4, sigma
    1)."""
    df = _three_slopes(rng, 40, 10, (2.0, 1.0, -0.5), CORR3B_SDS, CORR3B_CORR, 1.0)
    tr = truth(
        {"(Intercept)": 2.0, "x1": 1.0, "x2": -0.5},
        1.0,
        [("g", ["(Intercept)", "x1", "x2"], CORR3B_SDS, CORR3B_CORR)],
    )
    return df, tr


CORR4_SDS = (1.0, 0.8, 0.6, 0.4)
CORR4_CORR = _corr_matrix(
    4, {(0, 1): 0.7, (0, 2): -0.5, (0, 3): 0.3, (1, 2): -0.6, (1, 3): 0.2, (2, 3): -0.4}
)


@design("sim_corr4", seed=3004, formula="y ~ x1 + x2 + x3 + (1 + x1 + x2 + x3 | g)")
def _corr4(rng: np.random.Generator):
    """A 4-dimensional correlated term (1 + x1 + x2 + x3 | g): 10 covariance parameters for one
    grouping factor, sds 1, 0.8, 0.6, 0.4, correlations between -0.6 and 0.7 (50 groups x 12
    rows, sigma 1)."""
    n_groups, n_per, sigma = 50, 12, 1.0
    beta = (1.0, 0.5, -0.5, 0.25)
    u = correlated_effects(rng, n_groups, CORR4_SDS, CORR4_CORR)
    g = np.repeat(np.arange(n_groups), n_per)
    xs = [np.round(rng.standard_normal(len(g)), 3) for _ in range(3)]
    y = beta[0] + u[g, 0] + sigma * rng.standard_normal(len(g))
    for k in range(3):
        y = y + (beta[k + 1] + u[g, k + 1]) * xs[k]
    df = pd.DataFrame({"y": y, "x1": xs[0], "x2": xs[1], "x3": xs[2], "g": factor(g, "g")})
    names = ["(Intercept)", "x1", "x2", "x3"]
    tr = truth(dict(zip(names, beta, strict=True)), sigma, [("g", names, CORR4_SDS, CORR4_CORR)])
    return df, tr


FSLOPE_SDS = (1.0, 0.7, 0.5)
FSLOPE_CORR = _corr_matrix(3, {(0, 1): -0.5, (0, 2): 0.3, (1, 2): 0.4})


@design("sim_factor_slopes", seed=3005, formula="y ~ f + (f | g)")
def _factor_slopes(rng: np.random.Generator):
    """Factor-valued random slopes (f | g): a 3-level factor f (a, b, c) within each of 40
    groups (4 rows per level and group, 480 rows), so the random-effects term has R's
    treatment-contrast columns (Intercept), fb, fc: a 3 x 3 covariance from a factor
    (sds 1, 0.7, 0.5, correlations -0.5, 0.3, 0.4, sigma 0.8)."""
    n_groups, reps, sigma = 40, 4, 0.8
    beta = (3.0, 1.0, -0.5)
    u = correlated_effects(rng, n_groups, FSLOPE_SDS, FSLOPE_CORR)
    g = np.repeat(np.arange(n_groups), 3 * reps)
    f = np.tile(np.repeat(np.arange(3), reps), n_groups)
    fb, fc = (f == 1).astype(float), (f == 2).astype(float)
    y = (
        beta[0] + u[g, 0] + (beta[1] + u[g, 1]) * fb + (beta[2] + u[g, 2]) * fc
        + sigma * rng.standard_normal(len(g))
    )  # fmt: skip
    df = pd.DataFrame({"y": y, "f": factor(f, "f", labels=["a", "b", "c"]), "g": factor(g, "g")})
    names = ["(Intercept)", "fb", "fc"]
    tr = truth(
        dict(zip(names, beta, strict=True)), sigma, [("g", names, FSLOPE_SDS, FSLOPE_CORR)]
    )
    return df, tr


@design("sim_deep_nest", seed=3006, formula="y ~ x + (1 | a/b/c)")
def _deep_nest(rng: np.random.Generator):
    """Deep nesting (1 | a/b/c): 12 levels of a, 4 of b within each a and 3 of c within each
    b, the labels of b and c reused across their parents (so only the / operator nests them:
    c:(b:a) 144 levels, b:a 48, a 12), 3 rows per c (432 rows); sds 1 (a), 0.7 (b:a), 0.3
    (c:(b:a)), sigma 0.6."""
    n_a, n_b, n_c, reps = 12, 4, 3, 3
    sd_a, sd_b, sd_c, sigma = 1.0, 0.7, 0.3, 0.6
    n = n_a * n_b * n_c * reps
    a = np.repeat(np.arange(n_a), n_b * n_c * reps)
    b = np.tile(np.repeat(np.arange(n_b), n_c * reps), n_a)
    c = np.tile(np.repeat(np.arange(n_c), reps), n_a * n_b)
    ua = sd_a * rng.standard_normal(n_a)
    ub = sd_b * rng.standard_normal(n_a * n_b)
    uc = sd_c * rng.standard_normal(n_a * n_b * n_c)
    x = np.round(rng.standard_normal(n), 3)
    ab = a * n_b + b
    y = 1.0 + 0.5 * x + ua[a] + ub[ab] + uc[ab * n_c + c] + sigma * rng.standard_normal(n)
    df = pd.DataFrame(
        {"y": y, "x": x, "a": factor(a, "a"), "b": factor(b, "b"), "c": factor(c, "c")}
    )
    tr = truth(  # lme4's order: decreasing number of levels
        {"(Intercept)": 1.0, "x": 0.5},
        sigma,
        [
            ("c:(b:a)", ["(Intercept)"], [sd_c], None),
            ("b:a", ["(Intercept)"], [sd_b], None),
            ("a", ["(Intercept)"], [sd_a], None),
        ],
    )
    return df, tr


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


@design("sim_glmm_invgauss", seed=209, formula="y ~ x + (1 | g)")
def _glmm_invgauss(rng: np.random.Generator):
    """Inverse-Gaussian (log link) response with dispersion 0.05, so lme4's sigma (the square
    root of the dispersion, Var(y) = 0.05 mu^3) is sqrt(0.05), and a random intercept sd 0.4
    (40 groups x 10 rows): the other glmer family with a scale parameter."""
    n_groups, n_per, sd, dispersion = 40, 10, 0.4, 0.05
    g = np.repeat(np.arange(n_groups), n_per)
    u = sd * rng.standard_normal(n_groups)
    x = np.round(rng.standard_normal(len(g)), 3)
    mu = np.exp(1.0 + 0.3 * x + u[g])
    y = rng.wald(mu, 1.0 / dispersion)  # numpy's scale is lambda = 1 / dispersion
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    tr = glmm_truth(
        "inverse.gaussian",
        "log",
        {"(Intercept)": 1.0, "x": 0.3},
        [("g", ["(Intercept)"], [sd], None)],
        sigma=math.sqrt(dispersion),
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


@design("sim_glmm_nb", seed=209, formula="y ~ x + (1 | g)")
def _glmm_nb(rng: np.random.Generator):
    """Overdispersed counts: negative binomial (log link) with dispersion theta 2.5 (variance
    mu + mu^2/2.5) and a random intercept sd 0.6 (40 groups x 15 rows): lme4's glmer.nb."""
    n_groups, n_per, sd, nb_theta = 40, 15, 0.6, 2.5
    g = np.repeat(np.arange(n_groups), n_per)
    u = sd * rng.standard_normal(n_groups)
    x = np.round(rng.standard_normal(len(g)), 3)
    mu = np.exp(1.0 + 0.5 * x + u[g])
    y = rng.negative_binomial(nb_theta, nb_theta / (nb_theta + mu)).astype(np.int64)
    df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    tr = glmm_truth("negative.binomial", "log", {"(Intercept)": 1.0, "x": 0.5},
                    [("g", ["(Intercept)"], [sd], None)], nb_theta=nb_theta)
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
        "generator": f"harness.generate.simulate:{d.generator.__name__}",
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
    return (yaml_text.safe_load(path.read_text()) or {}).get("datasets") or {}


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
        prog="python -m harness.generate.simulate",
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
