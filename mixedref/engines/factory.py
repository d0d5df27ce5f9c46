"""The PLS engine factory: which engine fits a model (dense or sparse, by their cost
estimates, within the memory limit), and :class:`PLSObjective`, the name the rest of mixedref
constructs and annotates the criterion over θ with.

A design too large for the dense engine is refused, before anything large is allocated, with
the sparse engine's install hint when scikit-sparse is missing.
"""

from __future__ import annotations

import abc

import numpy as np

from mixedref.engines.base import PLSEngine, PLSSolution
from mixedref.engines.dense import MAX_DENSE_BLOCK, DensePLSObjective
from mixedref.engines.memory import (
    EnginePlan,
    check_memory,
    dense_estimate,
    memory_limit,
    sparse_estimate,
)
from mixedref.errors import MixedrefError
from mixedref.frontend.design import ModelFrame

#: Below this order of the dense second block the dense engine is chosen without analysing
#: the sparse alternative (its cost, r^3 / 3 flops, is then at most a few GFlop).
DENSE_ALWAYS_BLOCK = 2000

#: The dense engine is kept unless the sparse one's estimated fit time is this many times
#: shorter (the estimates count the build and the evaluations: see
#: :func:`mixedref.engines.memory.dense_estimate`).
DENSE_PREFERENCE = 1.25


class PLSObjective(abc.ABC):
    """lme4's profiled deviance / REML criterion as a function of theta, for one ModelFrame.

    Constructing one chooses the engine (:func:`plan_engine`) and returns it: the blocked dense
    engine (:class:`DensePLSObjective`) or CHOLMOD's sparse one (:class:`SparsePLSObjective`),
    by their cost estimates, after checking that the chosen one fits in memory; the plan is
    kept as its ``plan``. ``engine`` forces a path. Both engines are PLSObjectives (their base,
    :class:`PLSEngine`, is registered), so the name serves as their type too.
    """

    def __new__(cls, model: ModelFrame, REML: bool = True, engine: str = "auto") -> PLSEngine:
        plan = plan_engine(model, engine)
        if plan.engine == "dense":
            obj: PLSEngine = DensePLSObjective(model, REML)
        else:
            from mixedref.engines.sparse import SparsePLSObjective  # loaded when needed: below

            obj = SparsePLSObjective(model, REML, symbolic_analysis=plan.symbolic)
        obj.plan = plan
        return obj

    @abc.abstractmethod
    def __call__(self, theta: np.ndarray) -> float:
        """The deviance (ML) or REML criterion at theta, as lme4's devfun returns it."""

    @abc.abstractmethod
    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """The criterion and its exact gradient (None where the engine has none there)."""

    @abc.abstractmethod
    def solve(self, theta: np.ndarray, condvar: bool = False) -> PLSSolution:
        """All of lme4's quantities at theta (beta, sigma, u, b, R_X, optionally condVar)."""


PLSObjective.register(PLSEngine)


def plan_engine(model: ModelFrame, engine: str = "auto") -> EnginePlan:
    """Choose the engine for ``model`` ("auto": by cost; "dense" or "sparse": forced) and
    check its memory estimate against :func:`mixedref.engines.memory.memory_limit`, refusing
    (MixedrefError, with the estimate and the limit) a fit that would not fit, before anything
    large is allocated.

    The sparse engine's module is imported only here, past the small designs the dense engine
    takes at once: importing it loads CHOLMOD and its BLAS, which would add a library to every
    evaluation's thread limit (mixedref.fitting.threads)."""
    if engine not in ("auto", "dense", "sparse"):
        raise MixedrefError(f"unknown engine {engine!r}; use 'auto', 'dense' or 'sparse'")
    if not model.reterms:
        raise MixedrefError("no random-effects terms: lmer needs at least one (expr | group)")
    r = sum(t.q * t.nlevels for t in model.reterms[1:]) + model.p + 1
    dense_fits = r <= MAX_DENSE_BLOCK
    dflops = dbytes = None
    dsecs = None
    if engine != "sparse":
        dflops, dbytes, dsecs = dense_estimate(model)
    small = engine != "sparse" and r <= DENSE_ALWAYS_BLOCK  # the dense plan: memory unread
    limit = memory_limit(dbytes if small else None)
    if engine == "dense" or (engine == "auto" and r <= DENSE_ALWAYS_BLOCK and dbytes <= limit):
        if not dense_fits:
            re2 = r - model.p - 1
            raise MixedrefError(
                f"the random-effects terms after the first have {re2} effects in all; "
                f"the dense engine handles at most {MAX_DENSE_BLOCK - model.p - 1}")
        plan = EnginePlan("dense", "forced" if engine == "dense" else
                          f"dense block of order {r} <= {DENSE_ALWAYS_BLOCK}", limit,
                          dflops, dbytes, dense_seconds=dsecs)
        check_memory(plan)
        return plan
    from mixedref.engines import sparse

    if not sparse.available():
        if engine == "sparse":
            sparse.require("engine='sparse' needs scikit-sparse (CHOLMOD)")
        if not dense_fits or dbytes > limit:
            re2 = r - model.p - 1
            sparse.require(
                f"this design is too large for the dense engine (its random-effects terms "
                f"after the first have {re2} effects, a dense block of order {r}: an estimated "
                f"{dbytes / 2**30:.2f} GiB and {dflops:.3g} flops per evaluation; the dense "
                f"engine holds blocks up to order {MAX_DENSE_BLOCK} within the memory limit of "
                f"{limit / 2**30:.2f} GiB) and the sparse engine is not installed")
        plan = EnginePlan("dense", "scikit-sparse not installed", limit, dflops, dbytes,
                          dense_seconds=dsecs)
        check_memory(plan)
        return plan
    sym = sparse.symbolic(sparse.ut_pattern(model))
    sflops, sbytes, ssecs = sparse_estimate(model, sym)
    if engine == "sparse":
        plan = EnginePlan("sparse", "forced", limit, dflops, dbytes, sflops, sbytes, sym,
                          dsecs, ssecs)
        check_memory(plan)
        return plan
    dense_ok = dense_fits and dbytes <= limit
    if dense_ok and (sbytes > limit or dsecs <= DENSE_PREFERENCE * ssecs):
        plan = EnginePlan("dense", f"estimated fit dense {dsecs:.3g} s vs sparse {ssecs:.3g} s",
                          limit, dflops, dbytes, sflops, sbytes, sym, dsecs, ssecs)
    else:
        why = (f"dense block of order {r} > {MAX_DENSE_BLOCK}" if not dense_fits else
               f"dense needs {dbytes / 2**30:.2f} GiB" if dbytes > limit else
               f"estimated fit sparse {ssecs:.3g} s vs dense {dsecs:.3g} s")
        plan = EnginePlan("sparse", why, limit, dflops, dbytes, sflops, sbytes, sym, dsecs,
                          ssecs)
    check_memory(plan)
    return plan

