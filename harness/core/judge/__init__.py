"""The independent judge: every estimate re-evaluated, never believed.

A candidate's record says what it estimated (fixed effects, σ, variance components) and what it
claims about them (its objective, its logLik). The judge turns the estimates into θ in lme4's
parametrization (varcorr and σ -> Λ/σ, harness.core.judge.theta) and evaluates the
profiled criterion there under two independent objectives: lme4's own (``mkLmerDevfun`` in R,
r_scripts/judge.R, run in the R worker lane with the case's time limit) and mixedref's (the PLS
engine). Each also gives the profiled β̂(θ) and σ̂(θ), so the comparison can say whether the
candidate's β and σ belong to its own θ. harness.core.compare turns a :class:`Judgement` into rows
and the verdict; this module only evaluates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.core.judge.theta import TermLayout, layout_from_varcorr, theta_of

#: θ -> the profiled criterion there
Objective = Callable[[np.ndarray], float]

JUDGES = ("lme4", "mixedref")
R_LANE = "R"


@dataclass
class Evaluation:
    """One judge's profiled quantities at one θ (or why it could not evaluate there)."""

    objective: float | None = None
    beta: dict[str, float] | None = None
    sigma: float | None = None
    error: str | None = None


@dataclass
class Point:
    """One estimate's θ (and for a GLMM its β: the criterion is not profiled over β there) and
    every judge's evaluation of it."""

    theta: list[float] | None
    by: dict[str, Evaluation] = field(default_factory=dict)
    error: str | None = None  # why the estimate has no θ (its varcorr cannot be read)
    beta: list[float] | None = None  # GLMM: the fixed effects, in the model's column order
    nb_theta: float | None = None  # negative binomial: the dispersion θ the point is judged at

    def objective(self, judge: str) -> float | None:
        ev = self.by.get(judge)
        return None if ev is None else ev.objective

    def first(self) -> tuple[str, Evaluation] | None:
        """The first judge (lme4 before mixedref) that evaluated this point."""
        for name in JUDGES:
            ev = self.by.get(name)
            if ev is not None and ev.objective is not None:
                return name, ev
        return None


@dataclass
class Judgement:
    """The reference's and the candidate's estimates, each evaluated by every judge."""

    criterion: str  # "REML criterion" or "deviance"
    reference: Point
    candidate: Point
    unavailable: dict[str, str] = field(default_factory=dict)  # judge -> why it did not judge
    n: int | None = None  # observations and fixed effects of the model (names a lost 2π)
    p: int | None = None
    # GLMM with nAGQ > 1: the full -2 log-likelihood minus the judged criterion, i.e.
    # -2 log-likelihood of the saturated model, a response-only constant that lme4 1.1-31's
    # quadrature criterion leaves out (its nAGQ = 1 criterion includes it; lme4 #161, #567)
    saturated_constant: float | None = None
    # Gamma and inverse-Gaussian GLMMs: the best known optimum over lme4, glmmTMB and mixedref
    # under the marginal criterion, with both estimates' values (harness.core.judge.scale_family)
    best_known: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Judgement:
        def point(p: Mapping[str, Any]) -> Point:
            return Point(theta=p.get("theta"), error=p.get("error"), beta=p.get("beta"),
                         nb_theta=p.get("nb_theta"),
                         by={k: Evaluation(**v) for k, v in (p.get("by") or {}).items()})

        return cls(criterion=d["criterion"], reference=point(d["reference"]),
                   candidate=point(d["candidate"]), unavailable=dict(d.get("unavailable") or {}),
                   n=d.get("n"), p=d.get("p"),
                   saturated_constant=d.get("saturated_constant"),
                   best_known=d.get("best_known"))


# ----------------------------------------------------------------------------- the judges


def lme4_evaluate(case: Any, thetas: Sequence[Sequence[float]],
                  data: Any = None) -> list[dict[str, Any]]:
    """lme4's criterion, β̂ and σ̂ at each θ (r_scripts/judge.R), on ``data`` or the case's
    dataset. Runs in the R worker lane: it needs the embedded R, which the harness process
    never starts."""
    from harness.core import rbridge

    text = rbridge.call("judge_evaluate_json", _r_data(case, data), str(case.formula),
                        bool(case.REML), _r_vectors(thetas))
    return json.loads(str(text[0]))


