"""Kenward–Roger's building blocks in the random effects' space (Woodbury), so that no n x n
matrix is ever formed: the method then scales with the number of random effects q, not with
the number of observations n.

The marginal covariance is Σ = σ²(I + ZΛΛ'Z') = Σ_r γ_r G_r, with G_r = Z E_r Z' for a term's
variance or covariance parameter (E_r the q x q indicator of that parameter's positions, one
per level) and G = I for σ². With S = Z'Z, M = Λ'SΛ + I (the PLS system's random-effects block,
Cholesky-factored dense here) and B = ΛM⁻¹Λ':

    Σ⁻¹ = (I - Z B Z') / σ²                       (applied to n x p blocks only)
    W = Z'Σ⁻¹Z = (S - U S) / σ²,  U = S B        (q x q)
    Z'Σ⁻²Z = (I - U) W / σ²,  tr Σ⁻² = (n - 2 tr U + tr U²) / σ⁴

so pbkrtest's K_rs = tr(Σ⁻¹G_rΣ⁻¹G_s) = tr(E_r W E_s W) (or tr(E_r Z'Σ⁻²Z), tr Σ⁻² with σ²), and
P_r = -X'Σ⁻¹G_rΣ⁻¹X and Q_rs = X'Σ⁻¹G_rΣ⁻¹G_sΣ⁻¹X come from n x p products. The traces need
W's term blocks entry by entry, so W is held dense: q x q, refused beyond
:data:`MAX_KR_EFFECTS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from mixedref.errors import MixedrefError
from mixedref.frontend.reterm import ReTerm, split_theta

__all__ = ["MAX_KR_EFFECTS", "KRPieces", "kr_pieces_woodbury", "kr_memory_bytes"]

#: Largest number of random effects q for Kenward–Roger: its traces hold about four dense
#: q x q matrices (W, U, B and the factor of M), 2 GB at q = 8000.
MAX_KR_EFFECTS = 8000


@dataclass(frozen=True)
class KRPieces:
    """pbkrtest's per-parameter matrices, in its order (each term's covariance parameters,
    then σ²): P_r (p x p), Q_rs (p x p) and K_rs = tr(Σ⁻¹G_rΣ⁻¹G_s)."""

    P: tuple[np.ndarray, ...]
    Q: tuple[tuple[np.ndarray, ...], ...]
    K: np.ndarray


def kr_memory_bytes(q: int) -> int:
    """The dense q x q matrices the Woodbury path holds at its peak (four of them)."""
    return 4 * 8 * q * q


def _indicators(terms: Sequence[ReTerm]) -> tuple[list[sp.csr_matrix], list[slice]]:
    """E_r (q x q, ones at each level's (i, j) and (j, i)) per term parameter in pbkrtest's
    order, and the slice of the term's effects each belongs to."""
    q_all = sum(t.q * t.nlevels for t in terms)
    E, blocks, off = [], [], 0
    for t in terms:
        base = off + np.arange(t.nlevels) * t.q
        for i, j in t.theta_index():
            rows, cols = base + i, base + j
            if i != j:
                rows, cols = np.r_[rows, cols], np.r_[cols, rows]
            E.append(sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(q_all, q_all)))
            blocks.append(slice(off, off + t.q * t.nlevels))
        off += t.q * t.nlevels
    return E, blocks


def _lambda(terms: Sequence[ReTerm], theta: np.ndarray) -> sp.csc_matrix:
    """Λ: block diagonal, one copy of each term's template per level (level-major, as Z)."""
    blocks = [sp.kron(sp.identity(t.nlevels), t.template(th))
              for t, th in zip(terms, split_theta(theta, terms), strict=True)]
    return sp.block_diag(blocks, format="csc")


def kr_pieces_woodbury(terms: Sequence[ReTerm], theta: np.ndarray, sigma: float,
                       X: np.ndarray) -> KRPieces:
    """P, Q and K of Kenward–Roger (pbkrtest's vcovAdj) at (θ, σ) for the model with random
    terms ``terms`` and fixed-effects matrix ``X``, by the identities in the module docstring."""
    Z = sp.hstack([t.Z for t in terms], format="csc")
    n, q = Z.shape
    if q > MAX_KR_EFFECTS:
        raise MixedrefError(
            f"Kenward-Roger's traces hold dense q x q matrices of the random effects and this "
            f"model has q = {q} (> MAX_KR_EFFECTS = {MAX_KR_EFFECTS}; about "
            f"{kr_memory_bytes(q) / 1e9:.1f} GB); use ddf='Satterthwaite'")
    s2 = sigma**2
    X = np.asarray(X, dtype=float)
    Lam = _lambda(terms, theta)
    S = (Z.T @ Z).tocsc()
    M = (Lam.T @ S @ Lam).toarray()
    M[np.diag_indices_from(M)] += 1.0
    chol = la.cho_factor(M, lower=True, overwrite_a=True)

    def sinv(R: np.ndarray) -> np.ndarray:
        """Σ⁻¹ R for an n x k block R."""
        inner = la.cho_solve(chol, Lam.T @ (Z.T @ R))
        return (R - Z @ (Lam @ inner)) / s2

    F = la.solve_triangular(chol[0], Lam.T.toarray(), lower=True)  # L⁻¹Λ', B = F'F
    B = F.T @ F
    del F
    U = np.asarray(S @ B)  # S B
    del B
    W = (S.toarray() - np.asarray(S @ U.T).T) / s2  # (S - S B S) / σ²
    W = (W + W.T) / 2
    E, blocks = _indicators(terms)
    m = len(E) + 1
    K = np.empty((m, m))
    EW = [Er[blk] @ W for Er, blk in zip(E, blocks, strict=True)]  # E_r W, the term's rows
    for r in range(m - 1):
        for s in range(r, m - 1):
            K[r, s] = K[s, r] = np.sum(EW[r][:, blocks[s]] * EW[s][:, blocks[r]].T)
        Er = E[r].tocoo()  # tr(E_r Z'Σ⁻²Z), entry (b, a) of (I - U) W / σ² per E_r's (a, b)
        y = W[Er.col, Er.row] - np.einsum("ij,ji->i", U[Er.col], W[:, Er.row])
        K[r, m - 1] = K[m - 1, r] = float(Er.data @ y) / s2
    K[m - 1, m - 1] = (n - 2 * np.trace(U) + np.sum(U * U.T)) / s2**2
    del EW, U, W

    TT = sinv(X)
    ZtTT = Z.T @ TT
    OO = [Z @ (Er @ ZtTT) for Er in E] + [TT]  # G_r Σ⁻¹ X
    P = tuple(-(Or.T @ TT + TT.T @ Or) / 2 for Or in OO)
    SO = [sinv(Or) for Or in OO]
    Q = tuple(tuple(OO[r].T @ SO[s] for s in range(m)) for r in range(m))
    return KRPieces(P, Q, K)
