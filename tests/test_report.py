"""The discrepancy report: a deliberately poor implementation (a user's fit returning a θ its
optimizer stopped short of) must be named as such, with the objective gap computed
independently (dense marginal likelihood at both θs, and lme4's own devfun); every
disagreement in report.json must have its tables and plots in index.html; report.md carries
the summary table; the page renders in headless Chromium without console errors."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_crosseval import REFS, dense_objective, perturbed_record, sleepstudy_frame

from harness.commands.report import write_report
from harness.core import judge
from harness.core.compare import compare_records
from harness.core.datasets import load_dataset
from harness.core.record import normalize_record
from mixedref.engines import PLSObjective

CHROMIUM = "/usr/bin/chromium"


def _case(case_id: str) -> SimpleNamespace:
    r = REFS[case_id]
    return SimpleNamespace(id=case_id, dataset="sleepstudy", spec=case_id.split("-")[1],
                           formula=r["formula"], REML=r["REML"], method="ML", notes="",
                           expect={}, xfail={}, skip={}, tags=[], timeout=60)


def _results() -> list[dict]:
    data = load_dataset("sleepstudy")
    out = []
    for case_id, factors in (("sleepstudy-slopes-ML", (1.3, 1.0, 0.7)),
                             ("sleepstudy-slopes-REML", None)):
        case = _case(case_id)
        lme4 = copy.deepcopy(REFS[case_id]["record"])
        lme4["seconds"] = 0.014
        records = {"lme4": lme4}
        if factors:  # a user's implementation whose optimizer stopped short
            poor = perturbed_record(lme4, "poor-optimizer", factors)
            poor["seconds"] = 0.002
            records["poor-optimizer"] = poor
        records["copycat"] = dict(copy.deepcopy(lme4), impl="copycat", seconds=0.02)
        # as the runner gives them: normalized (plain floats, every field present)
        records = {k: normalize_record(r, k, case_id) for k, r in records.items()}
        comparisons = {k: compare_records(lme4, r, case) for k, r in records.items()
                       if k != "lme4"}
        out.append({"case": case, "records": records, "comparisons": comparisons, "data": data})
    return out


def _write(tmp_path: Path, **kw) -> tuple[dict, str, str]:
    frame = sleepstudy_frame()
    kw.setdefault("allfit", False)
    paths = write_report(_results(), tmp_path,
                         model_builder=lambda formula, data: frame,
                         objective_factory=lambda formula, data, REML: PLSObjective(frame, REML),
                         **kw)
    report = json.loads(paths["json"].read_text())
    return report, paths["md"].read_text(), paths["html"].read_text()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report, md, html = _write(out)
    return out, report, md, html


def test_report_names_better_estimate_and_gap(written):
    _, report, _, _ = written
    case = next(c for c in report["cases"] if c["case"]["id"] == "sleepstudy-slopes-ML")
    assert case["disagreement"] and case["verdict"] == "disagreed"
    cross = case["crosseval"]
    assert cross["best"] == "lme4" and cross["criterion"] == "deviance"
    # the gap, independently: dense marginal likelihood at both θ, and lme4's devfun
    frame = sleepstudy_frame()
    lme4_theta = np.asarray(REFS["sleepstudy-slopes-ML"]["record"]["theta"])
    poor_theta = lme4_theta * np.array([1.3, 1.0, 0.7])
    dense_gap = dense_objective(frame, poor_theta, False) - dense_objective(frame, lme4_theta,
                                                                           False)
    probes = REFS["sleepstudy-slopes-ML"]["probes"]
    lme4_gap = probes["perturbed"]["objective"] - probes["optimum"]["objective"]
    gap = cross["estimates"]["poor-optimizer"]["gap"]
    assert gap == pytest.approx(dense_gap, rel=1e-6)
    assert gap == pytest.approx(lme4_gap, rel=1e-6)
    assert cross["estimates"]["copycat"]["gap"] == pytest.approx(0.0, abs=1e-9)
    assert any(f.startswith("poor-optimizer misses the best deviance") for f in
               cross["findings"])
    # diagnostics: the poor estimate is not a stationary point, lme4's is
    grads = {k: v["gradient_norm_free"] for k, v in case["diagnostics"]["estimates"].items()}
    assert grads["poor-optimizer"] > 100 * grads["lme4"]


def test_flat_disagreement_is_explained(tmp_path):
    results = _results()[1:]  # the REML case, where copycat equals lme4
    cop = results[0]["records"]["copycat"]
    cop["fixef"] = {k: v * 1.01 for k, v in cop["fixef"].items()}  # same θ, other β: flat
    results[0]["comparisons"]["copycat"] = compare_records(results[0]["records"]["lme4"], cop)
    frame = sleepstudy_frame()
    paths = write_report(results, tmp_path, allfit=False, model_builder=lambda f, d: frame,
                         objective_factory=lambda f, d, REML: PLSObjective(frame, REML))
    case = json.loads(paths["json"].read_text())["cases"][0]
    assert case["verdict"] == "disagreed"
    assert any("flat direction" in f for f in case["crosseval"]["findings"])


def test_agreeing_case_is_summarized_not_detailed(written):
    _, report, _, html = written
    case = next(c for c in report["cases"] if c["case"]["id"] == "sleepstudy-slopes-REML")
    assert case["verdict"] == "agreed" and not case["disagreement"]
    assert 'id="case-sleepstudy-slopes-REML"' not in html
    assert report["counts"] == {"agreed": 1, "disagreed": 1}


def test_every_disagreement_has_its_tables_and_plots(written):
    _, report, _, html = written
    disagreements = [c for c in report["cases"] if c["disagreement"]]
    assert disagreements
    sections = dict(re.findall(r'<section class="disagreement" id="([^"]+)"[^>]*>(.*?)</section>',
                               html, flags=re.S))
    for c in disagreements:
        sec = sections[f"case-{c['case']['id']}"]
        for impl in c["comparisons"]:
            assert f'class="param-table" data-impl="{impl}"' in sec
        for plot in ("scaled", "segment", "coordinates", "timing", "heatmap"):
            assert re.search(rf'data-plot="{plot}"[^>]*src="data:image/png;base64,[A-Za-z0-9+/]',
                             sec), plot
        assert 'class="crosseval"' in sec and "poor-optimizer" in sec
    assert 'href="#case-sleepstudy-slopes-ML"' in html
    assert 'id="environment"' in html
    # self-contained: no external resources
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_markdown_summary_table(written):
    _, report, md, _ = written
    assert ("| case | implementations | worst scaled difference | verdict | objective gap |"
            in md)
    for c in report["cases"]:
        assert f"| {c['case']['id']} |" in md
    row = next(line for line in md.splitlines() if line.startswith("| sleepstudy-slopes-ML"))
    assert "**disagreed**" in row and "best: lme4; poor-optimizer +" in row
    agreeing = next(ln for ln in md.splitlines() if ln.startswith("| sleepstudy-slopes-REML"))
    assert "| agreed | none (all within" in agreeing


def test_report_json_carries_environment_and_records(written):
    _, report, _, _ = written
    env = report["environment"]
    assert env["python"]["numpy"] and env["machine"]["cores"]
    assert "openblas" in (env["blas"]["numpy"] or "").lower()
    case = report["cases"][0]
    assert set(case["records"]) == {"lme4", "poor-optimizer", "copycat"}
    assert case["heatmap"]["group"] == "Subject" and len(case["heatmap"]["matrices"]) == 3


@pytest.mark.needs_r
def test_allfit_second_opinion_in_report(tmp_path):
    from harness.core import rbridge

    reason = rbridge.unavailable()
    if reason:
        pytest.skip(reason)
    report, _, html = _write(tmp_path, allfit=True)
    case = next(c for c in report["cases"] if c["disagreement"])
    af = case["allfit"]
    assert af.get("error") is None, af
    expected = REFS["sleepstudy-slopes-ML"]["allfit"]["objective"]
    assert af["objective"] == pytest.approx(expected, rel=1e-8)
    assert af["optimizers"][af["best"]]["objective"] == af["objective"]
    assert "lme4&#x27;s second opinion (allFit)" in html or "second opinion (allFit)" in html
    # lme4's devfun agrees with the gap the report computed with mixedref's objective
    lme4_obj = judge.lme4_objective_at(_case("sleepstudy-slopes-ML"), load_dataset("sleepstudy"), [
        case["crosseval"]["estimates"]["lme4"]["theta"],
        case["crosseval"]["estimates"]["poor-optimizer"]["theta"]])
    assert lme4_obj[1] - lme4_obj[0] == pytest.approx(
        case["crosseval"]["estimates"]["poor-optimizer"]["gap"], rel=1e-6)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
def test_html_renders_without_console_errors(written, tmp_path):
    out, _, _, _ = written
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={shot}",
           "--window-size=1200,2400", "--enable-logging=stderr", "--v=0",
           (out / "index.html").resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if "ERROR" in line.upper() or "Uncaught" in line]
    assert not errors, "\n".join(errors)
    if shutil.which("file"):
        assert "PNG" in subprocess.run(["file", str(shot)], capture_output=True,
                                       text=True).stdout


def test_caterpillar_plot_of_conditional_modes():
    import base64

    from harness.commands.report import figures

    def rows(shift, sd=1.0):
        return [{"grp": "Subject", "term": t, "level": str(i), "condval": i - 5 + shift,
                 "condsd": sd} for t in ("(Intercept)", "Days") for i in range(60)]

    png = figures.caterpillar({"cand": {"ranef": rows(0.1)}, "lme4": {"ranef": rows(0.0)},
                               "no-sd": {"ranef": rows(0.2, sd=None)}, "none": {"ranef": None}})
    assert png and base64.b64decode(png)[:4] == b"\x89PNG"
    assert figures.caterpillar({"lme4": {"ranef": None}}) is None
    html = _render_section_with_ranef(rows(0.0))
    assert re.search(r'data-plot="caterpillar"[^>]*src="data:image/png;base64,', html)


def _render_section_with_ranef(ranef_rows):
    from harness.commands.report import html as H

    case = {"case": {"id": "x-y-REML", "formula": "y ~ 1 + (1 | g)", "REML": True,
                     "dataset": "x"}, "verdict": "disagreed", "crosseval": {},
            "records": {"lme4": {"ranef": ranef_rows}}, "comparisons": {}, "seconds": {}}
    return H._details(case)  # noqa: SLF001
