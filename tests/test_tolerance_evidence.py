"""The evidence behind the tolerance policy (harness/core/tolerance.py, README "The tolerance
policy"):
lme4's own optimizers, refitted on every catalog case (r_scripts/optimizer_spread.R, output
committed as tests/references/optimizer_spread.json.gz), land within a fraction of what the policy
allows from lme4's default, except where an optimizer fails outright (a wrong optimum, named
below with the evidence that it is one). So the tolerances are no tighter than lme4's own
optimizer spread, and the measured margin is the one the docs quote.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from harness.core.catalog import load_catalog
from harness.core.compare import compare_records
from harness.core.tolerance import DEFAULT

ROOT = Path(__file__).resolve().parents[1]
SPREAD = ROOT / "tests" / "references" / "optimizer_spread.json.gz"
RECORDED = ROOT / "harness" / "references" / "lme4.json"
SCRIPT = "r_scripts/optimizer_spread.R"

#: (case id, optimizer) pairs that are optimizer failures, not spread: each reaches a criterion
#: higher than lme4's default by far more than the objective tolerance (checked below)
FAILURES = {
    ("sim_huge_offset-intercept-REML", "nlminbwrap"):
        "nlminb stops ~99 units above the optimum when y sits on a huge offset",
    ("sim_huge_offset-intercept-ML", "nlminbwrap"):
        "nlminb stops ~98 units above the optimum when y sits on a huge offset",
    ("Penicillin-plate-REML", "nlminbwrap"):
        "nlminb stops on the boundary (theta 6.8e-06, singular), 0.174 above the optimum",
    ("Penicillin-plate-ML", "nlminbwrap"):
        "nlminb stops on the boundary (theta 4.3e-06, singular), 0.082 above the optimum",
    ("Penicillin-plate-ML", "Nelder_Mead"):
        "Nelder-Mead stops at theta 0.028 (the optimum's is 0.125), 0.074 above the optimum",
}

TOLERANCE_SOURCE = ROOT / "harness" / "core" / "tolerance.py"
TOLERANCE_PAGE = ROOT / "docs" / "tolerance.md"


def _quoted(pattern: str, text: str, where: str) -> tuple[str, ...]:
    """The figures a document quotes, read from it (not restated here): the groups of
    ``pattern``'s first match, whitespace (line breaks) matching any run of it."""
    import re

    m = re.search(pattern.replace(" ", r"\s+"), text)
    assert m, f"{where} no longer quotes the evidence as {pattern!r}"
    return m.groups()


def documented_lmm_spread() -> tuple[float, str, str, float]:
    """What harness/core/tolerance.py's docstring quotes: the largest |difference| / allowed over
    all cases, its optimizer and case, and the largest among the other optimizers."""
    import harness.core.tolerance

    ratio, optimizer, case, others = _quoted(
        r"the largest \|difference\| / allowed was ([0-9.]+) \((\w+), the Satterthwaite df of "
        r"the intercept of ([\w-]+)\); the other optimizers stayed within ([0-9.]+)",
        harness.core.tolerance.__doc__ or "", "harness/core/tolerance.py's docstring")
    return float(ratio), optimizer, case, float(others)


def documented_lmm_percent() -> tuple[int, str, int]:
    """What docs/tolerance.md quotes of the same: the largest share in percent, its optimizer,
    and the other optimizers' largest in percent."""
    pct, optimizer, others = _quoted(
        r"The largest difference was (\d+)% of what is allowed \((\w+), the Satterthwaite df "
        r"of the intercept of [\w-]+\); every other optimizer stayed within (\d+)%",
        TOLERANCE_PAGE.read_text(encoding="utf-8"), "docs/tolerance.md")
    return int(pct), optimizer, int(others)


