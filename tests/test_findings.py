"""The registry of findings: the ``findings:`` format (one cause, its evidence, the rows it
explains) flattened to per-row rules, its validation naming the finding and row, the converter
from the flat format, and ``python -m harness divergences --measure``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

# imported before pytester's in-process run (see tests/test_plugin.py)
import harness.adapters  # noqa: F401
import harness.core.catalog  # noqa: F401
import harness.pytest_plugin.plugin  # noqa: F401
from harness.core.compare import Row
from harness.core.divergences import RegistryError, load_registry, rows_of

pytest_plugins = ["pytester"]

CASES = ["sim_a-slopes-REML", "sim_a-slopes-ML", "sim_b-intercept-ML"]
CAUSE = "the candidate stops at an interior point above the boundary optimum: lme4 is right"
EVIDENCE = "its criterion is 127 above lme4's under lme4's devfun (measured by the harness)"


def _finding(fid: str = "cand-interior", rows: list | None = None, **changes: object) -> dict:
    f = {"id": fid, "impl": "cand", "cause": CAUSE, "evidence": EVIDENCE,
         "rows": rows if rows is not None else [
             {"case": "sim_a-slopes-*", "quantity": "objective", "size": 1.0,
              "direction": "higher"},
             {"case": "sim_a-slopes-REML", "quantity": "sigma", "size": 0.5,
              "direction": "lower"}]}
    f.update(changes)
    return f


def _write(tmp_path: Path, findings: list | None = None, divergences: list | None = None
           ) -> Path:
    doc: dict = {}
    if findings is not None:
        doc["findings"] = findings
    if divergences is not None:
        doc["divergences"] = divergences
    path = tmp_path / "findings.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _row(name: str, difference: float, ok: bool = False) -> Row:
    return Row(name, 10.0, 10.0 + difference, difference, 0.01, ok, "")


# ---- the format, flattened ----------------------------------------------------------------

def test_findings_flatten_to_rows_that_know_their_finding(tmp_path: Path) -> None:
    reg = load_registry(_write(tmp_path, [_finding()]), CASES)
    assert [(e.finding, e.row, e.impl, e.case, e.quantity, e.size, e.direction)
            for e in reg.entries] == [
        ("cand-interior", 0, "cand", "sim_a-slopes-*", "objective", 1.0, "higher"),
        ("cand-interior", 1, "cand", "sim_a-slopes-REML", "sigma", 0.5, "lower")]
    assert all(e.reason == CAUSE for e in reg.entries)
    assert reg.findings["cand-interior"].evidence == EVIDENCE
    assert reg.entries[1].label() == ("finding cand-interior row 1 "
                                      "(sim_a-slopes-REML, cand, sigma)")


def test_the_per_row_rules_hold_for_findings(tmp_path: Path) -> None:
    reg = load_registry(_write(tmp_path, [_finding()]), CASES)
    # both rows fire within twice their size: covered, grouped under the finding once
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", 1.9), _row("sigma", -0.4)])
    assert j.registered
    assert j.findings() == [{"finding": "cand-interior", "cause": CAUSE, "rows": [
        {"name": "objective", "difference": 1.9, "size": 1.0},
        {"name": "sigma", "difference": -0.4, "size": 0.5}]}]
    # grown beyond twice its size
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", 2.1), _row("sigma", -0.4)])
    assert [(r.name, e.row) for r, e in j.grown] == [("objective", 0)] and not j.ok
    assert "finding cand-interior row 0" in j.message()
    # unregistered: no row of the finding matches fixef[x]; the sign of sigma changed
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", 1.0), _row("sigma", 0.4),
                                                _row("fixef[x]", 0.1)])
    assert [r.name for r in j.unregistered] == ["sigma", "fixef[x]"]
    # stopped firing: the sigma row matched no failing row
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", 1.0), _row("sigma", -0.4,
                                                                             ok=True)])
    assert [e.row for e in j.stale] == [1]
    assert j.message() == ("finding cand-interior row 1 (sim_a-slopes-REML, cand, sigma) "
                           f"stopped firing: fixed? remove the row from {reg.path}")


def test_a_partly_converted_file_reads_both_lists(tmp_path: Path) -> None:
    flat = {"case": "sim_b-intercept-ML", "impl": "cand", "quantity": "objective", "size": 2.0,
            "direction": "higher", "reason": "an older entry's own reason, in words"}
    reg = load_registry(_write(tmp_path, [_finding()], [flat]), CASES)
    assert [e.index for e in reg.entries] == [0, 1, 2]  # unique: the judge keys on it
    assert reg.entries[2].finding is None and reg.entries[2].label().startswith("entry 0 ")
    assert [r["finding"] for r in rows_of(tmp_path / "findings.yaml")] == [
        "cand-interior", "cand-interior", None]
    with pytest.raises(RegistryError, match=r"entry 0 \(.*duplicates finding cand-interior "
                                            r"row 0"):
        load_registry(_write(tmp_path, [_finding()], [
            {**flat, "case": "sim_a-slopes-*"}]), CASES)


# ---- validation: each error names the finding and the row ---------------------------------

@pytest.mark.parametrize(("findings", "match"), [
    ([_finding(rows=[{"case": "nosuch-*", "quantity": "objective", "size": 1.0,
                      "direction": "higher"}])],
     r"finding cand-interior row 0 \(case 'nosuch-\*', quantity 'objective'\): matches no "
     r"catalog case"),
    ([_finding(rows=[{"case": "sim_a-slopes-ML", "quantity": "objective", "size": 1.0,
                      "direction": "higher"},
                     {"case": "sim_a-slopes-ML", "quantity": "fixed[x]", "size": 1.0,
                      "direction": "higher"}])],
     r"finding cand-interior row 1 .*unknown quantity 'fixed'"),
    ([_finding(rows=[{"case": "sim_a-slopes-ML", "quantity": "objective", "size": -1,
                      "direction": "higher"}])],
     r"finding cand-interior row 0 .*size -1 must be a finite number > 0"),
    ([_finding(rows=[{"case": "sim_a-slopes-ML", "quantity": "objective", "size": 1,
                      "direction": "up"}])],
     r"finding cand-interior row 0 .*direction 'up' must be one of"),
    ([_finding(rows=[{"case": "sim_a-slopes-ML", "quantity": "objective", "size": 1,
                      "direction": "higher", "reason": "x"}])],
     r"finding cand-interior row 0 .*unknown key\(s\) \['reason'\]"),
    ([_finding(rows=[{"case": "sim_a-slopes-ML", "size": 1, "direction": "higher"}])],
     r"finding cand-interior row 0 .*missing required field\(s\) \['quantity'\]"),
    ([_finding(rows=["objective"])], r"finding cand-interior row 0 \(str 'objective'\): a row "
                                     r"must be a mapping"),
    ([_finding(rows=[])], r"finding 0 \(cand-interior\): rows must be a non-empty list"),
    ([_finding(fid="Bad Id")], r"finding 0 \(Bad Id\): id 'Bad Id' must be a short slug"),
    ([_finding(), _finding(rows=[{"case": "sim_b-intercept-ML", "quantity": "objective",
                                  "size": 1, "direction": "higher"}])],
     r"finding 1 \(cand-interior\): id 'cand-interior' is used by another finding"),
    ([_finding(cause="  ")], r"finding 0 \(cand-interior\): cause must be non-empty text: who "
                             r"is right"),
    ([_finding(evidence=None)], r"finding 0 \(cand-interior\): evidence must be non-empty"),
    ([{k: v for k, v in _finding().items() if k != "impl"}],
     r"finding 0 \(cand-interior\): missing required field\(s\) \['impl'\]"),
    ([_finding(reason="x")], r"finding 0 \(cand-interior\): unknown key\(s\) \['reason'\]"),
    (["objective"], r"finding 0: a finding must be a mapping"),
    ([_finding(), _finding(fid="other")], r"finding other row 0 .*duplicates finding "
                                          r"cand-interior row 0"),
])
def test_a_bad_finding_is_refused_naming_it(tmp_path: Path, findings: list, match: str) -> None:
    with pytest.raises(RegistryError, match=match):
        load_registry(_write(tmp_path, findings), CASES)


def test_a_bad_top_level_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("findings: {id: x}\n")
    with pytest.raises(RegistryError, match="'findings' must be a list"):
        load_registry(path, CASES)
    path.write_text("finding: []\n")
    with pytest.raises(RegistryError, match=r"unknown top-level key\(s\) \['finding'\]"):
        load_registry(path, CASES)


# ---- the converter from the flat format ---------------------------------------------------

FLAT = """\
# a header comment, kept
divergences:
  - case: sim_a-slopes-REML
    impl: cand
    quantity: objective
    size: 127.0        # measured +126.9, allowed 0.01
    direction: higher
    reason: >-
      cand stops at an interior point (correlation -0.79) whose REML criterion is 127 above
      the correlation -1 boundary optimum that lme4 reaches: a wrong optimum of cand.
  - case: sim_a-slopes-REML
    impl: cand
    quantity: sigma
    size: 0.5        # measured -0.41, allowed 0.001
    direction: lower
    reason: >-
      cand stops at an interior point (correlation -0.79) whose REML criterion is 127 above
      the correlation -1 boundary optimum that lme4 reaches: a wrong optimum of cand.
  - case: sim_a-slopes-ML
    impl: cand
    quantity: objective
    size: 140.0        # measured +136, allowed 0.01
    direction: higher
    reason: >-
      cand stops at an interior point (correlation -0.77) whose deviance is 136 above the
      correlation -1 boundary optimum that lme4 reaches: a wrong optimum of cand.
  - case: sim_a-slopes-ML
    impl: cand
    quantity: loglik
    size: 69.0        # measured -68, allowed 0.01
    direction: lower
    reason: half the criterion's difference; see the objective entry of this case.
  - case: sim_b-intercept-ML
    impl: cand
    quantity: "fixef_se[x]"
    size: 1.0e-05        # measured +9.1e-06, allowed 1e-06
    direction: higher
    reason: cand's SEs come from a finite-difference Hessian of its own parametrization.
  - case: sim_b-intercept-ML
    impl: other
    quantity: "fixef_se[x]"
    size: 2.0e-05        # measured +1.9e-05, allowed 1e-06
    direction: higher
    reason: cand's SEs come from a finite-difference Hessian of its own parametrization.
