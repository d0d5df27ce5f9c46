"""Compare a candidate's FitRecord with the reference's under the tolerance policy.

:func:`compare_records` gives a :class:`Comparison`: one row per compared quantity (fixed
effects, their SEs, σ, every varcorr row, logLik, objective, θ where both report it) and a
verdict. With a :class:`harness.core.judge.Judgement` (both estimates re-evaluated under lme4's and
mixedref's objectives) it also checks the candidate against itself: its reported objective and
logLik against the criterion its own estimates give, its β and σ against the profiled β̂(θ)
and σ̂(θ) at its own θ (rows ``consistency.*``). A candidate is "candidate-better" (a finding
about the reference, not a failure) only when its *re-evaluated* criterion is lower than the
reference's by more than the objective tolerance under every judge that evaluated both; what
it says about itself never grants that. For Gamma and inverse-Gaussian GLMMs the verdict is
then held to the best known optimum over lme4, glmmTMB and mixedref under the marginal
likelihood (harness.core.judge.scale_family), not to lme4 alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from harness.core.comparators import BUILTIN, Comparator, Row, row
from harness.core.judge import JUDGES, Judgement
from harness.core.protocol import model_mismatch
from harness.core.tolerance import DEFAULT, GLMM, Tolerance, for_case

AGREED = "agreed"
DISAGREED = "disagreed"
CANDIDATE_BETTER = "candidate-better"
FAILED = "failed"  # the candidate's fit failed (error, timeout, NaN)
REFERENCE_FAILED = "reference-failed"  # the reference has no (trustworthy) answer
JUDGES_DISAGREE = "judges-disagree"  # lme4's and mixedref's objectives differ at one θ
INCOMPLETE = "incomplete"  # the candidate left out what every comparison needs
VERDICTS = (AGREED, DISAGREED, CANDIDATE_BETTER, FAILED, REFERENCE_FAILED, JUDGES_DISAGREE,
            INCOMPLETE)
#: verdicts that give the item no pass: the candidate is wrong, or nothing trustworthy judged it
NOT_OK = (DISAGREED, FAILED, REFERENCE_FAILED, JUDGES_DISAGREE, INCOMPLETE)
#: the verdicts worst first (a case's verdict in a report is the worst of its comparisons')
SEVERITY = (FAILED, REFERENCE_FAILED, JUDGES_DISAGREE, INCOMPLETE, DISAGREED, CANDIDATE_BETTER,
            AGREED)
#: what a record must report to be judged at all: a fit is its fixed effects, σ and variances
REQUIRED = {"fixef": "the fixed effects", "sigma": "σ", "varcorr": "the variance components"}


@dataclass
class Comparison:
    """The outcome of comparing one candidate record with the reference record."""

    case_id: str
    reference_impl: str
    candidate_impl: str
    verdict: str
    rows: list[Row] = field(default_factory=list)
    error: str | None = None  # candidate's (or reference's) error text
    notes: list[str] = field(default_factory=list)
    diagnoses: list[str] = field(default_factory=list)  # what the judge found, one sentence each
    judgement: dict[str, Any] | None = None  # harness.core.judge.Judgement.to_dict()

    @property
    def ok(self) -> bool:
        """True when the candidate agreed or beat the reference under the judges."""
        return self.verdict not in NOT_OK

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.ok is False]

    def headline(self) -> str:
        """One line: who against whom, the verdict, and what went wrong."""
        head = f"{self.case_id}: {self.candidate_impl} vs {self.reference_impl}: {self.verdict}"
        why = self.reason()
        if not why:
            return head
        return f"{head} {why}" if why.startswith("in ") else f"{head}: {why}"

    def reason(self) -> str:
        """What went wrong (or was found), without the case and implementation names."""
        if self.error:
            return self.error
        if self.verdict == DISAGREED:
            names = ", ".join(r.name for r in self.failures[:6])
            more = len(self.failures) - 6
            text = f"in {names}" + (f" (+{more} more)" if more > 0 else "")
            return "; ".join([text, *self.diagnoses])
        if self.diagnoses:
            return "; ".join(self.diagnoses)
        return self.notes[0] if self.notes else ""

    def format_table(self, only_failures: bool = False) -> str:
        """The parameter table (name, reference, candidate, difference, allowed) as text."""
        lines = [self.headline()]
        shown = 0 if self.verdict == DISAGREED or self.diagnoses else 1
        lines += self.notes[shown:]
        rows = self.failures if only_failures else self.rows
        if not rows:
            return "\n".join(lines)
        header = ("", "name", "reference", "candidate", "difference", "allowed")
        cells = [header] + [
            ("" if r.ok is None else ("ok" if r.ok else "XX"), r.name, _fmt(r.reference),
             _fmt(r.candidate), _fmt(r.difference), _fmt(r.allowed) + (f"  {r.note}" if r.note
                                                                         else ""))
            for r in rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        for c in cells:
            lines.append("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1])]
                                   + [c[i].rjust(widths[i]) for i in (2, 3, 4)] + [c[5]]).rstrip())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (travels through pytest-xdist's user_properties)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        # what a Decision adds to its comparison for the reports (e.g. "registered") is not
        # a field of the comparison
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        d["rows"] = [Row(**r) for r in d.get("rows", [])]
        return cls(**d)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.7g}"


def compare_records(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                    case: Any = None, tol: Tolerance | None = None,
                    judgement: Judgement | None = None,
                    comparators: Sequence[Comparator] = BUILTIN) -> Comparison:
    """Compare ``candidate`` with ``reference`` (both FitRecords) under ``tol``.

    ``case`` (a catalog Case, optional) supplies the id when the records lack it. ``tol``
    defaults to the case's policy (harness.core.tolerance.for_case: GLMM for a GLMM, also when only
    the reference record names a family).
    ``judgement`` (harness.core.judge.judge) adds the re-evaluation; without it, a lower reported
    objective is only a disagreement. ``comparators`` are the compared quantities
    (harness.core.comparators: the built-in ones, plus a plugin's).
    """
    if tol is None:
        tol = for_case(case) if case is not None else (
            GLMM if reference.get("family") is not None else DEFAULT)
    case_id = str(candidate.get("case_id") or reference.get("case_id")
                  or getattr(case, "id", "?"))
    comp = Comparison(case_id, str(reference.get("impl")), str(candidate.get("impl")), AGREED)
    if judgement is not None:
        comp.judgement = judgement.to_dict()
    if reference.get("error"):
        comp.verdict, comp.error = REFERENCE_FAILED, f"reference failed: {reference['error']}"
        return comp
    if candidate.get("error"):
        comp.verdict, comp.error = FAILED, str(candidate["error"])
        return comp
    mismatch = model_mismatch(case, candidate) if case is not None else None
    if mismatch:  # a Gaussian fit of a binomial case is no answer to it, however close
        comp.verdict, comp.error = FAILED, mismatch
        return comp

    if judgement is not None and judgement.saturated_constant is not None:
        reference = _on_judged_scale(reference, judgement.reference, judgement, tol, comp.notes)
        candidate = _on_judged_scale(candidate, judgement.candidate, judgement, tol, comp.notes)
    for comparator in comparators:
        comp.rows += comparator.rows(reference, candidate, tol, comp.notes)

    if not any(r.ok is not None for r in comp.rows):
        comp.verdict = FAILED
        comp.error = "the candidate reported nothing comparable with the reference"
        return comp
    missing = [what for key, what in REQUIRED.items() if _absent(candidate.get(key))]
    if missing:
        comp.verdict = INCOMPLETE
        comp.error = ("incomplete: the candidate does not report " + ", ".join(missing)
                      + "; a comparison needs the fixed effects, σ and the variance components")
        return comp
    structural = [r for r in comp.rows if r.ok is False and r.note in ("missing",
                                                                       "not in reference")]
    if structural:  # a different model (other columns or terms): objectives not comparable
        comp.verdict = DISAGREED
        comp.notes.append("the candidate fitted a different model: "
                          + ", ".join(f"{r.name} {r.note}" for r in structural[:6]))
        return comp
    if judgement is None:
        ref_obj, cand_obj = reference.get("objective"), candidate.get("objective")
        if (ref_obj is not None and cand_obj is not None
                and cand_obj < ref_obj - tol.objective_allowed(ref_obj)):
            comp.notes.append("the candidate reports a lower objective than the reference, but "
                              "no judge re-evaluated its estimates: a claim, not a finding")
        if comp.failures:
            comp.verdict = DISAGREED
        return comp
    _judge(judgement, reference, candidate, comp, tol)
    if judgement.best_known is not None:  # Gamma, inverse Gaussian: lme4 is not the judge
        from harness.core.judge import scale_family

        if comp.verdict in (AGREED, DISAGREED, CANDIDATE_BETTER):
            _best_known_rule(scale_family.assess(judgement.best_known, tol), comp)
    return comp


def _best_known_rule(a: Any, comp: Comparison) -> None:
    """Apply harness.core.judge.scale_family's assessment: the verdict follows the best known
    optimum over lme4, glmmTMB and mixedref, not lme4 alone."""
    if a.row is not None:
        comp.rows.append(a.row)
    if a.outcome == "misses":
        comp.verdict = DISAGREED
        comp.diagnoses.append(a.text)
    elif a.outcome == "beats-reference":
        comp.verdict = CANDIDATE_BETTER
        comp.diagnoses.append(a.text)
    else:
        comp.notes.append(a.text)


def _on_judged_scale(record: Mapping[str, Any], point: Any, j: Judgement, tol: Tolerance,
                     notes: list[str]) -> Mapping[str, Any]:
    """A GLMM record under nAGQ > 1 whose criterion is the full -2 log-likelihood, put on the
    judges' (lme4's) scale: lme4 1.1-31's quadrature criterion omits the saturated model's
    -2 log-likelihood, a constant of the response alone, which its Laplace criterion has. Both
    scales are legitimate; which one a record uses is read off its own re-evaluated estimate."""
    first = point.first()
    reported = record.get("objective")
    const = j.saturated_constant
    if first is None or reported is None or const is None:
        return record
    value = first[1].objective
    allowed = tol.objective_allowed(value)
    if abs(reported - value) <= allowed or abs(reported - (value + const)) > allowed:
        return record
    out = dict(record)
    out["objective"] = reported - const
    if out.get("loglik") is not None:
        out["loglik"] = float(out["loglik"]) + const / 2
    notes.append(
        f"{record.get('impl')} reports the full {j.criterion} {reported:.10g}; compared on "
        f"lme4's nAGQ > 1 scale ({reported - const:.10g}), which leaves out the saturated "
        f"model's -2 log-likelihood {const:.10g} (lme4 issues #161, #567)")
    return out


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping | list | tuple) and len(value) == 0)


def _judge(j: Judgement, reference: Mapping[str, Any], candidate: Mapping[str, Any],
           comp: Comparison, tol: Tolerance) -> None:
    """Set the verdict from the judges' re-evaluation (see the module docstring)."""
    crit = j.criterion
    for who, pt in (("the reference's", j.reference), ("the candidate's", j.candidate)):
        lme4, mine = pt.objective("lme4"), pt.objective("mixedref")
        if lme4 is not None and mine is not None and abs(lme4 - mine) > tol.objective_allowed(
                lme4):
            comp.verdict = JUDGES_DISAGREE
            comp.diagnoses.append(
                f"the judges disagree at {who} θ: lme4's devfun gives {crit} {lme4:.10g}, "
                f"mixedref's {mine:.10g} (difference {mine - lme4:+.3g}, allowed "
                f"{tol.objective_allowed(lme4):.3g}); no verdict rests on either alone")
    if comp.verdict == JUDGES_DISAGREE:
        return
    for judge_name, why in j.unavailable.items():
        comp.notes.append(f"judge {judge_name} did not evaluate: {why}")
    if j.candidate.error:
        comp.notes.append(f"not re-evaluated: {j.candidate.error}")

    ref_first = j.reference.first()
    ref_reported = reference.get("objective")
    if ref_first is not None and ref_reported is not None:
        name, ev = ref_first
        if abs(ev.objective - ref_reported) > tol.objective_allowed(ev.objective):
            comp.verdict = REFERENCE_FAILED
            comp.error = (f"reference inconsistent: it reports {crit} {ref_reported:.10g} but "
                          f"{_judge_label(name)} gives {ev.objective:.10g} at its θ: a stale or "
                          "broken recording")
            return

    _consistency_rows(j, candidate, reference, comp, tol)
    if comp.failures:
        comp.verdict = DISAGREED
    judged = [n for n in JUDGES if j.reference.objective(n) is not None
              and j.candidate.objective(n) is not None]
    if not judged:
        return
    gaps = {n: j.reference.objective(n) - j.candidate.objective(n) for n in judged}
    allowed = tol.judged_allowed(j.reference.objective(judged[0]))
    consistent = not any(r.ok is False for r in comp.rows if r.name.startswith("consistency."))
    if consistent and all(g > allowed for g in gaps.values()):
        comp.verdict = CANDIDATE_BETTER
        by = ", ".join(f"{_judge_label(n)}: {j.candidate.objective(n):.8g} vs "
                       f"{j.reference.objective(n):.8g}" for n in judged)
        alone = "" if len(judged) == len(JUDGES) else (
            f" (judged by {_judge_label(judged[0])} alone)")
        comp.diagnoses.append(
            f"the candidate's estimates reach a {crit} lower than the reference's by "
            f"{min(gaps.values()):.3g} (allowed {allowed:.3g}) re-evaluated under {by}{alone}: "
            "the reference did not reach the optimum")
    elif any(g > allowed for g in gaps.values()):
        comp.notes.append("the judges do not agree that the candidate is better: "
                          + ", ".join(f"{_judge_label(n)} {g:+.3g}" for n, g in gaps.items()))


