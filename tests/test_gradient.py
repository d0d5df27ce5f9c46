"""The dense engine's exact gradient of the profiled criterion, vector-valued terms included
(mixedref.engines.dense: _value_and_grad for scalar terms, _general_value_and_grad else).

References: Richardson-extrapolated central differences of the criterion itself, and, on the
small designs, the same derivative formula evaluated literally on the full dense system
(tr(K_S^-1 dK) + c pwrss w'dK w, with every matrix formed): neither shares code with the
engine's blocked partitioned inverse. θ is drawn inside the bounds on the design's own scales
(θ times a column's scale is what the criterion sees), where the criterion is smooth to many
digits; at θ far off those scales (sim_badscale3 at θ ~ 1) the criterion itself is too
ill-conditioned for any finite difference to check it.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import dense_objective, interior_theta, richardson

from harness.core.catalog import load_catalog
from mixedref.engines.dense import DensePLSObjective
from mixedref.frontend.reterm import term_z

#: designs up to this many rows (the catalog's large cases go to the sparse engine or take long)
MAX_ROWS = 5000
#: the full-matrix reference is formed for systems up to this order
MAX_FULL = 400

CASES = [c for c in load_catalog() if not c.is_glmm and "large" not in c.tags]


def _objective(case) -> DensePLSObjective | None:
    return dense_objective(case, MAX_ROWS)


def _full_matrix_gradient(obj: DensePLSObjective, theta: np.ndarray) -> np.ndarray:
    """tr(P dK) + c pwrss w'dK w on the full augmented system K = Λ̃'AΛ̃ + diag(I_q, 0), every
    matrix dense: P = K_S^-1 zero-padded (S the random effects in ML, all of K in REML with
    c = n - p - 1), w = K^-1 e_y, dK = dΛ̃'AΛ̃ + Λ̃'A dΛ̃."""
    sw = None if obj.model.weights is None else np.sqrt(np.asarray(obj.model.weights, float))
    Zs = []
    for t in obj.terms:
        Xt = np.asarray(t.X, dtype=float)
        Zs.append(term_z(Xt if sw is None else Xt * sw[:, None], t.codes, t.q,
                         t.nlevels).toarray())
    Z = np.hstack(Zs)
    q = Z.shape[1]
    Zt = np.hstack([Z, obj.Xw, obj.yw[:, None]])
    A = Zt.T @ Zt
    N = A.shape[0]
    Lam = np.eye(N)
    derivs = []
    off = 0
    for t, T in zip(obj.terms, obj.templates(theta), strict=True):
        for level in range(t.nlevels):
            s = slice(off + level * t.q, off + (level + 1) * t.q)
            Lam[s, s] = T
        for a, b in zip(*t.positions, strict=True):
            D = np.zeros((N, N))
            idx = off + np.arange(t.nlevels) * t.q
            D[idx + a, idx + b] = 1.0
            derivs.append(D)
        off += t.q * t.nlevels
    K = Lam.T @ A @ Lam + np.diag(np.r_[np.ones(q), np.zeros(N - q)])
    Kinv = np.linalg.inv(K)
    m, c = (N, obj.n - obj.p - 1.0) if obj.REML else (q, float(obj.n))
    P = np.zeros((N, N))
    P[:m, :m] = np.linalg.inv(K[:m, :m])
    pwrss, w = 1.0 / Kinv[-1, -1], Kinv[:, -1]
    out = []
    for D in derivs:
        dK = D.T @ A @ Lam + Lam.T @ A @ D
        out.append(np.sum(P * dK) + c * pwrss * (w @ dK @ w))
    return np.array(out)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_exact_gradient_matches_differences_at_interior_theta(case) -> None:
    obj = _objective(case)
    if obj is None:
        pytest.skip("not a dense-engine design of at most MAX_ROWS rows")
    assert obj.has_gradient, "every catalog design the dense engine fits offers the gradient"
    rng = np.random.default_rng(20261207)
    for _ in range(2):
        theta = interior_theta(obj.model, rng)
        value, grad = obj.value_and_grad(theta)
        assert grad is not None
        assert value == pytest.approx(obj(theta), rel=1e-10)
        fd = richardson(obj, theta)
        scale = np.maximum(np.abs(fd), 1.0)
        np.testing.assert_array_less(np.abs(grad - fd) / scale, 1e-6)
        if obj.r + sum(obj.q[0] * m for m in obj.nlev[:1]) <= MAX_FULL:
            full = _full_matrix_gradient(obj, theta)
            np.testing.assert_allclose(grad, full, rtol=1e-7, atol=1e-7)


def test_gradient_of_vector_terms_at_boundary_rows_is_finite_and_matches() -> None:
    """A correlation at ±1 (a zero diagonal with its row's off-diagonal non-zero) is on the
    boundary but the criterion is smooth there: the gradient still agrees."""
    case = next(c for c in CASES if c.id == "sleepstudy-slopes-REML")
    obj = _objective(case)
    theta = np.array([0.9, 0.02, 0.0])
    _, grad = obj.value_and_grad(theta)
    fd = richardson(obj, theta + np.array([0, 0, 1e-12]))
    np.testing.assert_allclose(grad[:2], fd[:2], rtol=1e-6, atol=1e-6)