"""


def _convert(*paths: Path) -> tuple[str, list]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    try:
        import findings_from_divergences as conv
    finally:
        sys.path.pop(0)
    text, findings, _ = conv.convert(list(paths), CASES)
    return text, findings


def _key(row: dict) -> tuple:
    return (row["case"], row["impl"], row["quantity"], float(row["size"]), row["direction"])


def test_the_converter_groups_by_cause_and_keeps_every_row(tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text(FLAT)
    text, findings = _convert(flat)
    out = tmp_path / "converted.yaml"
    out.write_text(text)
    # same cause with other numbers merged, the cross-reference joined, one finding per impl
    assert [(f.impl, len(f.rows)) for f in findings] == [("cand", 4), ("cand", 1),
                                                         ("other", 1)]
    assert findings[0].cause.startswith("cand stops at an interior point (correlation -0.79)")
    assert "[sim_a-slopes-ML] cand stops at an interior point (correlation -0.77) whose " \
           "deviance is 136 [... as in the cause]" in findings[0].evidence  # its own numbers
    assert "see the objective entry of this case" in findings[0].evidence
    # every row, size and direction survives, with its measured-value comment
    assert sorted(map(_key, rows_of(out))) == sorted(map(_key, yaml.safe_load(FLAT)[
        "divergences"]))
    assert "size: 1.0e-05, direction: higher}  # measured +9.1e-06, allowed 1e-06" in text
    assert text.startswith("# a header comment, kept\n")
    reg = load_registry(out, CASES)
    assert len(reg) == 6 and len(reg.findings) == 3


def test_the_converter_adds_flat_entries_to_a_converted_file(tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text(FLAT)
    text, _ = _convert(flat)
    # another branch appended old-format entries: one already a row, one of an existing
    # finding's cause, one new cause
    appended = text + """\
