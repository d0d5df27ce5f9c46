"""The lean set-up paths of the model build and the dense engine (issue 23) give bit for bit
what the general code they replace gives: the residualization's column-by-column subtraction
and triangular solves, A21's CSC construction, an interaction factor's observed pairs, the
intercept terms' θ scales and the one-θ Newton pieces of the polish and lme4's checks."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mixedref.engines.base import _solve_r, _subtract
from mixedref.engines.dense import _csc_of_dense
from mixedref.frontend.design import _observed_pairs


def _subtract_loop(y: np.ndarray, X: np.ndarray, b: np.ndarray) -> np.ndarray:
    r = y.copy()
    for j in np.argsort(-np.abs(b) * np.abs(X).max(axis=0)):
        r -= X[:, j] * b[j]
    return r


def test_subtract_and_solve_are_the_loop_and_scipys_solve() -> None:
    """y - X b by one subtract-reduction equals the column loop bit for bit (responses near
    1e9, columns over 16 orders of magnitude: the order of the subtractions shows), and
    _solve_r equals scipy's solve_triangular bit for bit."""
    rng = np.random.default_rng(23)
    for _ in range(1500):
        n, p = int(rng.integers(1, 200)), int(rng.integers(1, 20))
        X = rng.normal(size=(n, p)) * 10.0 ** rng.integers(-8, 9, size=p)
        X[:, 0] = 1.0
        y = 1e9 * rng.random() + rng.normal(size=n) * 10.0 ** rng.integers(-5, 5)
        b = rng.normal(size=p) * 10.0 ** rng.integers(-9, 9, size=p)
        np.testing.assert_array_equal(_subtract(y, X, b), _subtract_loop(y, X, b))
        if n >= p:
            Q, R = np.linalg.qr(X)
            rhs = Q.T @ y
            np.testing.assert_array_equal(
                _solve_r(R, rhs), sla.solve_triangular(R, rhs, lower=False, check_finite=False))


def test_csc_of_dense_is_scipys() -> None:
    """A21's construction equals scipy's csc_matrix of the dense product with sorted indices:
    data, indices, indptr and their dtypes (exact zeros and -0.0 dropped)."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        D = rng.normal(size=(int(rng.integers(1, 30)), int(rng.integers(1, 30))))
        D[rng.random(D.shape) < 0.5] = 0.0
        D[rng.random(D.shape) < 0.1] = -0.0
        want = sp.csc_matrix(D)
        want.sort_indices()
        got = _csc_of_dense(D)
        assert type(got) is type(want) and got.shape == want.shape and got.has_sorted_indices
        for name in ("data", "indices", "indptr"):
            a, b = getattr(got, name), getattr(want, name)
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b)


def test_observed_pairs_are_numpys_unique() -> None:
    """The observed level pairs of two factors and each row's index among them equal
    np.unique's (return_inverse) of the combined codes, with missing codes, by the table and
    by the sort (many possible pairs)."""
    rng = np.random.default_rng(7)
    for i in range(2000):
        n1, n2, n = int(rng.integers(1, 40)), int(rng.integers(1, 40)), int(rng.integers(1, 300))
        if i % 5 == 0:
            n1, n2 = int(rng.integers(100, 3000)), int(rng.integers(100, 3000))
        c1 = rng.integers(-1 if i % 2 else 0, n1, n).astype(np.int16)
        c2 = rng.integers(-1 if i % 3 else 0, n2, n).astype(np.int16)
        combined = c1.astype(np.int64) * n2 + c2
        combined[(c1 < 0) | (c2 < 0)] = -1
        uniq, inv = np.unique(combined, return_inverse=True)
        ok = uniq >= 0
        pairs, codes = _observed_pairs(c1, c2, n1, n2)
        np.testing.assert_array_equal(pairs, uniq[ok])
        np.testing.assert_array_equal(codes, inv.reshape(-1) - (0 if ok.all() else 1))
        assert codes.dtype == inv.dtype


def test_schur_pairs_of_balanced_columns_as_gathered() -> None:
    """The Schur operator's pairs (schur._pair_arrays, with G's) where every column of A21 has
    the same number of entries (read as one array) equal the general path's gathers, dtypes
    included; random A21 with and without zeros, G over all rows and a prefix."""
    from mixedref.engines.schur import _pair_arrays

    rng = np.random.default_rng(11)
    for i in range(600):
        r, m1 = int(rng.integers(1, 25)), int(rng.integers(1, 40))
        D = rng.normal(size=(r, m1))
        if i % 2:
            D[rng.random(D.shape) < 0.4] = 0.0
        A = sp.csc_matrix(D)
        A.sort_indices()
        for m in (None, r, max(1, r - 3)):
            got, want = _pair_arrays(A, r, m), _pair_arrays(A, r, m, gather=True)
            for part_got, part_want in ((got[0], want[0]), (got[1], want[1])):
                if part_want is None:
                    assert part_got is None
                    continue
                for a, b in zip(part_got, part_want, strict=True):
                    assert a.dtype == b.dtype
                    np.testing.assert_array_equal(a, b)


def _theta_scales_general(model) -> np.ndarray:
    """strategies.theta_scales without its intercept-only shortcut: every term's columns."""
    parts = []
    for t in model.reterms:
        X = np.asarray(t.X, dtype=float)
        sd = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(t.q)
        rms = np.sqrt(np.mean(X * X, axis=0))
        s = np.where(sd > 0, sd, rms)
        s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
        parts.append(s[t.positions[0]])
    return np.concatenate(parts) if parts else np.zeros(0)


