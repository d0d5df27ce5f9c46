"""One Control for lmer and glmer: the optimizer's settings both fitters share, plus the few that
only one of them reads (as lme4's lmerControl and glmerControl share merControl's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from mixedref.errors import MixedrefError
from mixedref.fitting.convergence import GRAD_TOL, HESS_TOL

#: lme4's isSingular tolerance.
SINGULAR_TOL = 1e-4

#: glmer's PIRLS stopping rule (relative change of the penalized deviance). lme4's tolPwrss is
#: 1e-7, which can stop well short of the mode: with 400 observation-level effects
#: (sim_glmm_olre) the criterion was left 0.026 high, a noisy function for the optimizer and a fit
#: 0.017 worse than lme4's. 1e-10 costs an iteration or two and gives the Laplace criterion
#: itself; pass lme4's value to reproduce its arithmetic.
GLMER_TOL_PWRSS = 1e-10

#: glmer's stage-1 initial BOBYQA step when ``initial_step`` is None (minqa's rhobeg for a start
#: of 1, as lme4's glmer).
GLMER_STAGE1_STEP = 0.2


@dataclass(frozen=True)
class Control:
    """Optimizer settings for lmer and glmer; the defaults are lme4 1.1-31's (lmerControl() with
    nloptwrap, glmerControl() where glmer has its own)."""

    # -- both fitters: NLopt BOBYQA's stopping rules, the start, lme4's checks
    xtol_abs: float = 1e-8
    ftol_abs: float = 1e-8
    xtol_rel: float = 0.0
    ftol_rel: float = 0.0
    maxeval: int = 100_000
    #: None: lme4's (NLopt's default for lmer; GLMER_STAGE1_STEP for glmer's stage 1)
    initial_step: float | None = None
    start: tuple[float, ...] | None = None  # θ to start from; None: lme4's start
    boundary_tol: float = 1e-5  # lme4's check.boundary
    calc_derivs: bool = True  # lme4's calc.derivs: gradient and Hessian checks at the end
    check_conv_grad: float = GRAD_TOL  # check.conv.grad tol (scaled gradient)
    check_conv_hess: float = HESS_TOL  # check.conv.hess tol (negative or tiny eigenvalues)
    check_conv_singular: float = SINGULAR_TOL  # check.conv.singular tol (isSingular)
    # -- lmer only
    restart_edge: bool = True
    method: str = "auto"  # "auto", "bobyqa" (lme4's) or "lbfgsb" (needs the exact gradient)
    # where a check fails, continue with mixedref.fitting.strategies (not lme4's)
    rescue: bool = True
    #: Newton steps on the exact gradient after the optimizer (mixedref.fitting.polish; not lme4's):
    #: False stops where lme4's BOBYQA stops, to reproduce its arithmetic
    polish: bool = True
    # -- glmer only
    tol_pwrss: float = GLMER_TOL_PWRSS
    pirls_maxit: int = 100  # PIRLS iterations per evaluation (lme4's maxit)
    nAGQ0initStep: bool = True  # noqa: N815 - lme4's name
    start_fixef: tuple[float, ...] | None = None  # β to start stage 2 from; None: stage 1's

    @classmethod
    def from_any(cls, control: Control | Mapping[str, Any] | None) -> Control:
        """A Control from None, a Control, or a mapping of its field names."""
        c = settings_from(cls, control)
        for name in ("start", "start_fixef"):
            value = getattr(c, name)
            if value is not None:
                c = replace(c, **{name: tuple(float(v) for v in value)})
        return c


def settings_from(cls: type, control: Any) -> Any:
    """An instance of the settings dataclass ``cls`` from None (its defaults), an instance, or
    a mapping of its field names (an unknown name is an error naming the known ones)."""
    if control is None:
        return cls()
    if isinstance(control, cls):
        return control
    if isinstance(control, Mapping):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(control) - names)
        if unknown:
            raise MixedrefError(f"unknown control settings {unknown}; known: {sorted(names)}")
        return replace(cls(), **dict(control))
    raise MixedrefError(f"control must be None, a {cls.__name__} or a mapping, not "
                        f"{type(control).__name__}")