divergences:
  - case: sim_a-slopes-REML
    impl: cand
    quantity: objective
    size: 127.0
    direction: higher
    reason: a restatement of a row already registered
  - case: sim_b-intercept-ML
    impl: cand
    quantity: "fixef_se[z]"
    size: 3.0e-05        # measured +2.2e-05, allowed 1e-06
    direction: higher
    reason: cand's SEs come from a finite-difference Hessian of its own parametrization.
  - case: sim_b-intercept-ML
    impl: cand
    quantity: sigma
    size: 0.25        # measured +0.2, allowed 0.001
    direction: higher
    reason: cand's residual scale is divided by n - 1 rather than n on ML fits, a new cause.
"""
    merged = tmp_path / "merged.yaml"
    merged.write_text(appended)
    text2, findings = _convert(merged)
    assert [len(f.rows) for f in findings] == [4, 2, 1, 1]
    assert findings[1].rows[1][0]["quantity"] == "fixef_se[z]"
    assert findings[1].evidence.startswith("Measured on 2 row(s) of 1 case(s)")
    assert findings[3].cause.startswith("cand's residual scale")
    merged.write_text(text2)
    assert "divergences:" not in text2 and len(load_registry(merged, CASES)) == 8


# ---- python -m harness divergences --measure ----------------------------------------------

CATALOG = """
cases:
  - spec: intercept
    dataset: Dyestuff
    formula: "Yield ~ 1 + (1 | Batch)"
    methods: [REML, ML]