def test_theta_scales_of_intercept_terms_as_computed() -> None:
    """theta_scales reads an intercept-only term's scale as 1.0 without the reductions: the
    same array, bit for bit, as the general per-column code on the catalog's small LMMs."""
    import warnings

    from harness.core import runner
    from harness.core.catalog import load_catalog
    from mixedref.fitting.strategies import theta_scales
    from mixedref.frontend.design import build_model

    checked = 0
    for case in load_catalog():
        if case.is_glmm or {"large", "hard"} & set(case.tags):
            continue
        data = runner.case_data(case)
        if len(data) > 1000:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(case.formula, data)
        got, want = theta_scales(model), _theta_scales_general(model)
        assert got.dtype == want.dtype and got.flags.writeable, case.id
        np.testing.assert_array_equal(got, want, err_msg=case.id)
        checked += 1
    assert checked >= 30


def test_one_by_one_newton_pieces_are_numpys() -> None:
    """The 1 x 1 Cholesky factor, Newton step and lme4's scaled gradient and eigenvalue (the
    polish's and the checks' one-θ systems) are numpy's LAPACK results bit for bit, and a
    Hessian that is not positive definite (0, negative) is refused as numpy refuses it."""
    import pytest

    from mixedref.fitting.convergence import check, cholesky, cholesky_step

    rng = np.random.default_rng(11)
    for _ in range(3000):
        H = np.array([[rng.lognormal(0.0, 6.0)]])
        g = np.array([rng.normal() * 10.0 ** rng.uniform(-10, 4)])
        L = cholesky(H)
        np.testing.assert_array_equal(L, np.linalg.cholesky(H))
        np.testing.assert_array_equal(cholesky_step(L, g),
                                      np.linalg.solve(L.T, np.linalg.solve(L, g)))
        msgs, ev = check(g, H)
        scaled = np.linalg.solve(np.linalg.cholesky(H), g)
        assert ev == [float(v) for v in np.linalg.eigvalsh(H)]
        assert bool(msgs) == bool(np.max(np.minimum(np.abs(scaled), np.abs(g))) > 2e-3)
    for bad in (0.0, -0.0, -1.0, -np.inf):
        with pytest.raises(np.linalg.LinAlgError):
            np.linalg.cholesky(np.array([[bad]]))
        with pytest.raises(np.linalg.LinAlgError):
            cholesky(np.array([[bad]]))
    for odd in (np.nan, np.inf):  # numpy's factor, not an error
        np.testing.assert_array_equal(cholesky(np.array([[odd]])),
                                      np.linalg.cholesky(np.array([[odd]])))
    assert check(np.array([0.1]), np.array([[-1.0]]))[0] == [
        "unable to evaluate scaled gradient",
        "Model failed to converge: degenerate  Hessian with 1 negative eigenvalues"]
