"""The fast PLS objective equals the literal dense equations at random theta (ML and REML)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sla

from mixedref import literal
from mixedref.engines import PLSObjective
from mixedref.errors import MixedrefError
from mixedref.fitting.optimize import optimize_theta
from mixedref.frontend.design import ModelFrame, ReTerm
from mixedref.frontend.reterm import split_theta, theta_slices


def _term(group: str, cols: tuple[str, ...], X: np.ndarray, codes: np.ndarray, m: int) -> ReTerm:
    return ReTerm(group, cols, np.asarray(X, float), np.asarray(codes, np.int64),
                  tuple(f"L{i}" for i in range(m)))


def _design(kind: str, seed: int) -> ModelFrame:
    """Small random designs: random intercept, correlated slopes, crossed, nested."""
    rng = np.random.default_rng(seed)
    n = 60
    x = rng.normal(size=n)
    one = np.ones((n, 1))
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    if kind == "intercept":
        g = rng.integers(0, 7, n)
        terms = (_term("g", ("(Intercept)",), one, g, 7),)
    elif kind == "slopes":
        g = np.repeat(np.arange(6), 10)
        terms = (_term("g", ("(Intercept)", "x"), np.column_stack([one, x]), g, 6),)
    elif kind == "crossed":
        g = rng.integers(0, 9, n)
        h = rng.integers(0, 5, n)
        terms = (
            _term("g", ("(Intercept)",), one, g, 9),
            _term("h", ("(Intercept)", "x"), np.column_stack([one, x]), h, 5),
        )
    elif kind == "nested":
        a = rng.integers(0, 4, n)
        ab = a * 3 + rng.integers(0, 3, n)
        terms = (
            _term("b:a", ("(Intercept)",), one, ab, 12),
            _term("a", ("(Intercept)",), one, a, 4),
        )
    elif kind == "three":
        g = rng.integers(0, 10, n)
        h = rng.integers(0, 4, n)
        k = rng.integers(0, 3, n)
        terms = (
            _term("g", ("(Intercept)", "x"), np.column_stack([one, x]), g, 10),
            _term("h", ("(Intercept)",), one, h, 4),
            _term("k", ("(Intercept)", "x"), np.column_stack([one, x]), k, 3),
        )
    else:  # pragma: no cover
        raise AssertionError(kind)
    y = X @ np.array([2.0, 1.0, -0.5]) + rng.normal(size=n)
    for t in terms:
        eff = rng.normal(size=(t.nlevels, t.q))
        y = y + np.einsum("nq,nq->n", t.X, eff[t.codes])
    return ModelFrame("y ~ ...", y, X, ("(Intercept)", "x", "z"), terms, "y")


def _omega_inv(model: ModelFrame, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lambda Lambda' and the dense Z, built from the definitions (block diagonal per level)."""
    blocks, Zs, off = [], [], 0
    for t in model.reterms:
        T = t.template(theta[off:off + t.ntheta])
        off += t.ntheta
        blocks += [T] * t.nlevels
        Zs.append(t.Z.toarray())
    Lam = sla.block_diag(*blocks)
    return Lam @ Lam.T, np.hstack(Zs)


KINDS = ["intercept", "slopes", "crossed", "nested", "three"]


def _random_theta(model: ModelFrame, rng: np.random.Generator) -> np.ndarray:
    lower = model.theta_lower
    th = rng.normal(scale=0.8, size=lower.shape)
    return np.where(np.isfinite(lower), np.abs(th) + 0.05, th)


