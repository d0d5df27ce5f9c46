"""Cross-evaluation: every implementation's estimate judged by two independent objectives.

Implementations disagree; the question a maintainer asks is *who is right*. Because β and σ are
profiled out, an estimate is determined by θ, so each record's variance components are turned
back into θ (Σ_k/σ² -> lower Cholesky factor -> lme4's column-major lower triangle) and the
profiled criterion (deviance or REML criterion) is evaluated at every θ by mixedref's objective
and, where R is available, by lme4's own devfun (``second``: harness.core.judge.lme4_objective_at,
in the R worker lane). The objectives and the reading of θ from a record are the judge's
(harness.core.judge, harness.core.judge.theta); this module ranks what they give. The ranking uses
lme4's devfun when it evaluated every estimate, else mixedref's, and says which; where the two
objectives differ at one θ the case is inconclusive and says so. The estimate with the lowest
criterion is the better optimum; every other estimate's gap to it is reported, and a candidate
beating lme4 by more than the tolerance is said to be a finding about lme4 (tolerance policy,
principle 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.core.errors import JudgeError
from harness.core.judge import layout_from_model, objective_for
from harness.core.judge.theta import TermLayout, layout_from_varcorr, theta_from_varcorr
from harness.core.tolerance import DEFAULT

Objective = Callable[[np.ndarray], float]
ObjectiveFactory = Callable[[str, Any, bool], Objective]  # harness.core.judge.objective_for
#: many θ -> lme4's criterion at each (None where lme4 refuses one); raises when unavailable
SecondObjective = Callable[[list[list[float]]], list[float | None]]



def gap_tolerance(objective: float) -> float:
    """The objective difference that still counts as the same optimum: the tolerance policy's
    objective allowance (harness/core/tolerance.py), so a "better optimum" here is exactly what
    the comparison calls candidate-better."""
    return DEFAULT.objective_allowed(objective)


@dataclass
class Estimate:
    """One implementation's estimate under the common objective."""

    impl: str
    theta: list[float] | None = None  # from varcorr and σ
    theta_reported: list[float] | None = None  # the record's own θ, when it has one
    objective: float | None = None  # common objective at ``theta`` (else at theta_reported)
    objective_at_reported: float | None = None
    objective_lme4: float | None = None  # lme4's devfun at ``theta`` (the second judge)
    objective_mixedref: float | None = None  # mixedref's, when ``objective`` is lme4's
    objective_reported: float | None = None  # what the implementation itself said
    gap: float | None = None  # objective - best objective (>= 0)
    notes: list[str] = field(default_factory=list)


@dataclass
class CrossEval:
    """Who reaches the lowest objective, and by how much every other estimate misses it."""

    case_id: str
    criterion: str  # "REML criterion" or "deviance"
    theta_names: list[str]
    estimates: dict[str, Estimate]
    reference: str | None  # the lme4 record's impl name, if any
    best: str | None = None
    tolerance: float | None = None
    findings: list[str] = field(default_factory=list)
    error: str | None = None
    conclusive: bool = True  # False when the objective fails at an estimate that did not fail
    judge: str = "mixedref's objective"  # the objective the ranking used

    def disagree(self) -> bool:
        """True when some evaluated estimate misses the best by more than the tolerance."""
        return any(e.gap is not None and self.tolerance is not None and e.gap > self.tolerance
                   for e in self.estimates.values())

    def gap_of(self, impl: str) -> float | None:
        e = self.estimates.get(impl)
        return None if e is None else e.gap

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["disagree"] = self.disagree()
        return d


def _is_lme4(impl: str) -> bool:
    return impl.lower().startswith("lme4")