def _r_data(case: Any, data: Any) -> Any:
    """``data`` (or the case's dataset, converted once per case and lane: InstEval's conversion
    costs more than its devfun evaluations) as an R data.frame; raises when R is not there."""
    from harness.core import rbridge
    from harness.core.catalog import load_data

    reason = rbridge.unavailable()
    if reason:
        raise RuntimeError(reason)
    if data is not None:
        return rbridge.to_r_frame(data, case.formula)
    return _cached(_r_frames, f"{case.id}|{case.dataset}|{case.data_dirs}",
                   lambda: rbridge.to_r_frame(load_data(case), case.formula))


def _r_vectors(points: Sequence[Sequence[float]]) -> Any:
    """Points (θ, or c(θ, β)) as an R list of numeric vectors."""
    import rpy2.robjects as ro

    return ro.ListVector({str(i): ro.FloatVector([float(v) for v in pt])
                          for i, pt in enumerate(points)})


def _cached(store: dict[str, Any], key: str, build: Any) -> Any:
    """``store[key]``, built by ``build()`` on first use; a store holds at most nine entries."""
    if key not in store:
        if len(store) > 8:
            store.clear()
        store[key] = build()
    return store[key]


_r_frames: dict[str, Any] = {}


def _lme4_judge(case: Any, function: str, points: list[list[float]], timeout: float | None,
                what: str = "lme4's devfun", nb_thetas: list[Any] | None = None
                ) -> tuple[list[Evaluation] | None, str | None]:
    """lme4's evaluations of ``points`` by ``function`` (this module's lme4_evaluate or
    lme4_evaluate_glmm, which takes the negative binomial's ``nb_thetas`` too) in the R lane,
    or None and why not."""
    from harness.core import isolation

    extra = () if nb_thetas is None else (None, nb_thetas)
    out = isolation.call(R_LANE, f"harness.core.judge:{function}", case, points, *extra,
                         timeout=timeout)
    if out.error is not None:
        return None, f"{what} could not be evaluated: {out.error}"
    return [Evaluation(objective=_finite(v.get("objective")),
                       beta={k: float(b) for k, b in (v.get("beta") or {}).items()} or None,
                       sigma=_finite(v.get("sigma")), error=v.get("error"))
            for v in out.value], None


_mixedref_objectives: dict[str, Any] = {}


def _mixedref_objective(case: Any, data: Any) -> Any:
    from mixedref.fitting.modular import devfun

    return _cached(_mixedref_objectives, f"{case.id}|{case.formula}|{case.REML}|{case.data_dirs}",
                   lambda: devfun(case.formula, data, bool(case.REML)))


def _mixedref_judge(f: Any, thetas: list[list[float]]) -> list[Evaluation]:
    names = list(f.model.fixef_names)
    out = []
    for th in thetas:
        try:
            sol = f.solve(np.asarray(th, dtype=float))
            out.append(Evaluation(objective=_finite(sol.objective),
                                  beta=dict(zip(names, map(float, sol.beta), strict=True)),
                                  sigma=_finite(sol.sigma)))
        except Exception as exc:  # noqa: BLE001 - a θ mixedref cannot evaluate is a finding
            out.append(Evaluation(error=f"{type(exc).__name__}: {exc}"))
    return out


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------- entry point

_r_unavailable: dict[str, str] = {}  # once R failed to load in the lane: its reason