@pytest.mark.parametrize("engine", ["dense", "sparse"])
def test_each_term_gets_its_own_piece_of_theta(engine: str) -> None:
    """The engines cut θ by reterm's layout (lme4's order: term after term, each term's lower
    triangle column by column) and refuse a θ of another length, naming both."""
    if engine == "sparse":
        pytest.importorskip("sksparse")
    model = _design("three", 3)  # (x | g), (1 | h), (x | k): 3 + 1 + 3 elements
    obj = PLSObjective(model, True, engine=engine)
    theta = np.arange(1.0, 8.0)
    T_g, T_h, T_k = obj.templates(theta)
    np.testing.assert_array_equal(T_g, [[1.0, 0.0], [2.0, 3.0]])
    np.testing.assert_array_equal(T_h, [[4.0]])
    np.testing.assert_array_equal(T_k, [[5.0, 0.0], [6.0, 7.0]])
    pieces = split_theta(theta, model.reterms, theta_slices(model.reterms))
    assert [p.tolist() for p in pieces] == [[1.0, 2.0, 3.0], [4.0], [5.0, 6.0, 7.0]]
    with pytest.raises(MixedrefError, match=r"theta must have 7 elements, got \(6,\)"):
        obj(theta[:6])
    with pytest.raises(MixedrefError, match=r"theta must have 7 elements, got \(6,\)"):
        split_theta(theta[:6], model.reterms, theta_slices(model.reterms))