def cross_evaluate(
    case: Any,
    records: Mapping[str, Mapping[str, Any]],
    data: Any = None,
    *,
    objective: Objective | None = None,
    layout: Sequence[TermLayout] | None = None,
    objective_factory: ObjectiveFactory = objective_for,
    reference: str | None = None,
    second: SecondObjective | None = None,
) -> CrossEval:
    """Evaluate the common objective at every record's θ and name the best estimate.

    ``case`` needs ``id``, ``formula`` and ``REML``; ``objective`` (θ -> criterion) and
    ``layout`` are built from the formula and ``data`` when not given. Records that failed or
    whose variance components cannot be read are kept with a note, never dropped silently.
    A GLMM case (one with a family) without an ``objective`` is judged by
    :func:`cross_evaluate_glmm` instead: its criterion is not profiled over β.
    """
    if getattr(case, "family", None) is not None and objective is None:
        return cross_evaluate_glmm(case, records, data, layout=layout, reference=reference)
    REML = bool(getattr(case, "REML", True))
    criterion = "REML criterion" if REML else "deviance"
    if reference is None:
        reference = next((k for k in records if _is_lme4(k) and not records[k].get("error")),
                         next((k for k in records if _is_lme4(k)), None))
    result = CrossEval(case_id=str(getattr(case, "id", "?")), criterion=criterion,
                       theta_names=[], estimates={}, reference=reference)
    try:
        if layout is None:
            layout = _layout(case, data, records)
        result.theta_names = [n for t in layout for n in t.theta_names()]
        if objective is None:
            objective = objective_factory(case.formula, data, REML)
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        result.error = f"cannot build the common objective: {type(exc).__name__}: {exc}"
        return result
    ntheta = len(result.theta_names)

    for impl, rec in records.items():
        est = Estimate(impl=impl, objective_reported=rec.get("objective"))
        result.estimates[impl] = est
        if rec.get("error"):
            est.notes.append(f"fit failed: {rec['error']}")
            continue
        if rec.get("REML") is not None and bool(rec["REML"]) != REML:
            est.notes.append(f"record's REML={rec['REML']} differs from the case's REML={REML}")
        try:
            est.theta = theta_from_varcorr(rec, layout).tolist()
            est.objective = _evaluate(objective, est.theta)
        except Exception as exc:  # noqa: BLE001
            est.notes.append(f"θ from varcorr: {type(exc).__name__}: {exc}")
        th = rec.get("theta")
        if th is not None and len(th) == ntheta:
            est.theta_reported = [float(v) for v in th]
            try:
                est.objective_at_reported = _evaluate(objective, est.theta_reported)
            except Exception as exc:  # noqa: BLE001
                est.notes.append(f"θ as reported: {type(exc).__name__}: {exc}")
        elif th is not None:
            est.notes.append(f"reported θ has {len(th)} elements, the model has {ntheta}")
        if est.objective is None and est.objective_at_reported is not None:
            est.objective = est.objective_at_reported
        _consistency_notes(est, criterion)

    if second is not None:
        _second_opinion(result, second)
    _rank(result)
    return result


def cross_evaluate_glmm(case: Any, records: Mapping[str, Mapping[str, Any]], data: Any = None,
                        *, layout: Sequence[TermLayout] | None = None,
                        reference: str | None = None) -> CrossEval:
    """Every record's GLMM estimate under mixedref's GLMM criterion (the judge's, PIRLS to
    1e-12: harness.core.judge), ranked. A GLMM's criterion is not profiled over β, so each point is
    c(θ, β), θ from the record's varcorr, β its fixed effects in the model's order; for the
    negative binomial at the record's own dispersion ``nb_theta`` (without it the estimate is
    not evaluated, with a note)."""
    from harness.core.catalog import load_data
    from harness.core.judge import _mixedref_glmm, glmm_criterion, is_negative_binomial

    if reference is None:
        reference = next((k for k in records if _is_lme4(k) and not records[k].get("error")),
                         next((k for k in records if _is_lme4(k)), None))
    result = CrossEval(case_id=str(getattr(case, "id", "?")), criterion=glmm_criterion(case),
                       theta_names=[], estimates={}, reference=reference,
                       judge="mixedref's GLMM criterion")
    nb = is_negative_binomial(case)
    try:
        data = load_data(case) if data is None else data
        base = _mixedref_glmm(case, data)
        names = list(base.model.fixef_names)
        if layout is None:
            layout = [TermLayout(t.group, tuple(t.columns)) for t in base.model.reterms]
        result.theta_names = [n for t in layout for n in t.theta_names()]
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        result.error = f"cannot build the GLMM criterion: {type(exc).__name__}: {exc}"
        return result
    for impl, rec in records.items():
        est = Estimate(impl=impl, objective_reported=rec.get("objective"))
        result.estimates[impl] = est
        if rec.get("error"):
            est.notes.append(f"fit failed: {rec['error']}")
            continue
        fixef = dict(rec.get("fixef") or {})
        if sorted(fixef) != sorted(names):
            est.notes.append(f"its fixed effects {sorted(fixef)} are not the model's {names}")
            continue
        nb_theta = rec.get("nb_theta")
        if nb and not (isinstance(nb_theta, int | float) and nb_theta > 0):
            est.notes.append("no negative binomial dispersion (nb_theta): the criterion "
                             "depends on it")
            continue
        try:
            est.theta = theta_from_varcorr(rec, layout).tolist()
            f = _mixedref_glmm(case, data, float(nb_theta)) if nb else base
            est.objective = _evaluate(f, [*est.theta, *(float(fixef[n]) for n in names)])
        except Exception as exc:  # noqa: BLE001
            est.notes.append(f"not evaluated: {type(exc).__name__}: {exc}")
        _consistency_notes(est, result.criterion)
    _rank(result)
    return result


def _second_opinion(result: CrossEval, second: SecondObjective) -> None:
    """lme4's devfun at every estimate's θ; disagreements between the judges are findings."""
    evaluated = [e for e in result.estimates.values() if e.theta is not None]
    if not evaluated:
        return
    try:
        values = second([e.theta for e in evaluated])
    except Exception as exc:  # noqa: BLE001 - R may be missing: say so, judge by mixedref's
        result.findings.append(f"lme4's devfun did not evaluate the estimates ({exc}); they "
                               "are ranked by mixedref's objective alone")
        return
    for e, v in zip(evaluated, values, strict=True):
        e.objective_lme4 = v
        if v is not None and e.objective is not None and abs(v - e.objective) > gap_tolerance(v):
            result.conclusive = False
            result.findings.append(
                f"Judges disagree at {e.impl}'s θ: lme4's devfun gives {v:.8g}, mixedref's "
                f"objective {e.objective:.8g}: suspect the objectives before any estimate.")
    if all(e.objective_lme4 is not None for e in evaluated):
        result.judge = "lme4's devfun"
        for e in evaluated:
            e.objective_mixedref = e.objective
            e.objective = e.objective_lme4


