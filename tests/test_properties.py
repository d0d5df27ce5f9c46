"""Property-based tests of mixedref.lmer on generated designs (hypothesis): invariances and
exact transformation rules that follow from the model, checked at a common theta (where they
hold to rounding) and at the fitted optimum (where they hold to the optimizer's tolerance).

Designs: 3..10 levels of g, 1..8 rows per level, a normal covariate x, random intercepts
(and slopes), noise; built from a hypothesis-drawn seed so examples shrink to small designs.
The profile is derandomized and database-free, so every run sees the same examples.

Tolerances.
* At a common theta the criterion is the same function evaluated on permuted/rescaled numbers,
  so it agrees to rounding: 1e-9 relative (RTOL_SAME).
* Between two optima: lme4's (and mixedref's) BOBYQA stops when a step improves the criterion by
  less than ftol_abs = 1e-8 or moves theta by less than xtol_abs = 1e-8. That bounds the last
  step, not the distance to the optimum: on the flat criteria of designs with 3..10 levels two
  runs on equivalent problems stop up to ~1e-6 apart (1.2e-6 seen on a 27-row (x | g) design
  rescaled by -1000; lme4 itself stops 2.4e-7 apart on seed102 REML with x and x + 4, see
  tests/references/edge/shift_seed102.json). OPT_ATOL = 1e-5 (1000 ftol_abs) on the criterion
  is therefore an empirical bound, chosen before looking at any mixedref-only failure, and still
  five orders below the differences that signal a wrong optimum (0.3 .. 19 seen, below).
  Parameters at two optima are not compared directly (in flat directions a 1e-8 change of the
  criterion moves theta by ~1e-4 or more); instead the estimates are compared at a common
  theta, and each fit's theta is evaluated in the other problem.

Constants. Rescaling y -> a y + b x multiplies the penalized residual sum of squares by a^2 at
every theta and leaves log|L|^2 and log|R_X|^2 unchanged (they depend on theta and X only), so
the deviance n(1 + log(2 pi pwrss / n)) + log|L|^2 shifts by n log a^2 = 2 n log|a| and the REML
criterion (n - p)(1 + log(2 pi pwrss/(n - p))) + log|L|^2 + log|R_X|^2 by 2 (n - p) log|a|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mixedref
from mixedref import literal
from mixedref.engines import PLSObjective
from mixedref.fitting.optimize import OptResult
from mixedref.frontend.design import build_model
from mixedref.frontend.reterm import TermShape
from mixedref.models.fit import LmerFit

RTOL_SAME = 1e-9
OPT_ATOL = 1e-5

PROPS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])

FORMULAS = {"intercept": "y ~ x + (1 | g)", "slopes": "y ~ x + (x | g)",
            "uncorrelated": "y ~ x + (x || g)"}


@dataclass
class Design:
    data: pd.DataFrame
    seed: int

    @property
    def n(self) -> int:
        return len(self.data)

    @property
    def m(self) -> int:
        return self.data["g"].cat.categories.size


@st.composite
def designs(draw: st.DrawFn, min_rows_per_effect: int = 2) -> Design:
    """A random-intercept-and-slope data set: m in 3..10 levels with 1..8 rows each."""
    m = draw(st.integers(3, 10))
    sizes = draw(st.lists(st.integers(1, 8), min_size=m, max_size=m))
    n = sum(sizes)
    assume(n > min_rows_per_effect * m + 2)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), sizes)
    x = rng.standard_normal(n)
    u = rng.standard_normal((m, 2)) * [1.0, 0.5]
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + 0.5 * rng.standard_normal(n)
    levels = [f"L{k}" for k in range(m)]
    data = pd.DataFrame({"y": y, "x": x,
                         "g": pd.Categorical.from_codes(g, categories=levels)})
    return Design(data, seed)


def random_theta(model, rng: np.random.Generator) -> np.ndarray:
    """A theta within lme4's bounds: diagonal in [0, 3] (sometimes exactly 0), off-diagonal
    in [-2, 2]."""
    lower = model.theta_lower
    theta = np.where(np.isfinite(lower), rng.uniform(0, 3, lower.size),
                     rng.uniform(-2, 2, lower.size))
    if rng.random() < 0.2:
        diag = np.flatnonzero(np.isfinite(lower))
        theta[rng.choice(diag)] = 0.0
    return theta


def _fit_at(formula: str, data: pd.DataFrame, REML: bool, theta: np.ndarray) -> LmerFit:
    """An LmerFit at a given theta (lme4's mkMerMod stage without optimizing), so the reported
    quantities of two problems can be compared at one theta."""
    obj = mixedref.devfun(formula, data, REML)
    opt = OptResult(theta=np.asarray(theta, dtype=float), fval=obj(theta), nfev=1,
                    return_code=1, return_name="given", converged=True, singular=False)
    return LmerFit(obj.model, obj, opt)


def _formula(kind: str) -> str:
    return FORMULAS[kind]


KINDS = st.sampled_from(sorted(FORMULAS))
METHODS = st.booleans()


# -- permutation of rows and relabelling of levels ----------------------------------------------


@PROPS
@given(designs(), KINDS, METHODS)
def test_permuting_rows_and_relabelling_levels(design: Design, kind: str, REML: bool) -> None:
    formula = _formula(kind)
    rng = np.random.default_rng(design.seed + 1)
    d = design.data
    perm = rng.permutation(design.n)
    new_names = rng.permutation([f"z{k:02d}" for k in range(design.m)])  # new level order
    relabel = dict(zip(d["g"].cat.categories, new_names, strict=True))
    d2 = d.iloc[perm].reset_index(drop=True)
    d2["g"] = pd.Categorical([relabel[v] for v in d2["g"]])
    f1, f2 = mixedref.devfun(formula, d, REML), mixedref.devfun(formula, d2, REML)
    theta = random_theta(f1.model, rng)
    assert f2(theta) == pytest.approx(f1(theta), rel=RTOL_SAME)

    fit1, fit2 = mixedref.lmer(formula, d, REML), mixedref.lmer(formula, d2, REML)
    assert fit2.objective == pytest.approx(fit1.objective, abs=OPT_ATOL)
    assert f1(fit2.theta) >= fit1.objective - OPT_ATOL  # fit1 reached the optimum ...
    assert f2(fit1.theta) >= fit2.objective - OPT_ATOL  # ... and so did fit2
    s1, s2 = f1.solve(fit1.theta), f2.solve(fit1.theta)  # the estimates at one theta
    np.testing.assert_allclose(s2.beta, s1.beta, rtol=1e-8, atol=1e-10)
    assert s2.sigma == pytest.approx(s1.sigma, rel=1e-9)
    b1 = fit1.ranef["g"].rename(index=relabel).sort_index()
    b2 = _fit_at(formula, d2, REML, fit1.theta).ranef["g"].sort_index()
    np.testing.assert_allclose(b2.to_numpy(), b1.to_numpy(), rtol=1e-7, atol=1e-9)


# -- y -> a y + b x ------------------------------------------------------------------------------


@PROPS
@given(designs(), KINDS, METHODS,
       st.sampled_from([-1e3, -2.5, -1.0, -0.01, 1e-3, 0.3, 7.0, 1e4]),
       st.sampled_from([0.0, -3.0, 0.5, 2.0]))
def test_affine_response(design: Design, kind: str, REML: bool, a: float, k: float) -> None:
    """b = a k: |b| stays within a few |a| (see test_edge_cases for a response dominated by
    its fixed part, where the PLS engine loses digits)."""
    formula = _formula(kind)
    b = a * k
    d = design.data
    d2 = d.assign(y=a * d["y"] + b * d["x"])
    f1, f2 = mixedref.devfun(formula, d, REML), mixedref.devfun(formula, d2, REML)
    n, p = f1.model.n, f1.model.p
    shift = 2.0 * (n - p if REML else n) * math.log(abs(a))
    rng = np.random.default_rng(design.seed + 2)
    for theta in (random_theta(f1.model, rng), random_theta(f1.model, rng)):
        o1, o2 = f1(theta), f2(theta)
        assert o2 - shift == pytest.approx(o1, rel=RTOL_SAME, abs=1e-9 * abs(shift))
        s1, s2 = f1.solve(theta), f2.solve(theta)
        expected = a * s1.beta + b * np.array([0.0, 1.0])  # columns: (Intercept), x
        np.testing.assert_allclose(s2.beta, expected, rtol=1e-7,
                                   atol=1e-9 * (abs(a) * np.abs(s1.beta).max() + abs(b)))
        assert s2.sigma == pytest.approx(abs(a) * s1.sigma, rel=1e-8)
        np.testing.assert_allclose(s2.b, a * s1.b, rtol=1e-7,
                                   atol=1e-9 * abs(a) * (np.abs(s1.b).max() + s1.sigma))

    fit1, fit2 = mixedref.lmer(formula, d, REML), mixedref.lmer(formula, d2, REML)
    assert fit2.objective - shift == pytest.approx(fit1.objective, abs=OPT_ATOL)
    # theta is unchanged: each optimum is (within the optimizer's tolerance) optimal for both
    assert f1(fit2.theta) >= fit1.objective - OPT_ATOL
    assert f2(fit1.theta) - shift >= fit1.objective - OPT_ATOL - 1e-9 * abs(shift)
    # the reported estimates at a common theta: variance components scale by a^2,
    # correlations are unchanged (every random effect is multiplied by a)
    same = _fit_at(formula, d2, REML, fit1.theta)
    vc1, vc2 = fit1.varcorr, same.varcorr
    is_var = vc1["var2"].isna().to_numpy()
    np.testing.assert_allclose(vc2["vcov"], a**2 * vc1["vcov"], rtol=1e-7,
                               atol=1e-12 * a**2 * fit1.sigma**2)
    corr = ~is_var & np.isfinite(vc1["sdcor"].to_numpy(dtype=float))
    np.testing.assert_allclose(vc2["sdcor"][corr], vc1["sdcor"][corr], atol=1e-8)
    expected = a * fit1.fixef.to_numpy() + b * np.array([0.0, 1.0])
    np.testing.assert_allclose(same.fixef, expected, rtol=1e-7,
                               atol=1e-9 * (abs(a) * np.abs(fit1.fixef).max() + abs(b)))
    np.testing.assert_allclose(same.se, abs(a) * fit1.se, rtol=1e-7)


# -- translating the slope covariate -------------------------------------------------------------


def _translated_theta(theta: np.ndarray, c: float) -> np.ndarray:
    """theta of (1 + x' | g), x' = x + c, giving the same model as theta of (1 + x | g).

    A row's random part is b0 + b1 x = (b0 - c b1) + b1 x', so b' = B b with
    B = [[1, -c], [0, 1]]; the relative covariance becomes B T T' B' and T' is its Cholesky
    factor (lower, non-negative diagonal)."""
    T = TermShape("g", ("(Intercept)", "x")).template(theta)
    B = np.array([[1.0, -c], [0.0, 1.0]])
    S = B @ T @ T.T @ B.T
    # the Cholesky factor of a possibly singular 2 x 2 matrix, written out
    t11 = math.sqrt(S[0, 0])
    t21 = S[1, 0] / t11 if t11 > 0 else math.sqrt(S[1, 1])
    t22 = math.sqrt(max(S[1, 1] - t21**2, 0.0))
    return np.array([t11, t21, t22])


@PROPS
@given(designs(), METHODS, st.sampled_from([-10.0, -1.5, 0.7, 4.0, 25.0]))
def test_translating_slope_covariate_correlated(design: Design, REML: bool, c: float) -> None:
    formula = _formula("slopes")
    d = design.data
    d2 = d.assign(x=d["x"] + c)
    f1, f2 = mixedref.devfun(formula, d, REML), mixedref.devfun(formula, d2, REML)
    rng = np.random.default_rng(design.seed + 3)
    theta = random_theta(f1.model, rng)
    theta[0] = max(theta[0], 0.1)  # keep T11 > 0 so the map is one-to-one
    # |c| up to 25 makes the translated problem worse conditioned (x'x grows by ~c^2):
    # rounding of a criterion of size ~n, amplified by c^2
    tol = 1e-13 * design.n * max(1.0, c * c) * 1e2
    assert f2(_translated_theta(theta, c)) == pytest.approx(f1(theta), rel=RTOL_SAME, abs=tol)
    # the optimum itself is checked on recorded designs against lme4 (see below): BOBYQA from
    # lme4's identity start can stop on the theta_11 = 0 boundary for a translated x, in lme4
    # as in mixedref, so an equality of the two optima is not a property of the optimizer


def _lme4_shift(formula: str, REML: bool) -> dict:
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "references" / "edge" / "shift_slope.json")
                     .read_text())
    fit = next(f for f in ref["fits"] if f["formula"] == formula and f["REML"] == REML)
    return {"fit": fit, "data": pd.DataFrame({"Reaction": ref["data"]["Reaction"],
                                              "Days": ref["data"]["Days"],
                                              "Dc": ref["data"]["Dc"],
                                              "Subject": pd.Categorical(ref["data"]["Subject"])})}


@pytest.mark.parametrize("REML", [True, False])
@pytest.mark.parametrize("bar", ["|", "||"])
def test_translating_slope_covariate_sleepstudy(REML: bool, bar: str) -> None:
    """sleepstudy, Days vs Dc = Days + 10 (lme4's answers in tests/references/edge/): the
    optimum is unchanged with (Days | Subject) and changes with (Days || Subject)."""
    r1 = _lme4_shift(f"Reaction ~ Days + (Days {bar} Subject)", REML)
    r2 = _lme4_shift(f"Reaction ~ Dc + (Dc {bar} Subject)", REML)
    fit1 = mixedref.lmer(r1["fit"]["formula"], r1["data"], REML)
    fit2 = mixedref.lmer(r2["fit"]["formula"], r2["data"], REML)
    for fit, ref in ((fit1, r1["fit"]), (fit2, r2["fit"])):
        assert fit.objective <= ref["objective"] + 1e-6 * abs(ref["objective"])
        assert fit.objective == pytest.approx(ref["objective"], rel=1e-6)
    if bar == "|":
        assert fit2.objective == pytest.approx(fit1.objective, abs=OPT_ATOL)
    else:  # lme4: 1743.67 -> 1760.82 (REML), 1752.00 -> 1768.42 (ML)
        assert fit2.objective - fit1.objective > 10.0


# -- nesting -------------------------------------------------------------------------------------


@st.composite
def nested_designs(draw: st.DrawFn) -> pd.DataFrame:
    """g1 with 3..6 levels, 2..4 levels of g2 within each (g2's labels reused across g1, as
    lme4's Pastes' cask), 1..8 rows per cell."""
    m1 = draw(st.integers(3, 6))
    m2 = draw(st.lists(st.integers(2, 4), min_size=m1, max_size=m1))
    sizes = draw(st.lists(st.integers(1, 8), min_size=sum(m2), max_size=sum(m2)))
    assume(sum(sizes) > sum(m2) + 2)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    g1 = np.repeat(np.repeat(np.arange(m1), m2), sizes)
    g2 = np.repeat(np.concatenate([np.arange(k) for k in m2]), sizes)
    cell = np.repeat(np.arange(sum(m2)), sizes)
    n = g1.size
    x = rng.standard_normal(n)
    y = (x + rng.standard_normal(m1)[g1] + 0.7 * rng.standard_normal(sum(m2))[cell]
         + 0.5 * rng.standard_normal(n))
    return pd.DataFrame({"y": y, "x": x,
                         "g1": pd.Categorical([f"a{k}" for k in g1]),
                         "g2": pd.Categorical([f"b{k}" for k in g2])})


@PROPS
@given(nested_designs(), METHODS)
def test_nested_equals_explicit_interaction(data: pd.DataFrame, REML: bool) -> None:
    a, b = "y ~ x + (1 | g1/g2)", "y ~ x + (1 | g1) + (1 | g1:g2)"
    fa, fb = mixedref.lmer(a, data, REML), mixedref.lmer(b, data, REML)
    assert sorted(fa.ngroups.values()) == sorted(fb.ngroups.values())
    da, db = mixedref.devfun(a, data, REML), mixedref.devfun(b, data, REML)
    theta = random_theta(da.model, np.random.default_rng(len(data)))
    assert da(theta) == pytest.approx(db(theta), rel=RTOL_SAME)
    assert fa.objective == pytest.approx(fb.objective, abs=OPT_ATOL)
    assert da(fb.theta) >= fa.objective - OPT_ATOL and db(fa.theta) >= fb.objective - OPT_ATOL
    sa, sb = da.solve(fa.theta), db.solve(fa.theta)  # estimates at one theta
    np.testing.assert_allclose(sa.beta, sb.beta, rtol=1e-8, atol=1e-10)
    assert sa.sigma == pytest.approx(sb.sigma, rel=1e-9)
    va = _fit_at(a, data, REML, fa.theta).varcorr["vcov"]
    vb = _fit_at(b, data, REML, fa.theta).varcorr["vcov"]
    np.testing.assert_allclose(va, vb, rtol=1e-8, atol=1e-12 * fa.sigma**2)


# -- REML and ML at one theta --------------------------------------------------------------------


@PROPS
@given(designs(), KINDS)
def test_reml_sigma_is_ml_sigma_rescaled(design: Design, kind: str) -> None:
    """At one theta both criteria share beta-hat and the penalized residual sum of squares;
    sigma^2 is pwrss/n (ML) and pwrss/(n - p) (REML)."""
    model = build_model(_formula(kind), design.data)
    ml, reml = PLSObjective(model, REML=False), PLSObjective(model, REML=True)
    rng = np.random.default_rng(design.seed + 4)
    n, p = model.n, model.p
    for _ in range(3):
        theta = random_theta(model, rng)
        s_ml, s_reml = ml.solve(theta), reml.solve(theta)
        assert s_reml.sigma**2 == pytest.approx(s_ml.sigma**2 * n / (n - p), rel=1e-12)
        np.testing.assert_allclose(s_reml.beta, s_ml.beta, rtol=1e-12, atol=1e-14)


# -- the fast engine against the literal equations -----------------------------------------------


def _literal_inputs(model, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Omega^-1 = Lambda Lambda' and Z, in the PLS engine's layout (terms in order, each
    level-major)."""
    blocks, off = [], 0
    for t in model.reterms:
        T = t.template(theta[off:off + t.ntheta])
        off += t.ntheta
        blocks.append(sp.kron(sp.identity(t.nlevels), sp.csr_matrix(T @ T.T)))
    omega_inv = sp.block_diag(blocks).toarray()
    Z = sp.hstack([t.Z for t in model.reterms]).toarray()
    return omega_inv, Z


@PROPS
@given(designs(), st.sampled_from([*sorted(FORMULAS), "crossed"]), METHODS)
def test_pls_equals_literal_at_random_theta(design: Design, kind: str, REML: bool) -> None:
    data = design.data
    if kind == "crossed":
        rng0 = np.random.default_rng(design.seed + 5)
        data = data.assign(h=pd.Categorical(rng0.integers(0, 3, design.n).astype(str)))
        assume(data["h"].cat.categories.size >= 2)
        formula = "y ~ x + (x | g) + (1 | h)"
    else:
        formula = _formula(kind)
    fn = mixedref.devfun(formula, data, REML)
    rng = np.random.default_rng(design.seed + 6)
    for _ in range(3):
        theta = random_theta(fn.model, rng)
        omega_inv, Z = _literal_inputs(fn.model, theta)
        lit = literal.profiled(omega_inv, fn.model.X, Z, fn.model.y, REML)
        assert fn(theta) == pytest.approx(lit.objective, rel=1e-8)
        sol = fn.solve(theta)
        np.testing.assert_allclose(sol.beta, lit.beta, rtol=1e-7,
                                   atol=1e-8 * (np.abs(lit.beta).max() + 1))
        assert sol.sigma**2 == pytest.approx(lit.sigma2, rel=1e-8)


SHIFT_CASES = [(design, i) for design in ("seed102", "seed173", "seed219") for i in range(8)]
# (design, i) where mixedref stops on the theta_11 = 0 boundary and lme4 does not (none now)
_MIXEDREF_STUCK: set[tuple[str, int]] = set()


def _shift_case(design: str, i: int) -> tuple[dict, pd.DataFrame]:
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "references" / "edge" / f"shift_{design}.json")
                     .read_text())
    fit = ref["fits"][i]
    data = pd.DataFrame({"y": ref["data"]["y"], "xc": np.asarray(ref["data"]["x"]) + fit["shift"],
                         "g": pd.Categorical(ref["data"]["g"])})
    return fit, data


@pytest.mark.parametrize("design,i", [
    pytest.param(d, i, marks=pytest.mark.xfail(
        strict=True, reason="mixedref's BOBYQA run stops on the boundary (112.29) where "
        "lme4's reaches 92.85")) if (d, i) in _MIXEDREF_STUCK else (d, i)
    for d, i in SHIFT_CASES])
def test_translated_designs_reach_lme4(design: str, i: int) -> None:
    """Generated designs (tests/references/edge/shift_designs.csv) with x + c, c in
    (0, -1.5, 4, 25): mixedref reaches lme4's criterion or lower (1e-6 relative). lme4 itself
    misses the common optimum for some c (seed102 ML c=4: 64.24 vs 51.30; seed219 ML c=-1.5,
    4, 25: 43.65 vs 40.89), so the invariance holds for the criterion, not for the optimizer."""
    ref, data = _shift_case(design, i)
    fit = mixedref.lmer("y ~ xc + (xc | g)", data, ref["REML"])
    assert fit.objective <= ref["objective"] + 1e-6 * abs(ref["objective"])
