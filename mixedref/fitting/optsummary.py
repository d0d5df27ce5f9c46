"""The fit log, as MixedModels.jl's OptSummary and lme4's ``m@optinfo``: where the optimizer
started, what it was told, how it ended and what the convergence checks found."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class OptSummary:
    """One fit's optimization, kept on LmerFit and GlmerFit (``optinfo``) and in the harness
    record."""

    optimizer: str  # "bobyqa" (NLopt's LN_BOBYQA, lme4's nloptwrap) or "lbfgsb" (scipy), ...
    settings: dict[str, Any]  # the Control in force
    start: list[float]  # θ at the first evaluation
    finitial: float  # criterion at the start
    theta: list[float] = field(default_factory=list)  # θ at the end
    # glmer's stage 2 optimizes θ and β together (lme4's optinfo$val is both): β's start and
    # end; None for lmer, whose β is profiled out
    fixef_start: list[float] | None = None
    fixef: list[float] | None = None
    fmin: float = float("nan")  # criterion at the end
    nfev: int = 0
    return_code: int | None = None  # the optimizer's own code (NLopt's, or scipy's status)
    return_name: str = ""  # its name ("NLOPT_FTOL_REACHED", "scipy L-BFGS-B: CONVERGENCE ...")
    return_meaning: str = ""  # what it means, in words
    nonfinite: int = 0  # evaluations where the system could not be factored
    strategies: list[str] = field(default_factory=list)  # extra runs (centred start, edge)
    # mixedref.fitting.strategies, run where a check failed: why, every attempt (strategy, its
    # criterion re-evaluated, evaluations, seconds), the winner and how much lower it got
    rescue_reasons: list[str] = field(default_factory=list)
    rescue: list[dict[str, Any]] = field(default_factory=list)
    winner: str | None = None
    gain: float = 0.0
    gradient: list[float] | None = None  # finite-difference gradient at the end (free coords)
    hessian_eigenvalues: list[float] | None = None
    checks: list[str] = field(default_factory=list)  # what checkConv would warn, verbatim
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (NaN as None)."""
        def plain(v: Any) -> Any:
            if isinstance(v, float | np.floating):
                return None if not np.isfinite(v) else float(v)
            if isinstance(v, list | tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v.item() if isinstance(v, np.generic) else v
        return {k: plain(v) for k, v in asdict(self).items()}


#: NLopt's return codes (nlopt.h), and what each means.
NLOPT_CODES: dict[int, tuple[str, str]] = {
    1: ("NLOPT_SUCCESS", "success"),
    2: ("NLOPT_STOPVAL_REACHED", "the criterion reached the stop value"),
    3: ("NLOPT_FTOL_REACHED", "the criterion changed by less than ftol: converged"),
    4: ("NLOPT_XTOL_REACHED", "θ changed by less than xtol: converged"),
    5: ("NLOPT_MAXEVAL_REACHED", "stopped at the maximum number of evaluations: not converged"),
    6: ("NLOPT_MAXTIME_REACHED", "stopped at the time limit: not converged"),
    -1: ("NLOPT_FAILURE", "generic failure"),
    -2: ("NLOPT_INVALID_ARGS", "invalid arguments"),
    -3: ("NLOPT_OUT_OF_MEMORY", "out of memory"),
    -4: ("NLOPT_ROUNDOFF_LIMITED", "roundoff limited progress: the result may still be useful"),
    -5: ("NLOPT_FORCED_STOP", "forced stop"),
}