def _layout(case: Any, data: Any, records: Mapping[str, Mapping[str, Any]],
            model_builder: Callable[[str, Any], Any] | None = None) -> list[TermLayout]:
    """The model's terms: from the model builder when it can expand the formula, else from
    the first record with variance components."""
    if data is not None:
        try:
            if model_builder is not None:
                return [TermLayout(t.group, tuple(t.columns))
                        for t in model_builder(case.formula, data).reterms]
            return layout_from_model(case.formula, data)
        except ImportError:
            pass
    for rec in records.values():
        if rec.get("varcorr"):
            return layout_from_varcorr(rec["varcorr"])
    raise JudgeError("no model builder and no record with variance components: "
                        "the random-effects terms are unknown")


def _evaluate(objective: Objective, theta: Sequence[float]) -> float:
    value = float(objective(np.asarray(theta, dtype=float)))
    if not math.isfinite(value):
        raise JudgeError(f"objective is {value} at θ={list(theta)}")
    return value


def _consistency_notes(est: Estimate, criterion: str) -> None:
    """Say when an implementation's own numbers do not match the common objective."""
    if est.objective is not None and est.objective_reported is not None:
        d = est.objective - est.objective_reported
        if abs(d) > gap_tolerance(est.objective):
            est.notes.append(
                f"reported {criterion} {est.objective_reported:.6f} but its variance "
                f"components give {est.objective:.6f} (difference {d:+.3g}): the record's "
                "numbers are inconsistent, or the objectives differ")
    if est.objective_at_reported is not None and est.objective is not None:
        d = est.objective_at_reported - est.objective
        if abs(d) > gap_tolerance(est.objective):
            est.notes.append(f"its reported θ and its variance components differ in {criterion}"
                             f" by {d:+.3g}")


def _rank(result: CrossEval) -> None:
    values = {k: e.objective for k, e in result.estimates.items() if e.objective is not None}
    if not values:
        result.error = result.error or "no estimate could be evaluated"
        return
    best = min(values, key=lambda k: (values[k], not _is_lme4(k)))
    lo = values[best]
    result.best = best
    result.tolerance = gap_tolerance(lo)
    for e in result.estimates.values():
        if e.objective is not None:
            e.gap = e.objective - lo
    ref = result.reference
    crit = result.criterion
    unevaluated = [k for k, e in result.estimates.items() if e.objective is None
                   and not any(n.startswith("fit failed") for n in e.notes)]
    if unevaluated:
        result.conclusive = False
        why = "; ".join(f"{k}: {(result.estimates[k].notes or ['?'])[-1]}"
                        for k in unevaluated)
        result.findings.append(
            f"Inconclusive: the common objective (mixedref's) cannot be evaluated at the "
            f"estimate of {', '.join(unevaluated)} ({why}). Suspect the objective itself "
            "before any implementation; the gaps below exclude these estimates.")
    if ref in values and values[ref] - lo > result.tolerance:
        winners = [k for k in values if values[ref] - values[k] > result.tolerance]
        for k in sorted(winners, key=values.get):
            result.findings.append(
                f"Finding about lme4: {k} reaches a lower {crit} than {ref} "
                f"({values[k]:.6f} vs {values[ref]:.6f}, lower by {values[ref] - values[k]:.3g}). "
                f"{ref} did not reach the optimum here; this is not a failure of {k}.")
    for k, e in result.estimates.items():
        if e.gap is not None and e.gap > result.tolerance and k != ref:
            result.findings.append(
                f"{k} misses the best {crit} ({best}: {lo:.6f}) by {e.gap:.3g}: "
                "its estimate is not the optimum of this objective.")


def allfit_in_r(formula: str, REML: bool, data: Any) -> dict[str, Any]:
    """r_scripts/allfit.R's allFit summary (runs in the R worker lane, which has the R)."""
    import json

    from harness.core import rbridge

    reason = rbridge.unavailable()
    if reason:
        raise RuntimeError(reason)
    text = rbridge.call("allfit_best_json", data, str(formula), bool(REML))
    return json.loads(str(text[0] if not isinstance(text, str) else text))


#: allFit refits the model with about seven optimizers: this bounds it in the R lane
ALLFIT_TIMEOUT = 300.0


def allfit_second_opinion(case: Any, data: Any) -> dict[str, Any]:
    """lme4's second opinion (r_scripts/allfit.R): every allFit optimizer's objective and the
    best; ``{"error": ...}`` when R is unavailable, allFit fails or runs past its limit."""
    from harness.core import isolation

    out = isolation.call("R", "harness.core.crosseval:allfit_in_r", str(case.formula),
                         bool(case.REML), data, timeout=ALLFIT_TIMEOUT)
    return out.value if out.error is None else {"error": out.error}
