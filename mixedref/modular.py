"""``lmer``: formula + data -> LmerFit, as lme4's lmer, composed of stages callable alone.

The stages mirror lme4's modular interface: :func:`mixedref.design.build_model` (lFormula),
:func:`devfun` (mkLmerDevfun: the objective over theta, for cross-evaluation),
:func:`mixedref.optimize.optimize_theta` (optimizeLmer) and :class:`LmerFit` (mkMerMod).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mixedref.design import ModelFrame, build_model
from mixedref.fit import LmerFit
from mixedref.optimize import Control, optimize_theta
from mixedref.pls import PLSObjective

__all__ = ["Control", "LmerFit", "devfun", "fit_model", "lmer"]

VectorArg = str | np.ndarray | Sequence[float] | None


def devfun(formula: str, data: pd.DataFrame, REML: bool = True, *,
           weights: VectorArg = None, offset: VectorArg = None) -> PLSObjective:
    """The objective over theta (deviance or REML criterion) without optimizing: call it on a
    theta in lme4's order to evaluate any implementation's estimate under lme4's criterion."""
    return PLSObjective(build_model(formula, data, weights=weights, offset=offset), REML)


def fit_model(model: ModelFrame, REML: bool = True,
              control: Control | Mapping[str, Any] | None = None) -> LmerFit:
    """Fit a ModelFrame that is already built (the optimizer and result stages of lmer)."""
    t0 = time.perf_counter()
    objective = PLSObjective(model, REML)
    opt = optimize_theta(objective, model, control)
    return LmerFit(model, objective, opt, seconds=time.perf_counter() - t0)


def lmer(formula: str, data: pd.DataFrame, REML: bool = True, *, weights: VectorArg = None,
         offset: VectorArg = None, control: Control | Mapping[str, Any] | None = None
         ) -> LmerFit:
    """Fit a linear mixed model by REML (default) or ML from an lme4 formula.

    ``weights`` and ``offset`` are prior weights and an offset (a column name or a vector);
    ``control`` a :class:`Control` or a mapping of its fields (tolerances, maxeval, start).
    """
    t0 = time.perf_counter()
    control = Control.from_any(control)
    model = build_model(formula, data, weights=weights, offset=offset)
    fit = fit_model(model, REML, control)
    fit.seconds = time.perf_counter() - t0
    return fit

