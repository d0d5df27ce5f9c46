"""One road from a case to an outcome, taken by the pytest item and by every command.

:func:`decide` fits the case with the reference and the candidate (each in its own worker),
holds the candidate's record to the case's model, re-evaluates both estimates under both judges
(lme4's devfun and mixedref's objective), compares under the tolerance policy (with any plugin
comparators), then applies the registry of known divergences and the baseline. What it gives,
a :class:`Decision`, names its outcome in :data:`OUTCOMES`, the one vocabulary of the summary,
the reports and the league.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Every outcome an item can end with. The first five are the comparison's verdicts
#: (harness.core.compare); "no-verdict": the reference has no answer; "drift": moved beyond
# tolerance
#: since the baseline; "xfail": a registered divergence that still holds; "xpass": an expected
#: failure that passed; "skipped": the candidate cannot express the case; "error": the harness
#: could not run the item.
OUTCOMES = ("agreed", "disagreed", "candidate-better", "failed", "incomplete", "judges-disagree",
            "drift", "no-verdict", "skipped", "xfail", "xpass", "error")
#: outcomes that make a run fail
BAD = ("disagreed", "failed", "incomplete", "judges-disagree", "drift", "no-verdict", "xpass",
       "error")


@dataclass
class Decision:
    """What one (case, candidate) item came to. ``registry_problem``: the registered
    divergences of the item do not match what was measured (the text says how)."""

    outcome: str
    headline: str
    comparison: Any = None
    record: dict[str, Any] | None = None
    reference_record: dict[str, Any] | None = None
    drift: list[Any] = field(default_factory=list)
    registered: Any = None
    registry_problem: str | None = None

    def props(self) -> dict[str, Any]:
        """The item's data as the summary, journal and reports keep it."""
        if self.comparison is None:
            return {"verdict": self.outcome, "headline": self.headline,
                    "no_verdict": self.outcome == "no-verdict"}
        no_verdict = self.outcome == "no-verdict"
        out = {"verdict": self.comparison.verdict,
               "headline": self.headline if no_verdict else self.comparison.reason(),
               "comparison": self.comparison.to_dict(), "record": self.record,
               "reference_record": self.reference_record,
               "drift": [asdict(r) for r in self.drift], "no_verdict": no_verdict}
        if self.registered is not None:
            out["divergence"] = self.registered.message() or "registered"
            # the reports read the registry's judgement from the comparison itself
            out["comparison"]["registered"] = bool(self.registered.registered
                                                   and self.registered.ok)
            out["findings"] = self.registered.findings()  # the covered rows, by finding
        return out


def not_expressible(case: Any, adapter: Any) -> str | None:
    """Why ``adapter`` is not run on ``case`` (it cannot load, the catalog skips it, it cannot
    express the case), or None; known before any fit."""
    return (adapter.unavailable() or (getattr(case, "skip", None) or {}).get(adapter.name)
            or adapter.supports(case))


def decide(case: Any, adapter: Any, reference: Any, *, data: Any = None,
           timeout: float | None = None, memory: int | None = None, registry: Any = None,
           baseline: Any = None, save_baseline: str | None = None,
           comparators: Any = None) -> Decision:
    """The outcome of ``adapter`` on ``case`` against ``reference`` (never raises for what an
    implementation does). ``timeout`` (seconds) overrides the case's limit for the candidate
    and the judge; ``registry`` (harness.core.divergences) and ``baseline`` (harness.core.baseline)
    are
    applied when given; ``comparators`` default to the built-in ones."""
    from harness.core import compare as cmp
    from harness.core import judge, protocol, runner

    missing = reference.unavailable() or reference.supports(case)
    if missing:
        return Decision("no-verdict", f"no verdict: reference {reference.name}: {missing}")
    why = not_expressible(case, adapter)
    if why:
        return Decision("skipped", f"{adapter.name}: {why}")
    ref = runner.fit_case(reference, case, data, memory=memory)
    cand = runner.fit_case(adapter, case, data, timeout=timeout, memory=memory)
    if runner.is_not_supported(cand):
        return Decision("skipped", f"{adapter.name}: {cand['error']}", record=cand)
    if save_baseline:
        from harness.core import baseline as bl

        bl.save_record(save_baseline, cand)
    judgement = None
    truth = getattr(reference, "is_truth", False)  # a certified case's exact answer: by LRE
    if truth:
        from harness.core.comparators.certified import CertifiedLRE

        comparators = (CertifiedLRE(),)
    elif not ref.get("error") and not cand.get("error") \
            and protocol.model_mismatch(case, cand) is None:
        judgement = judge.judge(case, ref, cand, data,
                                timeout=case.timeout if timeout is None else timeout)
    comp = cmp.compare_records(ref, cand, case, judgement=judgement,
                               comparators=comparators if comparators is not None
                               else cmp.BUILTIN)
    decision = Decision(comp.verdict, comp.reason(), comp, cand, ref)
    if comp.verdict == cmp.REFERENCE_FAILED:
        decision.outcome = "no-verdict"
        decision.headline = f"no verdict: {comp.error or 'the reference failed'}"
        return decision
    if baseline is not None:
        from harness.core import baseline as bl

        saved = baseline.record(adapter.name, case.id)
        decision.drift = [] if saved is None else bl.drift(saved, cand)
    decision.registered = _registered(registry, case, adapter, comp)
    reg = decision.registered
    if reg is not None and not reg.ok:
        decision.outcome = "disagreed"
        decision.registry_problem = "registered divergences do not match:\n" + reg.message()
    elif decision.drift:
        decision.outcome = "drift"
    elif reg is not None and reg.registered:
        covered = reg.covered
        decision.outcome = "xfail"
        decision.headline = (f"registered divergence ({len(covered)} quantities, e.g. "
                             f"{covered[0][0].name}): {_finding_text(reg.findings())}")
    return decision


def _finding_text(findings: list[dict[str, Any]]) -> str:
    """"finding ID: cause" of the first finding covering the item (a flat entry's reason
    alone), and the ids of the others."""
    first = findings[0]
    text = (f"finding {first['finding']}: " if first["finding"] else "") + first["cause"]
    others = [f["finding"] for f in findings[1:] if f["finding"]]
    return text + (f" (also finding {', '.join(others)})" if others else "")


def _registered(registry: Any, case: Any, adapter: Any, comp: Any) -> Any:
    """The registry's judgement of the item, or None when it has no entry for it or nothing
    failed that an entry could cover."""
    from harness.core import compare as cmp

    if registry is None or not registry.entries_for(case.id, adapter.name):
        return None
    if comp.verdict not in (cmp.DISAGREED, cmp.AGREED, cmp.CANDIDATE_BETTER):
        return None
    return registry.judge(case.id, adapter.name, comp.rows)
