"""The objective protocol: what the optimizer (mixedref.fitting.optimize) needs of a criterion over
θ,
implemented by the PLS engines (mixedref.engines.factory.PLSObjective, which chooses between the
blocked dense engine and CHOLMOD's sparse one, mixedref.engines.dense and .sparse) and the oracle
(mixedref.literal.LiteralObjective), so the optimizer reaches into none of them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Objective(Protocol):
    """A profiled criterion (deviance or REML criterion, as lme4's devfun) over θ."""

    REML: bool
    ntheta: int
    #: True when :meth:`value_and_grad` gives the exact gradient (else it is never called)
    has_gradient: bool

    @property
    def lower(self) -> np.ndarray:
        """lme4's lower bounds of θ (0 for template diagonals, -inf elsewhere)."""
        ...

    @property
    def size(self) -> int:
        """The order of the system factored per evaluation (the dense block, or the sparse
        engine's random effects): the cost of one call."""
        ...

    def __call__(self, theta: np.ndarray) -> float:
        """The criterion at θ; +inf where the system cannot be factored."""
        ...

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """The criterion and its exact gradient (None where the gradient does not apply)."""
        ...
