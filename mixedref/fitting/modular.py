"""``lmer``: formula + data -> LmerFit, as lme4's lmer, composed of stages callable alone.

The stages mirror lme4's modular interface: :func:`mixedref.frontend.design.build_model` (lFormula),
:func:`devfun` (mkLmerDevfun: the objective over theta, for cross-evaluation),
:func:`mixedref.fitting.optimize.optimize_theta` (optimizeLmer) and :class:`LmerFit` (mkMerMod).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mixedref.engines import PLSObjective
from mixedref.errors import ConvergenceWarning, MixedrefError, SingularFitWarning
from mixedref.fitting.optimize import Control, optimize_theta
from mixedref.frontend.design import ModelFrame, build_model
from mixedref.frontend.resolution import check_response
from mixedref.models.fit import LmerFit

__all__ = ["Control", "LmerFit", "devfun", "fit_model", "lmer"]

VectorArg = str | np.ndarray | Sequence[float] | pd.Series | None
SubsetArg = str | np.ndarray | Sequence[bool] | pd.Series | None
ContrastsArg = Mapping[str, str | np.ndarray | pd.DataFrame] | None


def _check_reml(REML: object) -> bool:
    """REML must be a boolean (numpy's too): lme4 reads REML = "FALSE" as FALSE and fails on
    NULL ("argument is of length zero"); a truthy string or None fitting silently is refused."""
    if isinstance(REML, bool | np.bool_):
        return bool(REML)
    raise MixedrefError(
        f"REML must be True or False, got {REML!r} ({type(REML).__name__}); "
        "REML=True fits the REML criterion, REML=False maximum likelihood"
    )


def devfun(formula: str, data: pd.DataFrame, REML: bool = True, *,
           weights: VectorArg = None, offset: VectorArg = None,
           contrasts: ContrastsArg = None, na_action: str = "na.omit",
           subset: SubsetArg = None) -> PLSObjective:
    """The objective over theta (deviance or REML criterion) without optimizing: call it on a
    theta in lme4's order to evaluate any implementation's estimate under lme4's criterion.
    The data arguments are :func:`lmer`'s."""
    REML = _check_reml(REML)
    model = build_model(formula, data, weights=weights, offset=offset, contrasts=contrasts,
                        na_action=na_action, subset=subset)
    return PLSObjective(model, REML)


def fit_model(model: ModelFrame, REML: bool = True,
              control: Control | Mapping[str, Any] | None = None) -> LmerFit:
    """Fit a ModelFrame that is already built (the optimizer and result stages of lmer)."""
    t0 = time.perf_counter()
    REML = _check_reml(REML)
    objective = PLSObjective(model, REML)
    opt = optimize_theta(objective, model, control)
    _warn(opt)
    return LmerFit(model, objective, opt, seconds=time.perf_counter() - t0)


def _warn(opt: Any) -> None:
    """lme4's warnings of a fit, as Python warnings of their own categories."""
    for msg in opt.messages:
        category = SingularFitWarning if msg.startswith("boundary (singular) fit") \
            else ConvergenceWarning
        warnings.warn(msg, category, stacklevel=3)


def lmer(formula: str, data: pd.DataFrame, REML: bool = True, *, weights: VectorArg = None,
         offset: VectorArg = None, contrasts: ContrastsArg = None, na_action: str = "na.omit",
         subset: SubsetArg = None, control: Control | Mapping[str, Any] | None = None
         ) -> LmerFit:
    """Fit a linear mixed model by REML (default) or ML from an lme4 formula.

    As lme4's ``lmer(formula, data, REML, control, weights, subset, na.action, offset,
    contrasts)``: ``weights`` and ``offset`` are prior weights and an offset (a column name or
    one value per row; a pandas Series is aligned by index; ``offset(...)`` in the formula adds
    to it); ``contrasts`` maps a factor to "contr.treatment", "contr.sum", "contr.helmert",
    "contr.poly", "contr.SAS" or a numeric levels x k matrix; ``na_action`` is "na.omit",
    "na.exclude" (the model frame records the dropped rows for padding) or "na.fail";
    ``subset`` a boolean vector/Series or an expression on the columns ("Days > 2");
    ``control`` a :class:`Control` or a mapping of its fields (tolerances, maxeval, start).
    """
    t0 = time.perf_counter()
    REML = _check_reml(REML)
    control = Control.from_any(control)
    model = build_model(formula, data, weights=weights, offset=offset, contrasts=contrasts,
                        na_action=na_action, subset=subset)
    check_response(model)  # mixedref.frontend.resolution: a spread float64 cannot hold at its level
    fit = fit_model(model, REML, control)
    fit.seconds = time.perf_counter() - t0
    fit.call = {"formula": formula, "data": data, "REML": REML, "weights": weights,
                "offset": offset, "contrasts": contrasts, "na_action": na_action,
                "subset": subset, "control": control}
    fit.fitter = lmer
    return fit

