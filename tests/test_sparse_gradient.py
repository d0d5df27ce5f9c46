"""The sparse engine's exact gradient (mixedref.engines.sparse.value_and_grad) and the selected
inverse it reads (mixedref.engines.supernodal).

References: the dense inverse of Lam'Z'Z Lam + I formed with numpy (the selected inverse);
Richardson-extrapolated central differences of the sparse criterion itself and the dense
engine's exact gradient, a separate derivation on the blocked system (the gradient). θ is drawn
inside the bounds on the design's own scales, as tests/test_gradient.py does, and on a
boundary (a template diagonal at 0), where the formulas need no Lam^-1.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import interior_theta, richardson

from harness.core.catalog import load_catalog, load_data
from mixedref.engines import PLSObjective
from mixedref.frontend.design import build_model

try:
    _SPARSE_EXTRA = importlib.util.find_spec("sksparse") is not None
except (ImportError, ValueError):
    _SPARSE_EXTRA = False
if not _SPARSE_EXTRA and not os.environ.get("MIXEDREF_REQUIRE_SPARSE"):
    pytest.skip("the optional extra mixedref[sparse] is not installed (no scikit-sparse)",
                allow_module_level=True)

from mixedref.engines.sparse import _libcholmod, ut_pattern  # noqa: E402
from mixedref.engines.supernodal import SupernodalFactor  # noqa: E402

MAX_ROWS = 5000
CASES = [c for c in load_catalog() if not c.is_glmm and "large" not in c.tags]


def _model(case):
    data = load_data(case)
    if len(data) > MAX_ROWS:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(case.formula, data, weights=case.prior_weights(data))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_sparse_gradient_matches_differences_and_the_dense_gradient(case) -> None:
    model = _model(case)
    if model is None:
        pytest.skip("more than MAX_ROWS rows")
    obj = PLSObjective(model, REML=bool(case.REML), engine="sparse")
    assert obj.has_gradient
    try:
        dense = PLSObjective(model, REML=bool(case.REML), engine="dense")
    except Exception:  # noqa: BLE001 - a design the dense engine refuses
        dense = None
    rng = np.random.default_rng(20261207)
    for _ in range(2):
        theta = interior_theta(model, rng)
        value, grad = obj.value_and_grad(theta)
        assert value == pytest.approx(obj(theta), rel=1e-12)
        fd = richardson(obj, theta)
        scale = np.maximum(np.abs(fd), 1.0)
        np.testing.assert_array_less(np.abs(grad - fd) / scale, 1e-6)
        if dense is not None and dense.has_gradient:
            g2 = dense.value_and_grad(theta)[1]
            if g2 is not None:
                np.testing.assert_allclose(grad, g2, rtol=1e-7, atol=1e-7 * np.max(np.abs(g2)))


@pytest.mark.parametrize("REML", [True, False], ids=["REML", "ML"])
def test_sparse_gradient_on_a_boundary(REML: bool) -> None:
    """A template diagonal at its bound 0 (a singular fit's θ), where Lam is not invertible:
    the gradient matches central differences (the criterion is defined, and smooth, on both
    sides of the bound) and the dense engine's gradient."""
    from harness.core.datasets import load_dataset

    model = build_model("Reaction ~ Days + (Days | Subject) + (1 | g)",
                        load_dataset("sleepstudy").assign(g=lambda d: d.index % 7))
    obj = PLSObjective(model, REML=REML, engine="sparse")
    theta = np.array([0.9, -0.1, 0.0, 0.4])  # Subject's slope diagonal at 0
    value, grad = obj.value_and_grad(theta)
    h = 1e-6
    for i in range(theta.size):
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] -= h
        assert grad[i] == pytest.approx((obj(up) - obj(dn)) / (2 * h), rel=1e-6, abs=1e-5)
    dense = PLSObjective(model, REML=REML, engine="dense")
    np.testing.assert_allclose(grad, dense.value_and_grad(theta)[1], rtol=1e-8, atol=1e-8)


def test_selected_inverse_is_the_inverse_on_the_pattern() -> None:
    """Takahashi's recurrence over CHOLMOD's supernodes against numpy's dense inverse, on a
    crossed design (supernodes of one and of many columns), before and after a refactor."""
    rng = np.random.default_rng(0)
    n, m1, m2 = 3000, 400, 300
    a, b = rng.integers(0, m1, n), rng.integers(0, m2, n)
    indices = np.column_stack([a, m1 + b]).astype(np.int32).ravel()
    indptr = (np.arange(n + 1) * 2).astype(np.int32)
    Ut = sp.csc_matrix((rng.uniform(0.5, 1.5, indices.size), indices, indptr),
                       shape=(m1 + m2, n))
    f = SupernodalFactor(_libcholmod(), Ut.indptr, Ut.indices, Ut.data, m1 + m2)
    assert np.any(f.nsc == 1) and np.any(f.nsc > 1)
    for _ in range(2):
        Ut.data[:] = rng.uniform(0.1, 2.0, indices.size)
        assert f.factorize()
        A = (Ut @ Ut.T).toarray() + np.eye(m1 + m2)
        r, c = np.nonzero(A)
        Z = f.selected_inverse()
        np.testing.assert_allclose(Z[f.pair_positions(r, c)], np.linalg.inv(A)[r, c],
                                   rtol=1e-10, atol=1e-13)
        assert f.logdet() == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12)
        B = rng.normal(size=(m1 + m2, 2))
        np.testing.assert_allclose(f.solve_A(B), np.linalg.solve(A, B), rtol=1e-9, atol=1e-12)


def test_pair_outside_the_pattern_is_refused() -> None:
    from harness.core.datasets import load_dataset
    from mixedref.errors import MixedrefError

    model = build_model("strength ~ 1 + (1 | batch/cask)", load_dataset("Pastes"))
    pat = ut_pattern(model)
    Ut = pat.matrix(np.ones(pat.indices.size))
    f = SupernodalFactor(_libcholmod(), Ut.indptr, Ut.indices, Ut.data, pat.nre)
    A = (Ut @ Ut.T).toarray()
    i, j = np.argwhere(A == 0)[0]
    with pytest.raises(MixedrefError, match="outside the factor's pattern"):
        f.pair_positions(np.array([i]), np.array([j]))


def test_the_optimizer_takes_the_gradient_where_it_pays() -> None:
    """BOBYQA for 2 θ at a gradient of ~3 evaluations, L-BFGS-B for 6 θ; the sparse fit by
    L-BFGS-B reaches the dense engine's optimum (its criterion or lower, to 1e-6)."""
    from harness.core.datasets import load_dataset
    from mixedref.fitting.control import Control
    from mixedref.fitting.optimize import _choose_method, optimize_theta, sparse_gradient_wins

    assert not sparse_gradient_wins(2, 3.0) and sparse_gradient_wins(6, 3.0)
    pen = build_model("diameter ~ 1 + (1 | plate) + (1 | sample)", load_dataset("Penicillin"))
    assert _choose_method(PLSObjective(pen, True, engine="sparse"), Control()) == "bobyqa"
    data = load_dataset("sleepstudy").assign(g=lambda d: (d.index % 6).astype(str))
    model = build_model("Reaction ~ Days + (Days | Subject) + (Days | g)", data)
    obj = PLSObjective(model, False, engine="sparse")
    res = optimize_theta(obj, model)
    assert res.method.startswith("lbfgsb")
    ref = optimize_theta(PLSObjective(model, False, engine="dense"), model)
    assert res.fval <= ref.fval + 1e-6
