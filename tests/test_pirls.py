"""The PLS engines' weighted systems, which PIRLS drives (mixedref.engines.base.WeightedSystem).

Each check compares an engine's ``reweight`` / ``solve_u`` / ``solve_joint`` / ``unscaled_vcov``
with the same quantity formed directly from its definition: the dense matrices Z Lambda and
A = (Z Lambda)' W (Z Lambda) + I, numpy's determinant and solves. Models cover every path of
the blocked dense system (one scalar term: diagonal; a scalar first term with A21 by pairs and
densely; a vector first term; a vector later term) and both sparse back ends.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mixedref.engines.pirls as pirls
from mixedref.engines import sparse as sparse_engine
from mixedref.engines.dense_weighted import DenseWeightedSystem
from mixedref.engines.sparse import SparseWeightedSystem
from mixedref.frontend.design import build_model
from mixedref.frontend.reterm import split_theta

FORMULAS = {
    "one scalar term": ("y ~ x + (1 | g1)", [0.8]),
    "two scalar terms": ("y ~ x + (1 | g1) + (1 | g2)", [0.8, 1.3]),
    "vector first term": ("y ~ x + (x | g1) + (1 | g2)", [0.9, -0.4, 0.6, 1.1]),
    "vector later term": ("y ~ x + (1 | g1) + (x | g2)", [0.7, 1.2, 0.3, 0.5]),
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(25)
    n = 300
    return pd.DataFrame({"y": rng.poisson(3.0, n).astype(float), "x": rng.normal(size=n),
                         "g1": rng.integers(0, 40, n).astype(str),
                         "g2": rng.integers(0, 7, n).astype(str)})


def _direct(model, theta, w):
    """Z Lambda (dense) and A = (Z Lambda)' W (Z Lambda) + I from their definitions."""
    terms = model.reterms
    Z = sp.hstack([t.Z for t in terms]).toarray()
    Lam = sp.block_diag([sp.kron(sp.identity(t.nlevels), t.template(th))
                         for t, th in zip(terms, split_theta(np.asarray(theta), terms),
                                          strict=True)]).toarray()
    ZL = Z @ Lam
    return ZL, ZL.T @ (w[:, None] * ZL) + np.eye(ZL.shape[1])


def _values(system, model, theta):
    """Z Lambda's non-zeros in the system's layout (as GlmmObjective.zlambda)."""
    return np.hstack([np.asarray(t.X, dtype=float) @ t.template(th)
                      for t, th in zip(model.reterms, split_theta(np.asarray(theta), model.reterms),
                                       strict=True)])


def _systems(model):
    X = np.asarray(model.X, dtype=float)
    out = {"dense": DenseWeightedSystem(model.reterms, X)}
    if out["dense"].q1 == 1 and out["dense"].r2 > 0:  # A21 by pairs and densely, both
        dense_a21 = DenseWeightedSystem(model.reterms, X)
        dense_a21._w_pairs = not out["dense"]._w_pairs
        out["dense, other A21 path"] = dense_a21
    out["superlu"] = SparseWeightedSystem(model.reterms, X, use_cholmod=False)
    if sparse_engine.available():
        out["cholmod"] = SparseWeightedSystem(model.reterms, X, use_cholmod=True)
    return out


@pytest.mark.parametrize("name", list(FORMULAS))
def test_weighted_systems_match_their_definition(data: pd.DataFrame, name: str) -> None:
    """reweight's log det, the u-only solve, the joint solve and (R_X'R_X)^-1 equal the
    quantities formed densely from Z Lambda and the weights, on every engine."""
    formula, theta = FORMULAS[name]
    model = build_model(formula, data)
    rng = np.random.default_rng(1)
    w = rng.uniform(0.2, 3.0, model.n)
    z = rng.normal(size=model.n)
    X = np.asarray(model.X, dtype=float)
    ZL, A = _direct(model, theta, w)
    logdet = np.linalg.slogdet(A)[1]
    u_only = np.linalg.solve(A, ZL.T @ (w * z))
    # the joint normal equations [[A, ZL'WX], [X'WZL, X'WX]] (u, beta) = (ZL'Wz, X'Wz)
    C = ZL.T @ (w[:, None] * X)
    big = np.block([[A, C], [C.T, X.T @ (w[:, None] * X)]])
    joint = np.linalg.solve(big, np.concatenate([ZL.T @ (w * z), X.T @ (w * z)]))
    vcov = np.linalg.inv(X.T @ (w[:, None] * X) - C.T @ np.linalg.solve(A, C))
    for engine, system in _systems(model).items():
        V = _values(system, model, theta)
        fac = system.reweight(V, w)
        assert fac.logdet == pytest.approx(logdet, rel=1e-12), engine
        np.testing.assert_allclose(system.zlu(V, u_only), ZL @ u_only, rtol=1e-12)
        np.testing.assert_allclose(system.solve_u(fac, V, w * z), u_only, rtol=1e-10,
                                   atol=1e-12, err_msg=engine)
        u, beta = system.solve_joint(fac, V, w, w * z, z)
        np.testing.assert_allclose(np.concatenate([u, beta]), joint, rtol=1e-10, atol=1e-12,
                                   err_msg=engine)
        np.testing.assert_allclose(system.unscaled_vcov(fac, V, w), vcov, rtol=1e-10,
                                   err_msg=engine)
        np.testing.assert_allclose(fac.inverse_diagonal(), np.diag(np.linalg.inv(A)),
                                   rtol=1e-10, err_msg=engine)
        if name == "one scalar term" and engine == "dense":
            np.testing.assert_allclose(fac.diag2, np.diag(A), rtol=1e-13)