def _judge_label(name: str) -> str:
    return "lme4's devfun" if name == "lme4" else "mixedref's objective"


def _consistency_rows(j: Judgement, candidate: Mapping[str, Any], reference: Mapping[str, Any],
                      comp: Comparison, tol: Tolerance) -> None:
    """The candidate against itself: reported criterion and logLik vs its re-evaluated
    estimates, β and σ vs the profiled β̂(θ), σ̂(θ) at its own θ."""
    first = j.candidate.first()
    if first is None:
        return
    name, ev = first
    crit, label = j.criterion, _judge_label(name)
    value = ev.objective
    reported = candidate.get("objective")
    if reported is not None:
        _add_row(comp, "consistency.objective", value, reported, tol.objective_allowed(value))
        if comp.rows[-1].ok is False:
            comp.diagnoses.append(
                f"reported {crit} {reported:.10g} but its estimates give {value:.10g} under "
                f"{label}: " + _explain_constant(reported - value, j))
    loglik = candidate.get("loglik")
    if loglik is not None:
        _add_row(comp, "consistency.loglik", -0.5 * value, loglik, tol.objective_allowed(value))
        if comp.rows[-1].ok is False:
            comp.diagnoses.append(
                f"reported logLik {loglik:.10g} but its estimates give {-0.5 * value:.10g} "
                f"(-1/2 x the {crit} under {label}): "
                + _explain_constant(-2.0 * (loglik + 0.5 * value), j, loglik=True))
    ref_se = dict(reference.get("fixef_se") or {})
    off = []
    for col, b in dict(candidate.get("fixef") or {}).items():
        gls = (ev.beta or {}).get(col)
        se = ref_se.get(col)
        if gls is None or se is None:
            continue
        _add_row(comp, f"consistency.fixef[{col}]", gls, b, tol.fixef_se_units * se)
        if comp.rows[-1].ok is False:
            off.append(f"{col} {b:.8g} where β̂(θ) is {gls:.8g} ({(b - gls) / se:+.3g} SE)")
    if off:
        comp.diagnoses.append(f"β is not the GLS solution at its own θ ({label}): "
                              + "; ".join(off))
    sigma = candidate.get("sigma")
    if sigma is not None and ev.sigma is not None:
        _add_row(comp, "consistency.sigma", ev.sigma, sigma, tol.sigma_rel * ev.sigma)
        if comp.rows[-1].ok is False:
            comp.diagnoses.append(f"σ {sigma:.8g} is not σ̂(θ) {ev.sigma:.8g} at its own θ "
                                  f"({label})")


def _explain_constant(diff: float, j: Judgement, loglik: bool = False) -> str:
    """Name a missing 2π constant when the criterion is off by exactly (n or n-p)·log(2π).
    ``diff`` is reported minus re-evaluated, in criterion units (-2 logLik)."""
    if j.n is not None and j.p is not None:
        for k, what in ((j.n, "n"), (j.n - j.p, "(n - p)")):
            c = k * math.log(2 * math.pi)
            if abs(abs(diff) - c) <= DEFAULT.objective_allowed(c):
                shown = f"{-diff / 2:+.6g} is {what}·log(2π)/2" if loglik else \
                    f"{diff:+.6g} is {what}·log(2π)"
                sign = "left out of" if diff < 0 else "counted twice in"
                return f"the difference {shown}: the 2π constant is {sign} its likelihood"
    return ("a constant or a term is missing from its likelihood, or the value belongs to "
            "other estimates")


def _add_row(comp: Comparison, name: str, ref: float | None, cand: float | None,
             allowed: float | None) -> None:
    r = row(name, ref, cand, allowed)
    if r is not None:
        comp.rows.append(r)