@pytest.mark.parametrize("REML", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("kind", KINDS)
def test_objective_matches_literal(kind: str, REML: bool) -> None:
    model = _design(kind, seed=KINDS.index(kind))
    obj = PLSObjective(model, REML=REML)
    rng = np.random.default_rng(123)
    for _ in range(4):
        theta = _random_theta(model, rng)
        omega_inv, Z = _omega_inv(model, theta)
        ref = literal.profiled(omega_inv, model.X, Z, model.y, REML)
        got = obj(theta)
        assert got == pytest.approx(ref.objective, rel=1e-8)
        sol = obj.solve(theta)
        assert sol.objective == pytest.approx(ref.objective, rel=1e-8)
        np.testing.assert_allclose(sol.beta, ref.beta, rtol=1e-8, atol=1e-10)
        assert sol.sigma == pytest.approx(math.sqrt(ref.sigma2), rel=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_modes_and_condvar_from_theory(kind: str) -> None:
    """b = Lam (Lam'Z'ZLam + I)^-1 Lam'Z'(y - X beta) and condVar = sigma^2 Lam (...)^-1 Lam'."""
    model = _design(kind, seed=10 + KINDS.index(kind))
    obj = PLSObjective(model, REML=True)
    theta = _random_theta(model, np.random.default_rng(7))
    sol = obj.solve(theta, condvar=True)
    blocks, off = [], 0
    for t in model.reterms:
        T = t.template(theta[off:off + t.ntheta])
        off += t.ntheta
        blocks += [T] * t.nlevels
    Lam = sla.block_diag(*blocks)
    Z = np.hstack([t.Z.toarray() for t in model.reterms])
    A = Lam.T @ Z.T @ Z @ Lam + np.eye(Lam.shape[0])
    u = np.linalg.solve(A, Lam.T @ Z.T @ (model.y - model.X @ sol.beta))
    np.testing.assert_allclose(sol.u, u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sol.b, Lam @ u, rtol=1e-8, atol=1e-10)
    cov = sol.sigma**2 * Lam @ np.linalg.inv(A) @ Lam.T
    off = 0
    for t, cv in zip(model.reterms, sol.condvar, strict=True):
        for lev in range(t.nlevels):
            sl = slice(off + lev * t.q, off + (lev + 1) * t.q)
            np.testing.assert_allclose(cv[lev], cov[sl, sl], rtol=1e-8, atol=1e-12)
        off += t.q * t.nlevels
    # R_X: vcov(beta) = sigma^2 (X'V^-1 X)^-1 with V = I + Z Lam Lam' Z'
    V = np.eye(model.n) + Z @ Lam @ Lam.T @ Z.T
    XtVX = model.X.T @ np.linalg.solve(V, model.X)
    np.testing.assert_allclose(sol.RX.T @ sol.RX, XtVX, rtol=1e-8)


def test_weights_and_offset_by_transformation() -> None:
    """Weighted fit = unweighted fit of rows scaled by sqrt(w), plus lme4's -sum(log w) term;
    an offset is the same as subtracting it from y."""
    base = _design("slopes", seed=3)
    rng = np.random.default_rng(5)
    w = rng.uniform(0.5, 2.0, base.n)
    off = rng.normal(size=base.n)
    sw = np.sqrt(w)
    weighted = ModelFrame(base.formula, base.y, base.X, base.fixef_names, base.reterms, "y",
                          weights=w, offset=off)
    t = base.reterms[0]
    scaled_term = ReTerm(t.group, t.columns, t.X * sw[:, None], t.codes, t.levels)
    scaled = ModelFrame(base.formula, (base.y - off) * sw, base.X * sw[:, None],
                        base.fixef_names, (scaled_term,), "y")
    theta = np.array([0.7, -0.2, 0.4])
    for REML in (True, False):
        got = PLSObjective(weighted, REML)(theta)
        omega_inv, Z = _omega_inv(scaled, theta)
        ref = literal.profiled(omega_inv, scaled.X, Z, scaled.y, REML)
        assert got == pytest.approx(ref.objective - np.sum(np.log(w)), rel=1e-8)


@pytest.mark.parametrize("value", [0.0, 1e-5, 5e-4, 2e-3])
def test_later_term_near_boundary(value: float) -> None:
    """Later scalar terms at or near theta = 0 (the objective switches from its diagonal
    shortcut to plain rescaling below 1e-3): both agree with the literal equations."""
    model = _design("nested", seed=4)
    obj = PLSObjective(model, REML=True)
    theta = np.array([0.8, value])
    omega_inv, Z = _omega_inv(model, theta)
    ref = literal.profiled(omega_inv, model.X, Z, model.y, True)
    assert obj(theta) == pytest.approx(ref.objective, rel=1e-8)
    assert obj.solve(theta).objective == pytest.approx(ref.objective, rel=1e-8)


def _scalar_design(seed: int) -> ModelFrame:
    """Crossed and nested scalar intercept terms (the kind the exact gradient covers)."""
    rng = np.random.default_rng(seed)
    n = 80
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    one = np.ones((n, 1))
    g, h, k = rng.integers(0, 12, n), rng.integers(0, 6, n), rng.integers(0, 4, n)
    terms = (_term("g", ("(Intercept)",), one, g, 12), _term("h", ("(Intercept)",), one, h, 6),
             _term("k", ("(Intercept)",), one, k, 4))
    y = X @ np.array([1.0, 0.5]) + rng.normal(size=n)
    for t in terms:
        y = y + rng.normal(size=t.nlevels)[t.codes]
    return ModelFrame("y ~ ...", y, X, ("(Intercept)", "x"), terms, "y")


def _literal_objective(model: ModelFrame, theta: np.ndarray, REML: bool) -> float:
    omega_inv, Z = _omega_inv(model, theta)
    return literal.profiled(omega_inv, model.X, Z, model.y, REML).objective


@pytest.mark.parametrize("REML", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("kind", ["scalar3", "nested", "intercept"])
def test_gradient_matches_literal_differences(kind: str, REML: bool) -> None:
    """The exact gradient equals central differences of the literal (dense) objective."""
    model = _scalar_design(1) if kind == "scalar3" else _design(kind, seed=KINDS.index(kind))
    obj = PLSObjective(model, REML=REML)
    assert obj.has_gradient
    rng = np.random.default_rng(11)
    for _ in range(3):
        theta = np.abs(rng.normal(scale=0.8, size=model.theta_lower.shape)) + 0.05
        value, grad = obj.value_and_grad(theta)
        assert value == pytest.approx(_literal_objective(model, theta, REML), rel=1e-9)
        h = 1e-5
        fd = [(_literal_objective(model, theta + h * e, REML)
               - _literal_objective(model, theta - h * e, REML)) / (2 * h)
              for e in np.eye(theta.size)]
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


def test_gradient_of_vector_terms_and_skips_near_zero() -> None:
    obj = PLSObjective(_design("slopes", seed=0), REML=True)
    assert obj.has_gradient  # the general gradient (tests/test_gradient.py checks its values)
    assert obj.value_and_grad(np.array([1.0, 0.0, 1.0]))[1] is not None
    nested = PLSObjective(_design("nested", seed=4), REML=True)
    value, grad = nested.value_and_grad(np.array([0.8, 1e-4]))  # below the shortcut's range
    assert grad is None and value == pytest.approx(nested(np.array([0.8, 1e-4])), rel=1e-12)


@pytest.mark.parametrize("REML", [True, False], ids=["REML", "ML"])
def test_lbfgsb_reaches_bobyqa_optimum(REML: bool) -> None:
    """L-BFGS-B with the exact gradient ends at BOBYQA's optimum or lower (same criterion)."""
    model = _scalar_design(2)
    obj = PLSObjective(model, REML=REML)
    grad_fit = optimize_theta(obj, model, {"method": "lbfgsb"})
    ref_fit = optimize_theta(obj, model, {"method": "bobyqa"})
    assert grad_fit.method.startswith("lbfgsb") and ref_fit.method == "bobyqa"
    assert grad_fit.converged
    assert grad_fit.fval <= ref_fit.fval + 1e-6 * abs(ref_fit.fval)
    np.testing.assert_allclose(grad_fit.theta, ref_fit.theta, atol=1e-3)


def test_method_choice() -> None:
    model = _design("slopes", seed=0)
    obj = PLSObjective(model, REML=True)
    auto = optimize_theta(obj, model)
    assert auto.method == "bobyqa"  # 3 θ: below optimize.GRADIENT_MIN_THETA
    forced = optimize_theta(obj, model, {"method": "lbfgsb"})  # the general gradient
    assert forced.method.startswith("lbfgsb")
    assert forced.fval == pytest.approx(auto.fval, abs=1e-6)
    obj.has_gradient = False  # an objective without the gradient (the sparse engine's case)
    with pytest.raises(MixedrefError, match="gradient"):
        optimize_theta(obj, model, {"method": "lbfgsb"})
    with pytest.raises(MixedrefError, match="unknown method"):
        optimize_theta(obj, model, {"method": "newton"})
    small = _scalar_design(3)
    assert optimize_theta(PLSObjective(small, True), small).method == "bobyqa"  # small block


@pytest.mark.parametrize("case", ["dyestuff-ML", "dyestuff-REML", "dyestuff2-REML",
                                  "penicillin-crossed-REML", "pastes-nested-REML"])
def test_lbfgsb_on_lme4_cases(case: str) -> None:
    """Forced onto small all-scalar cases (dyestuff2 is singular: theta = 0, the fallback), the
    gradient path reaches lme4 1.1-31's objective (tests/references/engine) or lower."""
    from test_lmer import _load, _model_from_r

    ref = _load(case)
    model = _model_from_r(ref)
    fit = optimize_theta(PLSObjective(model, ref["REML"]), model, {"method": "lbfgsb"})
    assert fit.converged
    assert fit.fval <= ref["objective"] * (1 + 1e-6)
    np.testing.assert_allclose(fit.theta, np.atleast_1d(ref["theta"]), atol=1e-3)


# -- a response dominated by its fixed part (harness dataset sim_huge_offset) --------------------


def _lme4_record(case_id: str) -> dict:
    import json
    from pathlib import Path

    path = Path(__file__).parents[1] / "harness" / "references" / "lme4.json"
    return json.loads(path.read_text())["records"][case_id]


@pytest.mark.parametrize("REML", [True, False])
def test_huge_offset_criterion_and_fit_match_lme4(REML: bool) -> None:
    """y = 1e9 + noise: y'y ~ 3e20, pwrss ~ 75. The criterion at lme4's theta is lme4's to
    1e-8 relative (lme4's own value carries ~5e-6 absolute rounding: its residuals y - X beta
    are formed at 1e9 magnitude), and the fit reaches lme4's objective."""
    import mixedref
    from harness.core.datasets import load_dataset

    ref = _lme4_record("sim_huge_offset-intercept-" + ("REML" if REML else "ML"))
    data = load_dataset("sim_huge_offset")
    fn = mixedref.devfun("y ~ x + (1 | g)", data, REML)
    assert fn(np.asarray(ref["theta"])) == pytest.approx(ref["objective"], rel=1e-8)
    fit = mixedref.lmer("y ~ x + (1 | g)", data, REML)
    assert fit.objective == pytest.approx(ref["objective"], rel=1e-8)
    # lme4.json holds 13-15 significant digits (1e-4 at 1e9); the intercept's SE is ~0.2
    assert fit.fixef["(Intercept)"] == pytest.approx(ref["fixef"]["(Intercept)"], abs=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)


@pytest.mark.parametrize("shift", [1e9, 1e12])
@pytest.mark.parametrize("REML", [True, False])
def test_adding_a_constant_to_y_changes_only_the_intercept(shift: float, REML: bool) -> None:
    """The criterion is invariant under y -> y + c (the intercept absorbs c). The response is
    quantized to multiples of 2^-12 so that y + 1e12 is exact in double precision (spacing
    2^-13 there): the two problems are then the same problem, and the engine must agree to
    rounding of the small one."""
    model = _design("intercept", 7)
    y = np.round(model.y * 4096.0) / 4096.0
    base = ModelFrame("y ~ ...", y, model.X, model.fixef_names, model.reterms, "y")
    moved = ModelFrame("y ~ ...", y + shift, model.X, model.fixef_names, model.reterms, "y")
    assert np.array_equal(moved.y - shift, y)  # exact: the data are the same
    f0, f1 = PLSObjective(base, REML), PLSObjective(moved, REML)
    for theta in (np.array([0.3]), np.array([1.7]), np.array([0.0])):
        assert f1(theta) == pytest.approx(f0(theta), rel=1e-10)
        s0, s1 = f0.solve(theta), f1.solve(theta)
        assert s1.beta[0] - shift == pytest.approx(s0.beta[0], abs=4 * np.spacing(shift))
        np.testing.assert_allclose(s1.beta[1:], s0.beta[1:], rtol=1e-9)
        assert s1.sigma == pytest.approx(s0.sigma, rel=1e-10)


# -- the optimizer on a slope covariate far from 0 ----------------------------------------------


def test_centred_start_is_the_identity_of_the_centred_term() -> None:
    """For (1 + x | g) with mean(x) = m the centred identity is T0 = chol([[1 + m^2, -m],
    [-m, 1]]) = [[s, 0], [-m/s, 1/s]], s = sqrt(1 + m^2); None when |m| <= CENTRING_MIN."""
    from mixedref.fitting.optimize import centred_start

    model = _design("slopes", 3)
    t = model.reterms[0]
    for c, expect_none in ((0.0, True), (25.0, False)):
        X = t.X.copy()
        X[:, 1] = X[:, 1] - X[:, 1].mean() + c
        term = ReTerm(t.group, t.columns, X, t.codes, t.levels)
        mf = ModelFrame("y ~ ...", model.y, model.X, model.fixef_names, (term,), "y")
        start = centred_start(mf)
        if expect_none:
            assert start is None
        else:
            s = math.sqrt(1.0 + c * c)
            np.testing.assert_allclose(start, [s, -c / s, 1.0 / s], rtol=1e-12)


def test_translated_slope_reaches_lme4_under_rounding_noise() -> None:
    """tests/references/edge/shift_seed173.json, x + 25, REML: from lme4's identity start
    BOBYQA lands on a local minimum on the theta_11 = 0 boundary (112.288) or the optimum
    (92.852) depending on rounding: relative perturbations of 1e-13 of the criterion send
    ~30% of runs to the boundary, in mixedref and in lme4 1.1-31 alike (seen with the same
    perturbation of lme4's devfun). The optimizer must reach lme4's 92.852 in every run."""
    import json
    from pathlib import Path

    import pandas as pd

    from mixedref.frontend.design import build_model

    ref = json.loads((Path(__file__).parent / "references" / "edge" / "shift_seed173.json")
                     .read_text())
    fit = ref["fits"][6]
    assert fit["shift"] == 25 and fit["REML"]
    data = pd.DataFrame({"y": ref["data"]["y"], "xc": np.asarray(ref["data"]["x"]) + 25.0,
                         "g": pd.Categorical(ref["data"]["g"])})
    model = build_model("y ~ xc + (xc | g)", data)
    fn = PLSObjective(model, True)
    class Noisy:
        """The PLS objective with 1e-13 relative rounding noise
        (mixedref.engines.objective's protocol)."""

        REML, ntheta, has_gradient, lower, size = True, fn.ntheta, False, fn.lower, fn.size

        def __init__(self, k: int) -> None:
            self.k = k

        def __call__(self, x: np.ndarray) -> float:
            return fn(x) * (1.0 + 1e-13 * math.sin(1e4 * float(np.sum(x)) + self.k))

        def value_and_grad(self, x: np.ndarray) -> tuple[float, None]:
            return self(x), None

    for k in range(12):
        res = optimize_theta(Noisy(k), model)
        assert res.fval <= fit["objective"] * (1 + 1e-6), (k, res.fval, res.theta)


@pytest.mark.parametrize("REML", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("kind", ["scalar3", "nested", "intercept", "crossed", "slopes", "three"])
def test_schur_and_trace_operators_from_definitions(kind: str, REML: bool) -> None:
    """M maps W1 to the lower triangle of A21 W1 A21'; G maps dpotri's Fortran output (upper
    triangle valid, lower one not read) to a_l' P a_l per level, a_l = A21's column l in the
    rows the trace covers (all in REML, the random effects in ML)."""
    model = _scalar_design(2) if kind == "scalar3" else _design(kind, seed=KINDS.index(kind))
    obj = PLSObjective(model, REML=REML)
    A21, r, q1, m1 = obj.A21.toarray(), obj.r, obj.q[0], obj.nlev[0]
    rng = np.random.default_rng(5)
    W = rng.normal(size=(m1, q1, q1))
    W = W + np.swapaxes(W, 1, 2)
    got = (obj.M @ W.ravel()).reshape(r, r)
    want = A21 @ sla.block_diag(*W) @ A21.T
    np.testing.assert_allclose(np.tril(got), np.tril(want), rtol=1e-12, atol=1e-12)
    if obj._trace_operator() is None:  # the scalar gradient's operator only
        return
    m = r if REML else obj.re2
    P = rng.normal(size=(m, m))
    P = P + P.T
    Pinv = np.asfortranarray(np.triu(P) + np.tril(rng.normal(size=(m, m)) * 1e6, -1))
    got = obj._trace_operator() @ Pinv.reshape(-1, order="F")
    want = np.einsum("il,ij,jl->l", A21[:m], P, A21[:m])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", ["scalar3", "nested", "intercept", "crossed", "slopes", "three"])
def test_dense_products_are_the_sparse_products(kind: str, weighted: bool) -> None:
    """Small models build A22 = Z2'Z2 and A21 = Z2'Z1 by BLAS on dense arrays (no scipy sparse
    constructions): every entry equals scipy's sparse product to rounding (the bound of a sum
    of n products, n eps sum |a||b|: BLAS sums in its own order), and A21 keeps CSC form with
    sorted indices."""
    import scipy.sparse as sp

    from mixedref.engines import dense
    from mixedref.engines.base import prepare_response
    from mixedref.frontend.reterm import term_z

    model = _scalar_design(2) if kind == "scalar3" else _design(kind, seed=KINDS.index(kind))
    if weighted:
        w = np.random.default_rng(3).uniform(0.2, 3.0, size=model.n)
        model = ModelFrame(model.formula, model.y, model.X, model.fixef_names, model.reterms,
                           model.response, weights=w)
    prep = prepare_response(model, True)
    t1, rest = model.reterms[0], model.reterms[1:]
    X1 = prep.scale(np.asarray(t1.X, dtype=float))
    Zrest = [term_z(prep.scale(np.asarray(t.X, dtype=float)), t.codes, t.q, t.nlevels)
             for t in rest]
    Z2 = sp.hstack(Zrest + [sp.csc_matrix(np.column_stack([prep.Xw, prep.yw]))], format="csc")
    want22 = (Z2.T @ Z2).toarray()
    want21 = (Z2.T @ term_z(X1, t1.codes, t1.q, t1.nlevels)).tocsc()
    want21.sort_indices()
    B = np.column_stack([*(dense._dense_z(prep.scale(np.asarray(t.X, dtype=float)), t.codes,
                                           t.q, t.nlevels) for t in rest), prep.Xw, prep.yw])
    got = dense._dense_products(B, X1, t1.codes, t1.nlevels)
    assert got is not None
    got22, got21 = got
    Z1 = term_z(X1, t1.codes, t1.q, t1.nlevels)
    bound22 = model.n * np.finfo(float).eps * (abs(Z2).T @ abs(Z2)).toarray()
    bound21 = model.n * np.finfo(float).eps * (abs(Z2).T @ abs(Z1)).toarray()
    assert np.all(np.abs(got22 - want22) <= bound22)
    assert np.all(np.abs(got21.toarray() - want21.toarray()) <= bound21)
    assert got21.format == "csc" and got21.has_sorted_indices
    obj = PLSObjective(model, REML=True)  # the engine took the dense road
    assert np.array_equal(obj.A22, got22) and np.array_equal(obj.A21.toarray(),
                                                             got21.toarray())


def test_y_residualized_on_x_to_the_rounding_of_the_residual() -> None:
    """The engines remove the least-squares fit of y on X before the criterion (pwrss would
    cancel otherwise); for y = 1e9 + noise, the residual they keep equals the exact one
    (rational arithmetic: the least-squares fit of the floats as given) to the rounding of the
    residual itself, not of y (fails on 1bb74a7: gelsd's coefficients carried |y|'s rounding,
    residual errors of 1e-7 on residuals of size 1)."""
    from fractions import Fraction

    import pandas as pd

    from mixedref.frontend.design import build_model

    rng = np.random.default_rng(7)
    n = 60
    x = rng.normal(size=n)
    y = 1e9 + 3.0 * x + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "g": np.repeat([f"g{i}" for i in range(10)], 6)})
    model = build_model("y ~ x + (1 | g)", data)
    X = model.X
    # exact least squares of the floats: the normal equations in rationals
    Xf = [[Fraction(float(v)) for v in row] for row in X]
    yf = [Fraction(float(v)) for v in model.y]
    a = sum(r[0] * r[0] for r in Xf), sum(r[0] * r[1] for r in Xf), sum(r[1] * r[1] for r in Xf)
    pairs = list(zip(Xf, yf, strict=True))
    c = sum(r[0] * v for r, v in pairs), sum(r[1] * v for r, v in pairs)
    det = a[0] * a[2] - a[1] * a[1]
    b = ((a[2] * c[0] - a[1] * c[1]) / det, (a[0] * c[1] - a[1] * c[0]) / det)
    exact = np.array([float(v - r[0] * b[0] - r[1] * b[1]) for r, v in zip(Xf, yf, strict=True)])
    for REML in (True, False):
        yw = PLSObjective(model, REML).yw
        assert np.max(np.abs(yw - exact)) <= 1e-13 * np.max(np.abs(exact)), REML