def judge(case: Any, reference: Mapping[str, Any], candidate: Mapping[str, Any],
          data: Any = None, *, timeout: float | None = None, use_lme4: bool = True) -> Judgement:
    """Evaluate the reference's and the candidate's estimates under both judges.

    The reference's θ is its own (lme4 reports it), else taken from its varcorr; the
    candidate's always from its varcorr and σ. The model's terms come from mixedref's model
    builder, or from the reference's varcorr when mixedref cannot build the model (then lme4
    judges alone). ``timeout`` bounds the R evaluation (seconds). Never raises: what a judge
    cannot do is said in ``unavailable`` or in a point's ``error``.
    """
    if getattr(case, "family", None) is not None:
        return _judge_glmm(case, reference, candidate, data, timeout=timeout, use_lme4=use_lme4)
    result = Judgement("REML criterion" if case.REML else "deviance", Point(None), Point(None))
    objective = _model(result, case, data, reference, candidate, _mixedref_objective)
    points = [p for p in (result.reference, result.candidate) if p.theta is not None]
    thetas = [p.theta for p in points]
    if not thetas:
        return result

    if objective is not None:
        for p, ev in zip(points, _mixedref_judge(objective, thetas), strict=True):
            p.by["mixedref"] = ev
    _ask_lme4(result, points, use_lme4,
              lambda: _lme4_judge(case, "lme4_evaluate", thetas, timeout))
    return result


def _model(result: Judgement, case: Any, data: Any, reference: Mapping[str, Any],
           candidate: Mapping[str, Any], build: Any) -> Any:
    """mixedref's objective of the case (``build(case, data)``; None when it cannot be built,
    said in ``result.unavailable``), and each point's θ in ``result``: the reference's own
    (lme4 reports it), else, and always for the candidate, θ from its varcorr and σ, under the
    model's terms (or, without a model, the terms the reference's varcorr lists)."""
    from harness.core.catalog import load_data

    objective = None
    try:
        objective = build(case, load_data(case) if data is None else data)
        layout = [TermLayout(t.group, tuple(t.columns)) for t in objective.model.reterms]
        result.n, result.p = int(objective.model.n), int(objective.model.p)
    except Exception as exc:  # noqa: BLE001
        result.unavailable["mixedref"] = f"the model cannot be built: {type(exc).__name__}: {exc}"
        layout = layout_from_varcorr(reference.get("varcorr") or [])
    ntheta = sum(t.ntheta for t in layout)
    for pt, rec, own in ((result.reference, reference, True), (result.candidate, candidate, False)):
        th = rec.get("theta")
        try:
            if own and th is not None and len(th) == ntheta:
                pt.theta = [float(v) for v in th]
            else:
                pt.theta = theta_of(rec, layout)
        except Exception as exc:  # noqa: BLE001
            pt.error = f"its variance components cannot be turned into θ: {exc}"
    return objective


def _ask_lme4(result: Judgement, points: list[Point], use_lme4: bool, evaluate: Any) -> None:
    """Add lme4's evaluations of ``points`` (``evaluate()``: evaluations or None and why), or
    say why lme4 did not judge; once R failed to load, it is not asked again."""
    if not use_lme4:
        result.unavailable["lme4"] = "not asked for"
    elif "reason" in _r_unavailable:
        result.unavailable["lme4"] = _r_unavailable["reason"]
    else:
        evs, why = evaluate()
        if evs is None:
            result.unavailable["lme4"] = str(why)
            if "R not available" in str(why) or "failed to load" in str(why):
                _r_unavailable["reason"] = str(why)
        else:
            for p, ev in zip(points, evs, strict=True):
                p.by["lme4"] = ev


# ----------------------------------------------------------------------------- GLMMs


#: PIRLS tolerance of both judges' GLMM criteria: iterated to the mode, so each judge gives the
#: Laplace (or quadrature) criterion itself rather than a value that depends on where its PIRLS
#: restarted (at lme4's default 1e-7 that truncation reaches 1e-3 on VerbAgg, 0.03 on
#: sim_glmm_olre)
GLMM_TOL_PWRSS = 1e-12


def glmm_criterion(case: Any) -> str:
    """What a GLMM case's objective is: -2 log-likelihood under Laplace or quadrature."""
    how = "Laplace" if case.nAGQ <= 1 else f"adaptive Gauss-Hermite, nAGQ = {case.nAGQ}"
    return f"-2 log-likelihood ({how})"