def _read_json(path: Path) -> dict:
    """A JSON file, gzip-compressed when its name ends in .gz (the committed spreads)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _spread() -> dict:
    return _read_json(SPREAD)


def _ratios(doc: dict):
    """(ratio, case id, optimizer, row name) for every compared row of every optimizer."""
    for cid, case in doc["cases"].items():
        for name, rec in case["optimizers"].items():
            comp = compare_records(case["default"], rec)
            assert comp.error is None, f"{cid}, {name}: {comp.error}"
            for row in comp.rows:
                if row.difference is None or not row.allowed:
                    continue
                yield abs(row.difference) / row.allowed, cid, name, row.name


def test_the_recording_covers_the_catalog_with_every_allfit_optimizer() -> None:
    doc = _spread()
    recorded = json.loads(RECORDED.read_text())["records"]
    catalog = load_catalog()
    large = {c.id for c in catalog if "large" in (c.tags or ())}
    # the hard shapes' optimizers disagree by design (a finding about lme4, not evidence for a
    # tolerance): r_scripts/optimizer_spread.R leaves them out as it leaves out InstEval
    hard = {c.id for c in catalog if "hard" in (c.tags or ())}
    glmm = {c.id for c in catalog if c.is_glmm}  # their spread: glmm_optimizer_spread.json.gz
    # certified cases are judged against their exact truth, not against lme4's spread
    certified = {c.id for c in catalog if "certified" in (c.tags or ())}
    assert large and hard and set(doc["cases"]) == ({c.id for c in catalog} - large - hard - glmm
                                                    - certified)
    assert set(doc["cases"]) <= set(recorded)
    assert doc["versions"]["lme4"] == json.loads(RECORDED.read_text())["versions"]["lme4"]
    for cid, case in doc["cases"].items():
        assert set(case["optimizers"]) == {
            "bobyqa", "Nelder_Mead", "nlminbwrap", "nmkbw", "optimx.L-BFGS-B",
            "nloptwrap.NLOPT_LN_NELDERMEAD", "nloptwrap.NLOPT_LN_BOBYQA"}, cid
        for name, rec in case["optimizers"].items():
            assert rec["error"] is None, f"{cid}, {name}: {rec['error']}"
            assert rec["case_id"] == cid and rec["impl"] == f"lme4:{name}"


def test_lme4s_optimizers_stay_well_inside_the_tolerances() -> None:
    ratios = [r for r in _ratios(_spread()) if (r[1], r[2]) not in FAILURES]
    worst = max(ratios)
    ratio, cid, name, row = worst
    where = f"{ratio:.3f} of what is allowed, in {row} of {cid} refitted with {name}"
    assert ratio < 1, f"an optimizer's spread exceeds the tolerance: {where}"
    # the docs (docs/tolerance.md, tolerance.py) quote this maximum: keep them true
    quoted, optimizer, case, quoted_others = documented_lmm_spread()
    assert ratio == pytest.approx(quoted, abs=5e-4), f"tolerance.py is stale: {where}"
    assert (cid, name, row) == (case, optimizer, "df_satterthwaite[(Intercept)]"), where
    others = max(r for r in ratios if r[2] != optimizer)
    assert others[0] == pytest.approx(quoted_others, abs=5e-4), f"tolerance.py is stale: {others}"
    assert documented_lmm_percent() == (round(100 * ratio), optimizer,
                                        round(100 * others[0])), "docs/tolerance.md is stale"


def test_every_ratio_over_the_tolerance_is_a_named_optimizer_failure() -> None:
    doc = _spread()
    over = {(cid, name) for ratio, cid, name, _ in _ratios(doc) if ratio >= 1}
    assert over == set(FAILURES), "exceptions not named, or named and no longer failing"
    for (cid, name), why in FAILURES.items():
        default = doc["cases"][cid]["default"]["objective"]
        other = doc["cases"][cid]["optimizers"][name]["objective"]
        allowed = DEFAULT.objective_allowed(default)
        assert other - default > allowed, (
            f"{cid}, {name} ({why}): criterion {other} vs default {default} (allowed "
            f"{allowed:.3g}): not a wrong optimum, so it must not be an exception")


@pytest.mark.needs_r
def test_the_script_reproduces_the_recording(tmp_path: Path) -> None:
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript is not on PATH: r_scripts/optimizer_spread.R not run")
    out = tmp_path / "spread.json"
    ids = ["Dyestuff-intercept-REML", "sleepstudy-intercept-ML"]
    proc = subprocess.run(["Rscript", SCRIPT, str(out), *ids], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    live, committed = _read_json(out), _spread()
    recorded = json.loads(RECORDED.read_text())["records"]
    assert set(live) == set(committed)
    assert set(live["versions"]) == set(committed["versions"])
    assert set(live["cases"]) == set(ids)
    for cid in ids:
        now, then = live["cases"][cid], committed["cases"][cid]
        assert set(now) == set(then)
        assert list(now["optimizers"]) == list(then["optimizers"])
        for name in ["default", *now["optimizers"]]:
            a = now[name] if name == "default" else now["optimizers"][name]
            b = then[name] if name == "default" else then["optimizers"][name]
            # the recording predates the record's open namespace for plugins ("extra") and the
            # negative binomial's nb_theta (null in an LMM's record)
            newer = ("extra", "nb_theta")
            assert [k for k in a if k not in newer] == [k for k in b if k not in newer], \
                f"{cid}, {name}: fields differ"
            assert list(a["fixef"]) == list(b["fixef"])
            assert [(r["grp"], r["var1"], r["var2"]) for r in a["varcorr"]] == \
                [(r["grp"], r["var1"], r["var2"]) for r in b["varcorr"]]
            assert len(a["theta"]) == len(b["theta"])
            assert compare_records(b, a).verdict == "agreed", compare_records(b, a).format_table()
        obj = recorded[cid]["objective"]
        assert now["default"]["objective"] == pytest.approx(obj, abs=DEFAULT.objective_allowed(obj))


# ----------------------------------------------------------------------------- GLMMs

GLMM_SPREAD = ROOT / "tests" / "references" / "glmm_optimizer_spread.json.gz"

#: (case id, optimizer) pairs where an allFit optimizer stopped short: its -2 logLik is higher
#: than lme4's default's by more than 1e-3 (checked below), so its spread is a failure, not noise
GLMM_FAILURES = {
    ("grouseticks-nested-ML", "optimx.L-BFGS-B"): "stops 0.0018 above the five that agree",
    ("Contraception-probit-ML", "bobyqa"): "stops 0.0084 above the default (both stages bobyqa)",
    ("sim_glmm_olre-olre-ML", "bobyqa"): "stops 0.017 above the default",
    ("sim_glmm_olre-olre-ML", "optimx.L-BFGS-B"): "stops 0.017 above the default",
    ("sim_glmm_olre-olre-ML", "nlminbwrap"): "stops 0.0032 above the default",
    ("sim_glmm_olre-olre-ML", "nloptwrap.NLOPT_LN_BOBYQA"): "stops 0.0015 above the default",
}
#: how the docs name the optimizer of the GLMMs' largest ratio
NELDER_MEAD = ("nloptwrap.NLOPT_LN_NELDERMEAD", "NLopt's Nelder-Mead")


def documented_glmm_spread() -> tuple[float, str, int, str]:
    """The GLMMs' largest ratio among the rest and its case as harness/core/tolerance.py's comment
    on GLMM quotes them, and as docs/tolerance.md quotes them (in percent)."""
    ratio, case = _quoted(r"stays inside these: at most ([0-9.]+) of what is allowed\n#: "
                          r"\(deviance of (\w+), NLopt's Nelder-Mead\)",
                          TOLERANCE_SOURCE.read_text(encoding="utf-8"),
                          "harness/core/tolerance.py's comment on GLMM")
    pct, page_case = _quoted(r"The largest difference is (\d+)% of what is allowed \(the "
                             r"deviance of (\w+), NLopt's Nelder-Mead\)",
                             TOLERANCE_PAGE.read_text(encoding="utf-8"), "docs/tolerance.md")
    return float(ratio), case, int(pct), page_case


def _glmm_ratios(doc: dict):
    from harness.core.tolerance import GLMM

    for cid, case in doc["cases"].items():
        for name, rec in case["optimizers"].items():
            if rec["error"] is not None or (cid, name) in GLMM_FAILURES:
                continue
            comp = compare_records(case["default"], rec, tol=GLMM)
            assert comp.error is None, f"{cid}, {name}: {comp.error}"
            for row in comp.rows:
                if row.difference is not None and row.allowed:
                    yield abs(row.difference) / row.allowed, cid, name, row.name


def test_glmm_recording_covers_the_glmm_cases() -> None:
    doc = _read_json(GLMM_SPREAD)
    catalog = load_catalog()
    glmm = {c.id for c in catalog if c.is_glmm and "large" not in c.tags}
    assert len(glmm) >= 20 and set(doc["cases"]) == glmm
    for cid, case in doc["cases"].items():
        assert case["default"]["error"] is None, cid
        assert len(case["optimizers"]) == 7, cid
        # an optimizer may fail outright (lme4's PIRLS stops with NaN or step-halving errors);
        # at least four of the seven land on every case
        assert sum(r["error"] is None for r in case["optimizers"].values()) >= 4, cid


def test_glmm_optimizers_stay_inside_the_glmm_tolerances() -> None:
    ratios = list(_glmm_ratios(_read_json(GLMM_SPREAD)))
    ratio, cid, name, row = max(ratios)
    where = f"{ratio:.3f} of what is allowed, in {row} of {cid} refitted with {name}"
    assert ratio < 1, f"an optimizer's spread exceeds the GLMM tolerance: {where}"
    quoted, case, pct, page_case = documented_glmm_spread()
    assert ratio == pytest.approx(quoted, abs=5e-4), f"tolerance.py is stale: {where}"
    assert (cid.split("-")[0], name, row) == (case, NELDER_MEAD[0], "deviance"), where
    assert (pct, page_case) == (round(100 * ratio), case), f"docs/tolerance.md is stale: {where}"


def test_glmm_exceptions_are_optimizers_that_stopped_short() -> None:
    doc = _read_json(GLMM_SPREAD)
    for (cid, name), why in GLMM_FAILURES.items():
        case = doc["cases"][cid]
        gap = case["optimizers"][name]["objective"] - case["default"]["objective"]
        assert gap > 1e-3, f"{cid}, {name} ({why}): only {gap:.3g} above the default"


# ----------------------------------------------------------------------------- GLMMs: PIRLS

GLMM_PIRLS = ROOT / "tests" / "references" / "glmm_pirls_spread.json.gz"
#: the case whose default fit stops short of its own tight one (criterion 0.0045 above it) with
#: its Hessian SEs collapsed (z = 1180 for the intercept; 47 times z's allowance from the tight
#: fit): lme4's default is wrong there, so its move is no measure of noise
PIRLS_SHORT = "sim_glmm_olre-olre-ML"


def _pirls_rows(doc: dict):
    from harness.core.tolerance import GLMM

    for cid, case in doc["cases"].items():
        comp = compare_records(case["default"], case["tight"], tol=GLMM)
        assert comp.error is None, f"{cid}: {comp.error}"
        for row in comp.rows:
            if row.difference is not None and row.allowed:
                yield cid, row


def test_glmm_pirls_recording_covers_the_glmm_cases_with_their_inference() -> None:
    doc = _read_json(GLMM_PIRLS)
    glmm = {c.id for c in load_catalog() if c.is_glmm and "large" not in c.tags}
    assert set(doc["cases"]) == glmm and doc["tolPwrss"] == 1e-10
    for cid, case in doc["cases"].items():
        for rec in (case["default"], case["tight"]):
            assert rec["error"] is None, cid
            assert rec["coef_tests"] and rec["confint"], cid
            assert {r["type"] for r in rec["predictions"]} == {"link", "response"}, cid
        assert case["tight"]["objective"] <= case["default"]["objective"] + 1e-6, cid


def test_the_glmm_link_prediction_allowance_is_twice_lme4s_pirls_move() -> None:
    """GLMM_PREDICT_LINK_ABS is SINGULAR_MARGIN times the largest move of a link-scale
    prediction when lme4's PIRLS is converged further, rounded up to one significant figure,
    and harness/core/tolerance.py quotes that move and its case."""
    import math

    from harness.core.tolerance import GLMM_PREDICT_LINK_ABS, SINGULAR_MARGIN

    moves = [(abs(r.difference), cid) for cid, r in _pirls_rows(_read_json(GLMM_PIRLS))
             if cid != PIRLS_SHORT and r.name.startswith("predict[")
             and not r.name.startswith("predict[response")]
    move, case = max(moves)
    quoted, quoted_case = _quoted(r"predictions by up to ([0-9.e-]+) \((\w+)-?\w*;",
                                  TOLERANCE_SOURCE.read_text(encoding="utf-8"),
                                  "harness/core/tolerance.py's comment on GLMM_PREDICT_LINK_ABS")
    assert move == pytest.approx(float(quoted), rel=5e-3) and case.startswith(quoted_case)
    step = 10.0 ** math.floor(math.log10(SINGULAR_MARGIN * move))
    assert GLMM_PREDICT_LINK_ABS == pytest.approx(math.ceil(SINGULAR_MARGIN * move / step) * step)


def test_lme4s_pirls_move_stays_inside_the_glmm_tolerances() -> None:
    """Every compared quantity (the inference included) moves less than its GLMM allowance
    when lme4's PIRLS is converged further, on every case but the one whose default stops
    short; there the Wald quantities move far beyond (its default's SEs are wrong)."""
    rows = list(_pirls_rows(_read_json(GLMM_PIRLS)))
    ratio, cid, name = max((abs(r.difference) / r.allowed, cid, r.name) for cid, r in rows
                           if cid != PIRLS_SHORT)
    assert ratio < 1, f"{name} of {cid} moves {ratio:.3f} of its allowance"
    short = {r.name.split("[")[0] for cid, r in rows
             if cid == PIRLS_SHORT and abs(r.difference) > r.allowed}
    assert {"z_wald", "ci_wald", "fixef_se"} <= short


# ----------------------------------------------------------------------------- singular fits: BLAS

BLAS_SPREAD = ROOT / "tests" / "references" / "blas_spread.json.gz"

#: the quantities (row-name prefixes) that have a singular-fit rule in harness/core/tolerance.py
SINGULAR_RULES = ("ranef", "ranef_sd", "df_satterthwaite")


def _blas() -> dict:
    return _read_json(BLAS_SPREAD)


def _blas_ratios(doc: dict, tol):
    """(ratio, case id, reference configuration, candidate configuration, row name) for every
    compared row of every ordered pair of BLAS configurations of every case, under ``tol``."""
    for cid, case in doc["cases"].items():
        recs = case["records"]
        for a, ref in recs.items():
            for b, cand in recs.items():
                if a == b:
                    continue
                comp = compare_records(ref, cand, tol=tol)
                assert comp.error is None, f"{cid}, {a} vs {b}: {comp.error}"
                for row in comp.rows:
                    if row.difference is not None and row.allowed:
                        yield abs(row.difference) / row.allowed, cid, a, b, row.name


def _quantity(row_name: str) -> str:
    return row_name.split("[", 1)[0]


def test_the_blas_recording_covers_the_singular_lmm_cases() -> None:
    doc = _blas()
    recorded = json.loads(RECORDED.read_text())["records"]
    certified = {c.id for c in load_catalog() if "certified" in c.tags}  # judged by the truth
    singular = {cid for cid, r in recorded.items() if r.get("singular") and not r.get("family")
                and cid not in certified}
    assert len(singular) >= 10 and set(doc["cases"]) == singular
    assert doc["versions"]["lme4"] == json.loads(RECORDED.read_text())["versions"]["lme4"]
    ran = [c for c in doc["configurations"] if c["status"] == "ok"]
    # the harness's own configuration first (the detected kernel, one thread:
    # harness/core/rbridge.py)
    from harness.core.rbridge import R_BLAS_THREADS

    assert doc["reference_config"] == ran[0]["name"] == f"auto-{R_BLAS_THREADS}"
    assert {c["OPENBLAS_NUM_THREADS"] for c in ran} == {1, 2}
    assert len({c["core"] for c in ran}) >= 6, "too few distinct kernels ran"
    for c in doc["configurations"]:  # a kernel that did not run says why
        assert c["status"] == "ok" or c["message"] or c["fell_back"], c
    for cid, case in doc["cases"].items():
        assert set(case["records"]) == {c["name"] for c in ran}, cid
        for name, rec in case["records"].items():
            assert rec["error"] is None and rec["case_id"] == cid and rec["singular"], (cid, name)
            assert rec["coef_tests"], (cid, name)


def test_the_recorded_references_are_one_of_the_measured_configurations() -> None:
    """The machine that recorded lme4.json is among those measured: on the two cases of issue
    22 one configuration reproduces its θ and its df to the last digit (so the spread is the
    spread of the recorded reference too, not of this machine alone)."""
    doc = _blas()
    recorded = json.loads(RECORDED.read_text())["records"]
    for cid in ("sim_kb07_maximal-maximal-ML", "sim_badscale3-corr3-REML"):
        same = [name for name, rec in doc["cases"][cid]["records"].items()
                if rec["theta"] == recorded[cid]["theta"]
                and rec["coef_tests"] == recorded[cid]["coef_tests"]]
        assert same, f"{cid}: no configuration reproduces the recording"
        assert all(name.endswith("-1") for name in same), same


def test_lme4s_blas_spread_at_singular_fits_is_what_the_tolerance_module_documents() -> None:
    """Measured under the policy without its singular-fit rules: per quantity with a rule, the
    largest |difference| / allowed over every pair of configurations is the figure that
    harness/core/tolerance.py documents (BLAS_SPREAD_AT_SINGULAR) and bases the rule on."""
    from harness.core.tolerance import BLAS_SPREAD_AT_SINGULAR

    worst: dict[str, tuple] = {}
    for r in _blas_ratios(_blas(), DEFAULT.regular()):
        q = _quantity(r[4])
        if q in SINGULAR_RULES and r > worst.get(q, (0,)):
            worst[q] = r
    assert set(worst) == set(SINGULAR_RULES) == set(BLAS_SPREAD_AT_SINGULAR) - {"df_kr"}
    from harness.core.tolerance import SINGULAR_MARGIN

    for q, (ratio, cid, a, b, name) in worst.items():
        where = f"{ratio:.4g} of the regular allowance, {name} of {cid}, {a} vs {b}"
        # a rule is there because the regular allowance does not cover the spread with the margin
        assert ratio * SINGULAR_MARGIN > 1, f"{q} needs no singular-fit rule: {where}"
        assert ratio == pytest.approx(BLAS_SPREAD_AT_SINGULAR[q], rel=5e-3), \
            f"the docs are stale: {where}"


def test_the_singular_fit_allowances_cover_the_spread_with_the_stated_margin() -> None:
    """Under the policy as it is, every compared row of every pair of configurations is within
    its allowance, and still is with the singular-fit allowances divided by SINGULAR_MARGIN
    (the margin they are documented to have); each is what the documented spread times the
    margin asks, and no wider than the next round figure above that."""
    from harness.core.tolerance import BLAS_SPREAD_AT_SINGULAR, SINGULAR_MARGIN

    doc = _blas()
    ratio, cid, a, b, name = max(_blas_ratios(doc, DEFAULT))
    assert ratio < 1, f"lme4's BLAS spread exceeds the policy: {name} of {cid}, {a} vs {b}"
    thin = replace(DEFAULT,
                   ranef_condsd_units_singular=DEFAULT.ranef_condsd_units_singular
                   / SINGULAR_MARGIN,
                   ranef_sd_rel_singular=DEFAULT.ranef_sd_rel_singular / SINGULAR_MARGIN)
    ratio, cid, a, b, name = max(_blas_ratios(doc, thin))
    assert ratio <= 1, f"less than the stated margin: {name} of {cid}, {a} vs {b} ({ratio:.3f})"
    # each singular allowance = the regular one x the documented spread x the margin, rounded up
    # to one significant figure
    for q, singular, regular in (
            ("ranef", DEFAULT.ranef_condsd_units_singular, DEFAULT.ranef_condsd_units),
            ("ranef_sd", DEFAULT.ranef_sd_rel_singular, DEFAULT.ranef_sd_rel)):
        needed = regular * BLAS_SPREAD_AT_SINGULAR[q] * SINGULAR_MARGIN
        assert needed <= singular <= _round_up(needed), (q, needed, singular)


def _round_up(x: float) -> float:
    """x rounded up to one significant figure (0.028 -> 0.03)."""
    import math

    e = math.floor(math.log10(x))
    return math.ceil(x / 10**e) * 10**e


def test_satterthwaite_df_at_singular_fits_are_left_out_because_the_spread_is_meaningless() -> None:
    """lmerTest's Satterthwaite df move at a fit singular in a vector-valued term by more than
    the value itself (an allowance covering that would accept anything): the policy leaves them
    out there, with the reason on the row. At a scalar term's boundary they do not move, so they
    are compared there; Kenward-Roger's df and SEs do not move either, so they keep the regular
    allowance, which covers them with the margin."""
    from harness.core.comparators.coef_tests import SINGULAR_SATTERTHWAITE
    from harness.core.comparators.theta import singular_in_vector_term
    from harness.core.tolerance import BLAS_SPREAD_AT_SINGULAR, SINGULAR_MARGIN

    doc = _blas()
    vector = {cid for cid, case in doc["cases"].items()
              if singular_in_vector_term(case["records"][doc["reference_config"]])}
    assert len(vector) == 5 and len(doc["cases"]) - len(vector) == 6  # as tolerance.py says
    for cid, case in doc["cases"].items():
        sat = max(s["relative"] for name, s in case["spread"].items()
                  if name.startswith("df_satterthwaite["))
        assert cid in vector or sat < 1e-12, f"{cid}: scalar-singular df moved by {sat:.3g}"
    relative = {q: max((s["relative"] or 0.0) for case in doc["cases"].values()
                       for name, s in case["spread"].items() if name.startswith(q + "["))
                for q in ("df_satterthwaite", "df_kr", "se_kr")}
    assert relative["df_satterthwaite"] > 1  # more than a factor of two between two kernels
    assert DEFAULT.df_satterthwaite_singular_rel is None
    assert BLAS_SPREAD_AT_SINGULAR["df_satterthwaite"] * DEFAULT.df_rel > 1
    assert relative["df_kr"] == pytest.approx(BLAS_SPREAD_AT_SINGULAR["df_kr"] * DEFAULT.df_rel,
                                              abs=1e-10)
    assert relative["df_kr"] * SINGULAR_MARGIN <= DEFAULT.df_rel
    assert relative["se_kr"] * SINGULAR_MARGIN <= DEFAULT.fixef_se_rel
    case = doc["cases"]["sim_badscale3-corr3-REML"]["records"]
    comp = compare_records(case["auto-1"], case["Prescott-1"])
    rows = {r.name: r for r in comp.rows}
    assert comp.verdict == "agreed", comp.format_table()
    sat = rows["df_satterthwaite[(Intercept)]"]
    assert sat.ok is None and sat.note == SINGULAR_SATTERTHWAITE and abs(sat.difference) > 5
    assert rows["df_kr[(Intercept)]"].ok and rows["p_satterthwaite[(Intercept)]"].ok


@pytest.mark.needs_r
def test_the_blas_script_runs_a_case_under_two_configurations(tmp_path: Path) -> None:
    """r_scripts/blas_spread.R on one small case: the recording's shape, and its configurations'
    kernels as OpenBLAS reported them."""
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript is not on PATH: r_scripts/blas_spread.R not run")
    out = tmp_path / "blas.json"
    cid = "Dyestuff2-intercept-ML"
    proc = subprocess.run(["Rscript", "r_scripts/blas_spread.R", str(out), cid], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "BLAS_SPREAD_CORETYPES": "auto,Prescott"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    live, committed = _read_json(out), _blas()
    assert set(live) == set(committed) and set(live["cases"]) == {cid}
    assert [c["name"] for c in live["configurations"]] == ["auto-1", "auto-2", "Prescott-1",
                                                           "Prescott-2"]
    assert live["configurations"][2]["core"] == "Prescott"
    for name, rec in live["cases"][cid]["records"].items():
        then = committed["cases"][cid]["records"][name]
        assert compare_records(then, rec).verdict == "agreed", name