def test_reweight_follows_new_weights(data: pd.DataFrame) -> None:
    """One system serves every PIRLS iteration: reweighting it again gives the new weights'
    factor, not the first one's (nothing weight-dependent is kept from construction)."""
    formula, theta = FORMULAS["vector first term"]
    model = build_model(formula, data)
    rng = np.random.default_rng(2)
    for engine, system in _systems(model).items():
        V = _values(system, model, theta)
        for _ in range(3):
            w = rng.uniform(0.1, 5.0, model.n)
            _, A = _direct(model, theta, w)
            assert system.reweight(V, w).logdet == pytest.approx(np.linalg.slogdet(A)[1],
                                                                 rel=1e-12), engine


def test_pirls_drives_the_sparse_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIRLS through the sparse engine's system (forced, CHOLMOD and SuperLU) gives the blocked
    dense system's criterion at both stages' parameters and the same beta inside PIRLS."""
    from harness.core.datasets import load_dataset
    from mixedref.models.glmer import glmer_devfun

    d = load_dataset("grouseticks")
    f = "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
    ctrl = {"nAGQ0initStep": False}
    blocked = glmer_devfun(f, d, "poisson", control=ctrl)
    assert isinstance(blocked.objective.system, DenseWeightedSystem)
    monkeypatch.setattr(pirls, "DENSE_MAX", 10)
    backends = [False] + ([True] if sparse_engine.available() else [])
    theta = np.array([0.5, 0.7, 0.5])
    st_b = blocked.objective.state(theta, None)
    for use_cholmod in backends:
        monkeypatch.setattr(sparse_engine, "available", lambda c=use_cholmod: c)
        sparse = glmer_devfun(f, d, "poisson", control=ctrl)
        assert isinstance(sparse.objective.system, SparseWeightedSystem)
        assert sparse.objective.system.cholmod is use_cholmod
        pars = np.concatenate([theta, st_b.beta])
        assert sparse(pars) == pytest.approx(blocked(pars), rel=1e-10)
        st_s = sparse.objective.state(theta, None)
        assert st_s.laplace == pytest.approx(st_b.laplace, rel=1e-10)
        np.testing.assert_allclose(st_s.beta, st_b.beta, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("case", ["cbpp", "grouseticks"])
def test_pirls_through_the_engine_reaches_the_mode(case: str) -> None:
    """The state PIRLS returns through ``solve_u`` (beta fixed) and ``solve_joint`` (beta with u)
    is the mode it defines: the penalized deviance's gradient in u, (Z Lambda)' s - u with s the
    score wt (y - mu) mu_eta / V(mu), vanishes, and for the joint solve so does X' s (at lme4's
    tolPwrss of 1e-7 on the deviance the measured gradients are below 1e-7)."""
    from harness.core.datasets import load_dataset
    from mixedref.models.glmer import glmer_devfun

    formula, family = {
        "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
        "grouseticks": ("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                        "poisson"),
    }[case]
    obj = glmer_devfun(formula, load_dataset(case), family).objective
    theta = 0.8 * np.asarray(obj.model.theta_start, dtype=float)
    joint = obj.state(theta, None)
    u_only = obj.state(theta, joint.beta + 0.05)
    V = obj.zlambda(theta)
    for st, beta_free in ((joint, True), (u_only, False)):
        score = obj.wt * (obj.y - st.mu) * obj.family.mu_eta(st.eta) / obj.family.variance(st.mu)
        assert np.abs(obj.system.ztw(V, score) - st.u).max() < 1e-6
        if beta_free:
            assert np.abs(obj.X.T @ score).max() < 1e-5
    assert u_only.pdev > joint.pdev  # the joint mode minimizes pdev over beta too
