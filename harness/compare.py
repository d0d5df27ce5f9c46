"""Compare a candidate's FitRecord with the reference's under the tolerance policy.

:func:`compare_records` gives a :class:`Comparison`: one row per compared quantity (fixed
effects, their SEs, σ, every varcorr row, logLik, objective, θ where both report it) and a
verdict. A candidate that reaches a lower objective than the reference by more than the
objective tolerance is "candidate-better": a finding about the reference, not a failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.tolerance import DEFAULT, Tolerance

AGREED = "agreed"
DISAGREED = "disagreed"
CANDIDATE_BETTER = "candidate-better"
FAILED = "failed"  # the candidate's fit failed (error, timeout, NaN)
REFERENCE_FAILED = "reference-failed"  # the reference has no answer to compare with
VERDICTS = (AGREED, DISAGREED, CANDIDATE_BETTER, FAILED, REFERENCE_FAILED)


@dataclass
class Row:
    """One compared quantity. ``ok`` is None when it was not compared (not reported)."""

    name: str
    reference: float | None
    candidate: float | None
    difference: float | None
    allowed: float | None
    ok: bool | None
    note: str = ""


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

    @property
    def ok(self) -> bool:
        """True unless the candidate is at fault (disagreed or failed)."""
        return self.verdict not in (DISAGREED, FAILED)

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
            return f"in {names}" + (f" (+{more} more)" if more > 0 else "")
        return self.notes[0] if self.notes else ""

    def format_table(self, only_failures: bool = False) -> str:
        """The parameter table (name, reference, candidate, difference, allowed) as text."""
        lines = [self.headline()]
        lines += self.notes[1:] if self.notes else []
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
        d = dict(d)
        d["rows"] = [Row(**r) for r in d.get("rows", [])]
        return cls(**d)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.7g}"


def compare_records(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                    case: Any = None, tol: Tolerance = DEFAULT) -> Comparison:
    """Compare ``candidate`` with ``reference`` (both FitRecords) under ``tol``.

    ``case`` (a catalog Case, optional) only supplies the id when the records lack it.
    """
    case_id = str(candidate.get("case_id") or reference.get("case_id")
                  or getattr(case, "id", "?"))
    comp = Comparison(case_id, str(reference.get("impl")), str(candidate.get("impl")), AGREED)
    if reference.get("error"):
        comp.verdict, comp.error = REFERENCE_FAILED, f"reference failed: {reference['error']}"
        return comp
    if candidate.get("error"):
        comp.verdict, comp.error = FAILED, str(candidate["error"])
        return comp

    _compare_fixef(reference, candidate, comp, tol)
    _compare_scalar("sigma", reference.get("sigma"), candidate.get("sigma"),
                    lambda r: tol.sigma_rel * abs(r), comp)
    _compare_varcorr(reference, candidate, comp, tol)
    for key in ("loglik", "objective"):
        _compare_scalar(key, reference.get(key), candidate.get(key), tol.objective_allowed, comp)
    _compare_theta(reference, candidate, comp, tol)

    if not any(r.ok is not None for r in comp.rows):
        comp.verdict = FAILED
        comp.error = "the candidate reported nothing comparable with the reference"
        return comp
    ref_obj, cand_obj = reference.get("objective"), candidate.get("objective")
    structural = [r for r in comp.rows if r.ok is False and r.note in ("missing",
                                                                       "not in reference")]
    if structural:  # a different model (other columns or terms): objectives not comparable
        comp.verdict = DISAGREED
        comp.notes.append("the candidate fitted a different model: "
                          + ", ".join(f"{r.name} {r.note}" for r in structural[:6]))
    elif (ref_obj is not None and cand_obj is not None
            and cand_obj < ref_obj - tol.objective_allowed(ref_obj)):
        comp.verdict = CANDIDATE_BETTER
        allowed = tol.objective_allowed(ref_obj)
        comp.notes.append(
            f"candidate's objective {cand_obj:.8g} is lower than the reference's "
            f"{ref_obj:.8g} by {ref_obj - cand_obj:.3g} (allowed {allowed:.3g}): "
            "the reference did not reach the optimum")
    elif comp.failures:
        comp.verdict = DISAGREED
    return comp


def _add(comp: Comparison, name: str, ref: float | None, cand: float | None,
         allowed: float | None) -> None:
    if ref is None and cand is None:
        return
    if ref is None:
        comp.rows.append(Row(name, None, cand, None, None, False, "not in reference"))
    elif cand is None:
        comp.rows.append(Row(name, ref, None, None, allowed, None, "not reported"))
    else:
        diff = cand - ref
        ok = bool(allowed is not None and math.isfinite(diff) and abs(diff) <= allowed)
        comp.rows.append(Row(name, ref, cand, diff, allowed, ok))


def _compare_scalar(name: str, ref: float | None, cand: float | None, allowed_of: Any,
                    comp: Comparison) -> None:
    _add(comp, name, ref, cand, None if ref is None else allowed_of(ref))


def _compare_fixef(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                   comp: Comparison, tol: Tolerance) -> None:
    ref_b, cand_b = dict(reference.get("fixef") or {}), dict(candidate.get("fixef") or {})
    ref_se, cand_se = dict(reference.get("fixef_se") or {}), dict(candidate.get("fixef_se") or {})
    if cand_b and set(cand_b) != set(ref_b):
        comp.notes.append(f"fixed-effect names differ: reference {list(ref_b)}, "
                          f"candidate {list(cand_b)}")
    for name, ref in ref_b.items():
        se = ref_se.get(name)
        allowed = tol.fixef_se_units * se if se is not None else None
        _add(comp, f"fixef[{name}]", ref, cand_b.get(name), allowed)
        if not cand_b:
            continue
        if name not in cand_b:
            comp.rows[-1].ok, comp.rows[-1].note = False, "missing"
    for name in cand_b:
        if name not in ref_b:
            _add(comp, f"fixef[{name}]", None, cand_b[name], None)
    for name, ref in ref_se.items():
        _add(comp, f"fixef_se[{name}]", ref, cand_se.get(name), tol.fixef_se_rel * abs(ref))


def _vc_key(row: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    return (str(row.get("grp")), row.get("var1"), row.get("var2"))


def _vc_name(key: tuple[str, str | None, str | None], what: str) -> str:
    parts = [p for p in key if p is not None]
    return f"{what}[{','.join(parts)}]"


def _compare_varcorr(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                     comp: Comparison, tol: Tolerance) -> None:
    ref_rows = {_vc_key(r): r for r in reference.get("varcorr") or []}
    cand_rows = {_vc_key(r): r for r in candidate.get("varcorr") or []}
    sigma2 = None
    res = ref_rows.get(("Residual", None, None))
    if res is not None and res.get("vcov") is not None:
        sigma2 = res["vcov"]
    elif reference.get("sigma") is not None:
        sigma2 = reference["sigma"] ** 2
    sd = {(k[0], k[1]): r.get("sdcor") for k, r in ref_rows.items() if k[2] is None}
    for key, ref in ref_rows.items():
        cand = cand_rows.get(key)
        cand_vcov = None if cand is None else cand.get("vcov")
        ref_vcov = ref.get("vcov")
        if key[2] is None:  # a variance (or the residual variance)
            floor = tol.var_abs_sigma2 * sigma2 if sigma2 is not None else 0.0
            allowed = None if ref_vcov is None else max(tol.var_rel * abs(ref_vcov), floor)
            _add(comp, _vc_name(key, "var"), ref_vcov, cand_vcov, allowed)
        else:  # a covariance, and its correlation
            sd1, sd2 = sd.get((key[0], key[1])), sd.get((key[0], key[2]))
            floor = tol.cov_abs_sd * sd1 * sd2 if sd1 is not None and sd2 is not None else 0.0
            allowed = None if ref_vcov is None else max(tol.var_rel * abs(ref_vcov), floor)
            _add(comp, _vc_name(key, "cov"), ref_vcov, cand_vcov, allowed)
            _add(comp, _vc_name(key, "corr"), ref.get("sdcor"),
                 None if cand is None else cand.get("sdcor"), tol.corr_abs)
        if cand is None and cand_rows:
            comp.rows[-1].ok, comp.rows[-1].note = False, "missing"
    if cand_rows:
        extra = [k for k in cand_rows if k not in ref_rows]
        for key in extra:
            what = "var" if key[2] is None else "cov"
            _add(comp, _vc_name(key, what), None, cand_rows[key].get("vcov"), None)


def _compare_theta(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                   comp: Comparison, tol: Tolerance) -> None:
    ref_t, cand_t = reference.get("theta"), candidate.get("theta")
    if ref_t is None or cand_t is None:
        return
    if len(ref_t) != len(cand_t):
        comp.notes.append(f"theta lengths differ ({len(ref_t)} vs {len(cand_t)}); not compared")
        return
    for i, (r, c) in enumerate(zip(ref_t, cand_t, strict=True)):
        _add(comp, f"theta[{i}]", r, c, tol.theta_abs + tol.theta_rel * abs(r))
