"""One random-effects term, as MixedModels.jl's ReMat: its model matrix, grouping levels and
the relative covariance factor's template, with everything that maps θ to Λ and back (positions,
lower bounds, start, template, θ from a covariance), so no other module re-derives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp


def theta_positions(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a term's theta elements in its q x q lower-triangular template: the
    lower triangle in column-major order, as lme4 orders theta."""
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


@dataclass(frozen=True, eq=False)
class ReTerm:
    """One random-effects term ``(expr | group)`` after expansion (``||`` and ``/`` split).

    ``X`` is the term's own model matrix (n x q, columns named as R names them), ``codes`` the
    level index of each row in ``levels``. The term's random effects are ordered level-major
    (all q effects of level 1, then level 2, ...), as lme4's Zt rows, so that Lambda is
    block diagonal with one q x q lower-triangular template per level.
    """

    group: str  # grouping factor's name as lme4 prints it: "Subject", "cask:batch"
    columns: tuple[str, ...]  # "(Intercept)", "Days", "fA", ...
    X: np.ndarray  # n x q float64
    codes: np.ndarray  # n int64, in [0, nlevels)
    levels: tuple[str, ...]

    @property
    def q(self) -> int:
        return len(self.columns)

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ntheta(self) -> int:
        return self.q * (self.q + 1) // 2

    @property
    def theta_lower(self) -> np.ndarray:
        """lme4's bounds: 0 for diagonal elements of the Cholesky template, -inf elsewhere,
        in the template's column-major lower-triangle order."""
        rows, cols = theta_positions(self.q)
        return np.where(rows == cols, 0.0, -np.inf)

    @property
    def theta_start(self) -> np.ndarray:
        """lme4's starting value: the identity template."""
        return np.where(np.isfinite(self.theta_lower), 1.0, 0.0)

    @cached_property
    def Z(self) -> sp.csc_matrix:
        """n x (nlevels*q) sparse design, level-major columns."""
        n = self.X.shape[0]
        rows = np.repeat(np.arange(n), self.q)
        cols = (self.codes[:, None] * self.q + np.arange(self.q)[None, :]).ravel()
        return sp.csc_matrix(
            (self.X.ravel(), (rows, cols)), shape=(n, self.nlevels * self.q)
        )
