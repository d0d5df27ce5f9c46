"""Cross-evaluation and diagnostics against lme4's numbers and closed forms.

lme4's numbers (records, its deviance function at probe θs, allFit) come from
r_scripts/allfit.R run as a script (tests/references/crosseval_sleepstudy.json); the dense
objective below is the marginal likelihood written from the equations, independent of the
code under test.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.core import crosseval as cx
from harness.core import diagnostics as dg
from harness.core.datasets import load_dataset
from harness.core.errors import JudgeError
from harness.core.judge import theta as rt
from mixedref.engines import PLSObjective
from mixedref.errors import MixedrefError
from mixedref.frontend.design import ModelFrame, ReTerm
from mixedref.frontend.reterm import psd_cholesky

REFS = json.loads((Path(__file__).parent / "references" / "crosseval_sleepstudy.json")
                  .read_text())["cases"]


def sleepstudy_frame(uncorrelated: bool = False) -> ModelFrame:
    """Reaction ~ Days + (Days | Subject) (or Days || Subject), matrices built by hand."""
    d = load_dataset("sleepstudy")
    days = d["Days"].to_numpy(float)
    subj = d["Subject"].astype("category")
    codes = subj.cat.codes.to_numpy().astype(np.int64)
    levels = tuple(str(v) for v in subj.cat.categories)
    X = np.column_stack([np.ones_like(days), days])
    if uncorrelated:
        terms = (ReTerm("Subject", ("(Intercept)",), X[:, :1], codes, levels),
                 ReTerm("Subject", ("Days",), X[:, 1:], codes, levels))
    else:
        terms = (ReTerm("Subject", ("(Intercept)", "Days"), X, codes, levels),)
    return ModelFrame("Reaction ~ Days + (Days | Subject)", d["Reaction"].to_numpy(float), X,
                      ("(Intercept)", "Days"), terms, "Reaction")


def dense_objective(frame: ModelFrame, theta: np.ndarray, REML: bool) -> float:
    """-2 log-likelihood profiled over β and σ, from V = Z Λ Λᵀ Zᵀ + I (n x n, dense)."""
    n, p = frame.X.shape
    ZL = []
    k = 0
    for t in frame.reterms:
        T = np.zeros((t.q, t.q))
        cells = [(r, c) for c in range(t.q) for r in range(c, t.q)]  # column-major lower
        for v, (i, j) in zip(theta[k:k + t.ntheta], cells, strict=True):
            T[i, j] = v
        k += t.ntheta
        ZL.append(t.Z.toarray() @ np.kron(np.eye(t.nlevels), T))
    ZL = np.hstack(ZL)
    V = ZL @ ZL.T + np.eye(n)
    Vi = np.linalg.inv(V)
    XtViX = frame.X.T @ Vi @ frame.X
    beta = np.linalg.solve(XtViX, frame.X.T @ Vi @ frame.y)
    r = frame.y - frame.X @ beta
    dof = n - p if REML else n
    s2 = r @ Vi @ r / dof
    out = dof * (math.log(2 * math.pi * s2) + 1) + np.linalg.slogdet(V)[1]
    return out + (np.linalg.slogdet(XtViX)[1] if REML else 0.0)


def perturbed_record(ref: dict, impl: str, factors: tuple[float, ...]) -> dict:
    """A record as an early-stopping optimizer would give it: lme4's σ, varcorr rebuilt from
    θ·factors (the Cholesky template times σ)."""
    th = np.asarray(ref["theta"]) * np.asarray(factors)
    s = ref["sigma"]
    L = np.array([[th[0], 0.0], [th[1], th[2]]]) * s
    S = L @ L.T
    rec = copy.deepcopy(ref)
    rec.update(impl=impl, theta=None, objective=None)
    rec["varcorr"] = [
        {"grp": "Subject", "var1": "(Intercept)", "var2": None, "vcov": S[0, 0],
         "sdcor": math.sqrt(S[0, 0])},
        {"grp": "Subject", "var1": "Days", "var2": None, "vcov": S[1, 1],
         "sdcor": math.sqrt(S[1, 1])},
        {"grp": "Subject", "var1": "(Intercept)", "var2": "Days", "vcov": S[0, 1],
         "sdcor": S[0, 1] / math.sqrt(S[0, 0] * S[1, 1])},
        {"grp": "Residual", "var1": None, "var2": None, "vcov": s * s, "sdcor": s},
    ]
    return rec


def _case(case_id: str) -> SimpleNamespace:
    r = REFS[case_id]
    return SimpleNamespace(id=case_id, formula=r["formula"], REML=r["REML"], dataset="sleepstudy")


# ---- θ from variance components ------------------------------------------------------------

@pytest.mark.parametrize("case_id", sorted(REFS))
def test_theta_from_lme4_varcorr_is_lme4_theta(case_id):
    ref = REFS[case_id]["record"]
    layout = rt.layout_from_varcorr(ref["varcorr"])
    np.testing.assert_allclose(rt.theta_from_varcorr(ref, layout), ref["theta"], rtol=1e-9,
                               atol=1e-12)


def test_double_bar_groups_are_matched_by_columns():
    ref = REFS["sleepstudy-uncorrelated-REML"]["record"]
    layout = [rt.TermLayout("Subject", ("(Intercept)",)), rt.TermLayout("Subject", ("Days",))]
    assert [r["grp"] for r in ref["varcorr"]][:2] == ["Subject", "Subject.1"]
    np.testing.assert_allclose(rt.theta_from_varcorr(ref, layout), ref["theta"], rtol=1e-9)
    # the same rows listed in the other order still land on the right terms
    swapped = dict(ref, varcorr=[ref["varcorr"][1], ref["varcorr"][0], ref["varcorr"][2]])
    np.testing.assert_allclose(rt.theta_from_varcorr(swapped, layout), ref["theta"], rtol=1e-9)
    assert rt.layout_from_varcorr(ref["varcorr"]) == layout


def test_theta_names_follow_lme4():
    t = rt.TermLayout("Subject", ("(Intercept)", "Days"))
    assert t.theta_names() == ["Subject.(Intercept)", "Subject.Days.(Intercept)",
                               "Subject.Days"]


@pytest.mark.parametrize("S", [
    np.array([[4.0, 0.0], [0.0, 0.0]]),  # zero slope variance
    np.array([[4.0, 6.0], [6.0, 9.0]]),  # correlation +1
    np.array([[4.0, -6.0], [-6.0, 9.0]]),  # correlation -1
    np.array([[0.0, 0.0], [0.0, 9.0]]),  # zero intercept variance
    np.zeros((3, 3)),
])
def test_psd_cholesky_handles_singular_blocks(S):
    L = psd_cholesky(S)
    np.testing.assert_allclose(L @ L.T, S, atol=1e-12)
    assert np.all(np.diag(L) >= 0) and np.allclose(L, np.tril(L))


def test_correlation_printed_as_one_still_gives_a_factor():
    # |ρ| slightly above 1 from rounding the printed numbers must not break the conversion
    rows = [{"grp": "g", "var1": "a", "var2": None, "vcov": 4.0, "sdcor": 2.0},
            {"grp": "g", "var1": "b", "var2": None, "vcov": 9.0, "sdcor": 3.0},
            {"grp": "g", "var1": "a", "var2": "b", "vcov": 6.0000001, "sdcor": 1.0},
            {"grp": "Residual", "var1": None, "var2": None, "vcov": 1.0, "sdcor": 1.0}]
    th = rt.theta_from_varcorr({"varcorr": rows}, [rt.TermLayout("g", ("a", "b"))])
    np.testing.assert_allclose(th, [2.0, 3.0, 0.0], atol=1e-6)


def test_missing_group_is_named():
    ref = REFS["sleepstudy-slopes-ML"]["record"]
    with pytest.raises(JudgeError, match="Batch"):
        rt.theta_from_varcorr(ref, [rt.TermLayout("Batch", ("(Intercept)",))])


# ---- the common objective against lme4's devfun ----------------------------------------------

@pytest.mark.parametrize("case_id", sorted(REFS))
def test_objective_matches_lme4_devfun_at_probes(case_id):
    ref = REFS[case_id]
    frame = sleepstudy_frame("||" in ref["formula"])
    f = PLSObjective(frame, ref["REML"])
    for name, probe in ref["probes"].items():
        th = np.asarray(probe["theta"])
        assert f(th) == pytest.approx(probe["objective"], rel=1e-9, abs=1e-7), name
        assert dense_objective(frame, th, ref["REML"]) == pytest.approx(
            probe["objective"], rel=1e-9, abs=1e-7), name


# ---- cross_evaluate ------------------------------------------------------------------------

def test_cross_evaluate_names_better_estimate_and_gap():
    case = _case("sleepstudy-slopes-ML")
    ref = REFS[case.id]
    lme4 = ref["record"]
    poor = perturbed_record(lme4, "poor", (1.3, 1.0, 0.7))
    frame = sleepstudy_frame()
    cross = cx.cross_evaluate(case, {"lme4": lme4, "poor": poor},
                              objective=PLSObjective(frame, False),
                              layout=rt.layout_from_varcorr(lme4["varcorr"]))
    assert cross.best == "lme4" and cross.reference == "lme4"
    expected = ref["probes"]["perturbed"]["objective"] - ref["probes"]["optimum"]["objective"]
    assert cross.gap_of("poor") == pytest.approx(expected, rel=1e-6)
    assert cross.gap_of("lme4") == 0.0
    assert cross.disagree()
    assert any("poor misses the best deviance" in f for f in cross.findings)
    assert not any("Finding about lme4" in f for f in cross.findings)
    # lme4's reported objective and its θ give the same number: no inconsistency note
    assert cross.estimates["lme4"].notes == []


def test_candidate_below_lme4_is_a_finding_about_lme4():
    case = _case("sleepstudy-slopes-REML")
    good = REFS[case.id]["record"]
    bad_lme4 = perturbed_record(good, "lme4", (1.0, 1.0, 0.9))
    cand = dict(good, impl="mixedref")
    cross = cx.cross_evaluate(case, {"lme4": bad_lme4, "mixedref": cand},
                              objective=PLSObjective(sleepstudy_frame(), True),
                              layout=rt.layout_from_varcorr(good["varcorr"]))
    assert cross.best == "mixedref"
    assert cross.findings and cross.findings[0].startswith("Finding about lme4: mixedref")
    assert "not a failure of mixedref" in cross.findings[0]


def test_failed_and_inconsistent_records_are_kept_with_notes():
    case = _case("sleepstudy-slopes-ML")
    lme4 = REFS[case.id]["record"]
    failed = {"impl": "broken", "error": "boom", "varcorr": []}
    liar = dict(lme4, impl="liar", objective=lme4["objective"] - 5.0)
    cross = cx.cross_evaluate(case, {"lme4": lme4, "broken": failed, "liar": liar},
                              objective=PLSObjective(sleepstudy_frame(), False),
                              layout=rt.layout_from_varcorr(lme4["varcorr"]))
    assert cross.estimates["broken"].objective is None
    assert "fit failed: boom" in cross.estimates["broken"].notes
    assert any("inconsistent" in n for n in cross.estimates["liar"].notes)
    json.dumps(cross.to_dict())


def test_broken_objective_gives_error_not_exception():
    case = _case("sleepstudy-slopes-ML")
    lme4 = REFS[case.id]["record"]

    def factory(formula, data, REML):
        raise MixedrefError("no engine")

    cross = cx.cross_evaluate(case, {"lme4": lme4}, data=None, objective_factory=factory,
                              layout=rt.layout_from_varcorr(lme4["varcorr"]))
    assert "no engine" in cross.error and cross.best is None


# ---- diagnostics -----------------------------------------------------------------------------

def test_gradient_small_at_optimum_and_large_when_stopped_early():
    ref = REFS["sleepstudy-slopes-ML"]
    f = PLSObjective(sleepstudy_frame(), False)
    lower = dg.theta_lower(rt.layout_from_varcorr(ref["record"]["varcorr"]))
    at_opt = np.linalg.norm(dg.fd_gradient(f, ref["probes"]["optimum"]["theta"], lower))
    off = np.linalg.norm(dg.fd_gradient(f, ref["probes"]["perturbed"]["theta"], lower))
    assert at_opt < 0.05 and off > 10


def test_boundary_report_names_zero_variance_and_unit_correlation():
    ref = REFS["sleepstudy-slopes-ML"]
    layout = rt.layout_from_varcorr(ref["record"]["varcorr"])
    assert dg.boundary_report(ref["probes"]["optimum"]["theta"], layout) == []
    zero = dg.boundary_report(ref["probes"]["zero_slope"]["theta"], layout)
    assert any("Days" in z for z in zero)
    corr = dg.boundary_report(ref["probes"]["corr_plus1"]["theta"], layout)
    assert any("correlation" in c and "+1.000000" in c for c in corr)


def test_segment_profile_hits_both_estimates():
    ref = REFS["sleepstudy-slopes-ML"]
    f = PLSObjective(sleepstudy_frame(), False)
    a, b = ref["probes"]["optimum"], ref["probes"]["perturbed"]
    prof = dg.segment_profile(f, a["theta"], b["theta"])
    t = np.asarray(prof["t"])
    y = np.asarray(prof["objective"])
    assert y[t == 0][0] == pytest.approx(a["objective"], rel=1e-9)
    assert y[t == 1][0] == pytest.approx(b["objective"], rel=1e-9)
    assert t.min() < 0 and t.max() > 1


def test_marginal_covariance_is_the_closed_form_for_one_subject():
    frame = sleepstudy_frame()
    th = np.array([0.9, 0.1, 0.2])
    sigma = 25.0
    layout = [rt.TermLayout("Subject", ("(Intercept)", "Days"))]
    t = frame.reterms[0]
    rows = np.flatnonzero(t.codes == 0)
    V = dg.marginal_covariance(th, sigma, layout, [t.X], [t.codes], rows)
    days = t.X[rows, 1]
    T = np.array([[0.9, 0.0], [0.1, 0.2]])
    S = T @ T.T  # Σ/σ²: var0, cov, var1
    expected = sigma**2 * (S[0, 0] + S[0, 1] * (days[:, None] + days[None, :])
                           + S[1, 1] * np.outer(days, days) + np.eye(days.size))
    np.testing.assert_allclose(V, expected, rtol=1e-12)


def test_objective_failing_at_an_estimate_makes_the_ranking_inconclusive():
    case = _case("sleepstudy-slopes-ML")
    lme4 = REFS[case.id]["record"]
    poor = perturbed_record(lme4, "poor", (1.3, 1.0, 0.7))
    f = PLSObjective(sleepstudy_frame(), False)
    lme4_theta = np.asarray(lme4["theta"])

    def objective(theta):  # an engine that breaks down exactly at lme4's estimate
        return math.inf if np.allclose(theta, lme4_theta, rtol=1e-6) else f(theta)

    cross = cx.cross_evaluate(case, {"lme4": lme4, "poor": poor}, objective=objective,
                              layout=rt.layout_from_varcorr(lme4["varcorr"]))
    assert not cross.conclusive
    assert cross.findings[0].startswith("Inconclusive") and "lme4" in cross.findings[0]
    assert cross.estimates["lme4"].objective is None


def _module_sources(module: object) -> dict[str, str]:
    path = Path(module.__file__)  # type: ignore[attr-defined]
    files = sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
    return {f.name: f.read_text(encoding="utf-8") for f in files}


def test_the_judge_and_the_cross_evaluation_have_one_home_each() -> None:
    """The cross-evaluation ranks what the judge evaluates: it uses the judge (by import); the
    judge never reaches back, neither by import nor by a ``harness.core.crosseval:`` call."""
    import ast

    import harness.core.judge

    for name, text in _module_sources(harness.core.judge).items():
        imported = {n.module for n in ast.walk(ast.parse(text))
                    if isinstance(n, ast.ImportFrom) and n.module} | {
            a.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Import)
            for a in n.names}
        assert not any(m.startswith("harness.core.crosseval") for m in imported), name
        assert "harness.core.crosseval" not in text, name
    assert "harness.core.judge:" not in _module_sources(cx)["crosseval.py"]
