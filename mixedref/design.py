"""The model's matrices, as lme4's ``lFormula`` builds them: fixed-effects X with R's column
names, the response, and one :class:`ReTerm` per random-effects term in lme4's order.

The builder :func:`build_model` turns a formula and a DataFrame into a :class:`ModelFrame`;
every later stage (objective, optimizer, fit) reads only the ModelFrame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp


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
        rows, cols = np.tril_indices(self.q)
        order = np.lexsort((rows, cols))  # column-major
        return np.where(rows[order] == cols[order], 0.0, -np.inf)

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


@dataclass(frozen=True, eq=False)
class ModelFrame:
    """Everything the objective needs, and what the fit reports about the data."""

    formula: str
    y: np.ndarray  # response, n
    X: np.ndarray  # n x p fixed-effects matrix, aliased columns already dropped
    fixef_names: tuple[str, ...]  # R's model.matrix names of X's columns
    reterms: tuple[ReTerm, ...]  # lme4's order: by decreasing number of levels
    response: str  # response's name as written in the formula
    weights: np.ndarray | None = None  # prior weights, n, or None
    offset: np.ndarray | None = None  # offset, n, or None
    dropped_fixef: tuple[str, ...] = ()  # aliased columns removed (rank deficiency)
    n_dropped_na: int = 0  # rows removed as R's na.omit does
    row_index: pd.Index | None = None  # the data's index of the rows used
    messages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def ntheta(self) -> int:
        return sum(t.ntheta for t in self.reterms)

    @property
    def theta_lower(self) -> np.ndarray:
        return np.concatenate([t.theta_lower for t in self.reterms])

    @property
    def theta_start(self) -> np.ndarray:
        return np.concatenate([t.theta_start for t in self.reterms])

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels per grouping factor, keyed by the factor's name (as lme4's ngrps)."""
        out: dict[str, int] = {}
        for t in self.reterms:
            out.setdefault(t.group, t.nlevels)
        return out