def lme4_evaluate_glmm(case: Any, points: Sequence[Sequence[float]], data: Any = None,
                       nb_thetas: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """glmer's own criterion at each point c(θ, β) (r_scripts/judge.R), in the R lane; for
    the negative binomial at each point's dispersion ``nb_thetas`` (MASS's
    negative.binomial(θ) with θ fixed: the criterion glmer.nb minimises over θ)."""
    import rpy2.robjects as ro

    from harness.core import rbridge

    nb = ro.NULL if nb_thetas is None else ro.FloatVector([float(t) for t in nb_thetas])
    text = rbridge.call("judge_glmm_evaluate_json", _r_data(case, data),
                        *rbridge.glmm_args(case), _r_vectors(points), GLMM_TOL_PWRSS, nb)
    return json.loads(str(text[0]))


def is_negative_binomial(case: Any) -> bool:
    """A case whose criterion depends on the negative binomial's dispersion θ too."""
    return getattr(case, "family", None) == "negative.binomial"


def _mixedref_glmm(case: Any, data: Any, nb_theta: float = 1.0) -> Any:
    """mixedref's GLMM criterion of the case (for the negative binomial at dispersion
    ``nb_theta``: MASS's family with θ fixed, the criterion glmer_nb minimises over θ)."""
    from mixedref.models.glmer import glmer_devfun

    family: Any = case.family
    if is_negative_binomial(case):
        from mixedref.models.family import negative_binomial

        family = negative_binomial(float(nb_theta), case.link or "log")
    key = (f"{case.id}|{case.formula}|{case.family}|{case.link}|{case.nAGQ}|{case.weights}"
           f"|{float(nb_theta)!r}")
    return _cached(_mixedref_objectives, key, lambda: glmer_devfun(
        case.formula, data, family, link=None if is_negative_binomial(case) else case.link,
        nAGQ=case.nAGQ, weights=case.prior_weights(data),
        control={"tol_pwrss": GLMM_TOL_PWRSS}))


def _saturated_constant(case: Any, data: Any) -> float | None:
    """For nAGQ > 1: -2 x the saturated log-likelihood of the case's response (binomial,
    Poisson), what lme4's quadrature criterion omits and the full -2 log-likelihood has."""
    from harness.core.catalog import load_data
    from harness.core.glmm_response import glmm_response, saturated_loglik

    if case.nAGQ <= 1:
        return None
    try:
        resp = glmm_response(case, load_data(case) if data is None else data)
    except (NotImplementedError, KeyError, ValueError, OSError):
        return None
    sat = saturated_loglik(case.family, resp.y, resp.weights)
    return None if sat is None else -2.0 * sat


def _judge_glmm(case: Any, reference: Mapping[str, Any], candidate: Mapping[str, Any],
                data: Any, *, timeout: float | None, use_lme4: bool) -> Judgement:
    """A GLMM's judgement: each estimate's point c(θ, β) (θ from its varcorr and σ, β its
    fixed effects in the model's order) under glmer's criterion and mixedref's. A negative
    binomial point is judged at its own dispersion (the record's ``nb_theta``): the criterion
    depends on it, and an estimate that does not report it cannot be judged."""
    nb = is_negative_binomial(case)
    result = Judgement(glmm_criterion(case), Point(None), Point(None),
                       saturated_constant=_saturated_constant(case, data))
    devfun = _model(result, case, data, reference, candidate, _mixedref_glmm)
    result.best_known = _best_known(case, data, reference, candidate)
    names = (list(devfun.model.fixef_names) if devfun is not None
             else list(dict(reference.get("fixef") or {})))
    for pt, rec in ((result.reference, reference), (result.candidate, candidate)):
        fixef = dict(rec.get("fixef") or {})
        if pt.theta is None:
            continue
        if any(n not in fixef for n in names) or len(fixef) != len(names):
            pt.theta, pt.error = None, (
                f"its fixed effects {sorted(fixef)} are not the model's columns {names}")
            continue
        if nb:
            pt.nb_theta = _finite(rec.get("nb_theta"))
            if pt.nb_theta is None or pt.nb_theta <= 0:
                pt.theta, pt.error = None, (
                    "it reports no negative binomial dispersion (nb_theta), on which the "
                    f"criterion depends (got {rec.get('nb_theta')!r})")
                continue
        pt.beta = [float(fixef[n]) for n in names]
    points = [p for p in (result.reference, result.candidate) if p.theta is not None]
    if not points:
        return result
    pars = [[*p.theta, *p.beta] for p in points]  # type: ignore[misc]
    nb_thetas = [p.nb_theta for p in points] if nb else None
    if devfun is not None:
        frame = data
        if nb and frame is None:
            from harness.core.catalog import load_data

            frame = load_data(case)
        for p, x in zip(points, pars, strict=True):
            try:
                f = _mixedref_glmm(case, frame, p.nb_theta) if nb else devfun
                p.by["mixedref"] = Evaluation(objective=_finite(f(x)))
            except Exception as exc:  # noqa: BLE001 - a point mixedref cannot evaluate
                p.by["mixedref"] = Evaluation(error=f"{type(exc).__name__}: {exc}")
    _ask_lme4(result, points, use_lme4, lambda: _lme4_judge(
        case, "lme4_evaluate_glmm", pars, timeout, what="glmer's devfun", nb_thetas=nb_thetas))
    return result


def _best_known(case: Any, data: Any, reference: Mapping[str, Any],
                candidate: Mapping[str, Any]) -> dict[str, Any] | None:
    """For a Gamma or inverse-Gaussian GLMM, the best known optimum over lme4, glmmTMB and
    mixedref under the marginal criterion (harness.core.judge.scale_family); else None."""
    from harness.core.judge import scale_family

    if getattr(case, "family", None) not in scale_family.FAMILIES:
        return None
    from harness.core.catalog import load_data

    try:
        return scale_family.judgement(case, load_data(case) if data is None else data,
                                      reference, candidate)
    except Exception as exc:  # noqa: BLE001 - said, never raised (judge() never raises)
        return {"criterion": "marginal", "best": None, "sources": list(scale_family.SOURCES),
                "unavailable": {"marginal": f"{type(exc).__name__}: {exc}"}}


# ----------------------------------------------------------------------------- mixedref's
#                                                      objective and lme4's, as functions of θ


def objective_for(formula: str, data: Any, REML: bool) -> Objective:
    """mixedref's profiled objective at θ: lme4's deviance (ML) or REML criterion
    (``mixedref.devfun``, else the PLS engine on mixedref's model frame)."""
    try:
        from mixedref.fitting.modular import devfun
    except ImportError:
        from mixedref.engines import PLSObjective
        from mixedref.frontend.design import build_model

        f = PLSObjective(build_model(formula, data), REML)
    else:
        f = devfun(formula, data, REML)
    return lambda theta: float(f(np.asarray(theta, dtype=float)))


def layout_from_model(formula: str, data: Any) -> list[TermLayout]:
    """The terms in lme4's order, as mixedref's model builder expands the formula."""
    from mixedref.frontend.design import build_model

    frame = build_model(formula, data)
    return [TermLayout(t.group, tuple(t.columns)) for t in frame.reterms]


def lme4_objective_at(case: Any, data: Any,
                      thetas: Sequence[Sequence[float]]) -> list[float | None]:
    """lme4's own profiled criterion at each θ (r_scripts/judge.R), evaluated in the R worker
    lane within the case's time limit (``data`` None: the case's dataset). Raises RuntimeError
    when lme4 cannot evaluate."""
    from harness.core import isolation

    out = isolation.call(R_LANE, "harness.core.judge:lme4_evaluate", case,
                         [list(t) for t in thetas],
                         data, timeout=getattr(case, "timeout", None))
    if out.error is not None:
        raise RuntimeError(out.error)
    return [v.get("objective") for v in out.value]


def clear_cache() -> None:
    """Forget cached objectives and the R availability (a new session starts afresh)."""
    _mixedref_objectives.clear()
    _r_unavailable.clear()