"""

SE_HIGH = '''
import copy
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog

_CASES = {c.REML: c for c in load_catalog() if c.id.startswith("Dyestuff-intercept-")}

def fit(formula, data, REML):
    """lme4's recorded answer with the intercept's SE 1% high on the REML case only."""
    rec = copy.deepcopy(Lme4Recorded().fit(_CASES[bool(REML)], None))
    for key in ("impl", "case_id"):
        rec.pop(key)
    if REML:
        rec["fixef_se"]["(Intercept)"] *= 1.01
    return rec
'''

REGISTRY = """\
# a header that --write keeps
findings:
  - id: se-high
    impl: "se_high_v:fit"
    cause: >-
      The intercept's SE is deliberately 1% high on the REML case: the candidate is wrong.
    evidence: >-
      Made so by the test (1.01 x lme4's recorded SE).
    rows:
""" + "".join(f'      - {{case: "Dyestuff-intercept-{method}", quantity: "fixef_se[(Intercept)]", '
              f'size: {size}, direction: higher}}  # {note}\n'
              for method, size, note in (("REML", 0.15, "a guess"), ("ML", 0.2, "fixed since")))


def test_measure_writes_the_measured_size_and_names_a_row_that_stopped_firing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from decimal import ROUND_CEILING, Decimal

    from harness.__main__ import main
    from harness.adapters import Lme4Recorded
    from harness.core.catalog import load_catalog

    (tmp_path / "se_high_v.py").write_text(SE_HIGH)
    monkeypatch.syspath_prepend(str(tmp_path))  # the fitting worker takes this sys.path
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    registry = tmp_path / "findings.yaml"
    registry.write_text(REGISTRY)
    reml = next(c for c in load_catalog(catalog) if c.id == "Dyestuff-intercept-REML")
    shift = 0.01 * Lme4Recorded().fit(reml, None)["fixef_se"]["(Intercept)"]  # by construction
    digits = Decimal(1).scaleb(Decimal(repr(shift)).adjusted() - 1)
    expected = float((Decimal(repr(shift)) / digits).to_integral_value(ROUND_CEILING) * digits)
    assert 0.15 < shift < 0.3 and expected != 0.15  # the guess covers it; the size differs
    args = ["divergences", "--measure", "--catalog", str(catalog), "--divergences",
            str(registry)]
    # without --write: what would change, the file untouched
    assert main(args) == 1  # a row stopped firing
    out = capsys.readouterr().out
    assert (f"finding se-high row 0 (Dyestuff-intercept-REML, se_high_v:fit, "
            f"fixef_se[(Intercept)]): grown: measured +{shift:.6g}") in out
    assert f"size 0.15 -> {expected:g}" in out
    assert ("finding se-high row 1 (Dyestuff-intercept-ML, se_high_v:fit, "
            "fixef_se[(Intercept)]): stopped firing") in out
    assert registry.read_text() == REGISTRY
    # --write: the measured size and value written into the row, the rest of the file kept
    assert main([*args, "--write"]) == 1
    text = registry.read_text()
    rows = rows_of(registry)
    assert [r["size"] for r in rows] == [expected, 0.2]
    assert text.splitlines()[0] == "# a header that --write keeps"
    assert f"size: {expected!r}, direction: higher}}  # measured +{shift:.6g}, allowed" in text
    assert text.splitlines()[-1].endswith("# fixed since")  # the stopped row is left alone
    # measured again: the written row is unchanged
    capsys.readouterr()
    main(args)
    assert "2 rows measured: 1 unchanged, 1 changed" in capsys.readouterr().out


def test_sizes_are_rounded_up_to_two_significant_digits() -> None:
    from harness.commands.divergences_measure import round_up, yaml_number

    assert [round_up(x) for x in (0.0563558, 0.057, 127.3, 1.00001e-05, 9.91)] == [
        0.057, 0.057, 130.0, 1.1e-05, 10.0]
    assert yaml.safe_load(f"x: {yaml_number(1e-05)}")["x"] == 1e-05  # a float, not a string


def test_measure_skips_an_implementation_that_is_not_installed_naming_why(
        tmp_path: Path) -> None:
    from types import SimpleNamespace

    from harness.commands.divergences_measure import measure

    class Missing:
        def unavailable(self) -> str:
            return "No module named 'cand'"

    def decide(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing is fitted for an implementation that is not here")

    reg = load_registry(_write(tmp_path, [_finding()]), CASES)
    cases = [SimpleNamespace(id=c) for c in CASES]
    out = measure(reg, cases, reference=None, adapter_for=lambda name: Missing(),
                  decide=decide)
    assert out.rows == [] and not out.needs_attention
    assert out.skipped == [("sim_a-slopes-REML", "cand", "not installed here: No module named "
                            "'cand'"), ("sim_a-slopes-ML", "cand", "not installed here: No "
                                        "module named 'cand'")]
    assert "skipped sim_a-slopes-ML [cand]: not installed here" in out.report()


def test_measure_skips_a_fit_that_failed_instead_of_calling_its_rows_stopped(
        tmp_path: Path) -> None:
    """A candidate's fit that failed (a timeout on a loaded machine, an error) measured
    nothing: it is skipped naming why, not read as every row of the case stopping firing."""
    from types import SimpleNamespace

    from harness.commands.divergences_measure import measure

    class Here:
        def unavailable(self) -> None:
            return None

    def decide(*args: object, **kwargs: object) -> object:
        return SimpleNamespace(comparison=SimpleNamespace(rows=[]), outcome="failed",
                               headline="failed: timeout: killed after 60.0 s")

    from harness.core.catalog import load_catalog

    case = next(c for c in load_catalog(None) if c.id == "Dyestuff-intercept-REML")
    rows = [{"case": case.id, "quantity": "sigma", "size": 1.0, "direction": "higher"}]
    reg = load_registry(_write(tmp_path, [_finding(rows=rows)]), [case.id])
    out = measure(reg, [case], reference=None, adapter_for=lambda name: Here(), decide=decide)
    assert out.rows == [] and not out.needs_attention
    assert out.skipped == [(case.id, "cand", "failed: timeout: killed after 60.0 s")]


def test_measure_judges_a_certified_case_against_its_truth(tmp_path: Path) -> None:
    """A certified case's rows (certified[...], nist[...]) come from its exact truth, as in a
    pytest run; judged against lme4 instead, every such row would read "stopped firing"."""
    from types import SimpleNamespace

    from harness.commands.divergences_measure import measure
    from harness.core.catalog import load_catalog

    certified = next(c for c in load_catalog(None) if c.id == "SmLs01-oneway-REML")
    plain = next(c for c in load_catalog(None) if c.id == "Dyestuff-intercept-REML")
    rows = [{"case": c.id, "quantity": "objective", "size": 1.0, "direction": "higher"}
            for c in (certified, plain)]
    reg = load_registry(_write(tmp_path, [_finding(rows=rows)]), [certified.id, plain.id])
    seen: dict[str, str] = {}

    class Here:
        def unavailable(self) -> None:
            return None

    def decide(case: object, adapter: object, reference: object, **kw: object) -> object:
        seen[case.id] = reference.name  # type: ignore[attr-defined]
        return SimpleNamespace(comparison=None, outcome="error", headline="stub")

    lme4 = SimpleNamespace(name="lme4-recorded")
    measure(reg, [certified, plain], lme4, adapter_for=lambda name: Here(), decide=decide)
    assert seen == {"SmLs01-oneway-REML": "certified", "Dyestuff-intercept-REML": "lme4-recorded"}


# ---- the summary and the report show findings ---------------------------------------------

def test_the_summary_and_the_report_name_each_finding_once_with_its_rows(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)  # under xdist, the child is no worker
    pytester.makepyfile(se_high_v=SE_HIGH)
    catalog = pytester.makefile(".yaml", catalog=CATALOG)
    registry = pytester.path / "findings.yaml"
    registry.write_text(REGISTRY.replace("size: 0.15", "size: 0.2").split(
        '      - {case: "Dyestuff-intercept-ML"')[0])  # the REML row alone, its size measured
    report = pytester.path / "report"
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(  # in this process: no interpreter start
        "--pyargs", "harness", "--reference=recorded", "-p", "no:cacheprovider",
        "--catalog", str(catalog), "--impl", "se_high_v:fit", "--divergences", str(registry),
        "-k", "not test_fit", "--report", str(report))
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK  # a registered divergence alone fails no run
    result.stdout.fnmatch_lines([
        "registered disagreements, by finding (1):",
        "  se-high [[]se_high_v:fit[]], 1 item(s): The intercept's SE is deliberately 1% high*",
        "    Dyestuff-intercept-REML: fixef_se[[](Intercept)[]]"])
    md = (report / "report.md").read_text()
    assert ("- `se-high` [se_high_v:fit] (1 row on 1 case): The intercept's SE is deliberately "
            "1% high") in md
    assert "  - `Dyestuff-intercept-REML`: fixef_se[(Intercept)] +0.19" in md
    assert md.count("deliberately 1% high") == 1  # the cause once, not per row
    assert "Registered disagreements, by finding" in (report / "index.html").read_text()


def test_the_league_lists_one_line_per_finding_with_its_rows(tmp_path: Path) -> None:
    from harness.commands import ecosystem

    path = _write(tmp_path, [_finding(), _finding("cand-other", impl="nobody", rows=[
        {"case": "sim_b-intercept-ML", "quantity": "sigma", "size": 1.0,
         "direction": "higher"}])])
    league = {"implementations": [{"name": "cand", "findings": [
        {"case": "sim_a-slopes-ML", "verdict": "disagreed", "registered":
         "registered divergence (1 quantities, e.g. objective): finding cand-interior: the "
         "candidate stops ..."},
        {"case": "sim_b-intercept-ML", "verdict": "failed", "registered": None}]}]}
    lines = ecosystem.findings_lines(league, path)
    assert lines[-1] == ("- `cand-interior` [cand]: 2 rows on 2 cases — " + CAUSE)
    assert not any("cand-other" in line for line in lines)  # not a league implementation
    page = ecosystem.findings_html(league, path)
    assert "<td class=n>2</td><td class=n>2</td><td>sim_a-slopes-ML</td>" in page
