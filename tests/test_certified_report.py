"""The certified column of the league and the report (harness.commands.certified_report): each
implementation's worst LRE on the certified cases, recomputed from the rows, and where lme4
itself fails the truth."""

from __future__ import annotations

from harness.commands import ecosystem
from harness.commands.certified_report import certified_column, report_lines, report_summary


def _comp(impl: str, pairs: dict[str, tuple[float, float]], verdict: str = "agreed") -> dict:
    rows = [{"name": f"certified[{q}]", "reference": c, "candidate": x, "difference": x - c,
             "allowed": 1.0, "ok": verdict == "agreed", "note": ""} for q, (c, x) in pairs.items()]
    rows.append({"name": "nist[criterion]", "reference": 1.0, "candidate": 5.0, "difference": 4.0,
                 "allowed": 9.0, "ok": True, "note": ""})
    return {"case_id": "c", "reference_impl": "certified", "candidate_impl": impl,
            "verdict": verdict, "rows": rows, "error": None, "notes": [], "diagnoses": [],
            "judgement": None}


ITEMS = [
    {"case": "SmLs01-oneway-REML", "impl": "mixedref", "outcome": "agreed",
     "comparison": _comp("mixedref", {"var Treatment": (0.01, 0.01 * (1 + 1e-10))})},
    {"case": "SmLs09-oneway-REML", "impl": "mixedref", "outcome": "agreed",
     "comparison": _comp("mixedref", {"var Treatment": (0.01, 0.01 * (1 + 1e-12))})},
    {"case": "SmLs09-oneway-REML", "impl": "lme4", "outcome": "xfail",
     "comparison": _comp("lme4", {"var Treatment": (0.01, 3.9e-8)}, "disagreed")},
    {"case": "SmLs09-oneway-REML", "impl": "lme4-recorded", "outcome": "xfail",
     "comparison": _comp("lme4-recorded", {"var Treatment": (0.01, 3.9e-8)}, "disagreed")},
    {"case": "sleepstudy-intercept-REML", "impl": "mixedref", "outcome": "agreed",
     "comparison": {"reference_impl": "lme4", "rows": [], "verdict": "agreed"}},
]


def test_worst_lre_is_recomputed_from_the_rows_and_only_on_certified_items():
    col = certified_column(ITEMS)
    assert set(col) == {"mixedref", "lme4", "lme4-recorded"}  # sleepstudy is not certified
    assert col["mixedref"]["worst_lre"] == 10.0 and col["mixedref"]["worst_case"] == (
        "SmLs01-oneway-REML")
    assert col["mixedref"]["failed"] == []
    assert col["lme4"]["worst_lre"] == 0.0 and col["lme4"]["failed"] == ["SmLs09-oneway-REML"]


def test_the_league_has_a_certified_column_and_says_where_lme4_fails():
    league = ecosystem.build_league(ITEMS, ["mixedref"])
    assert [r["name"] for r in league["implementations"]] == ["mixedref"]  # lme4 is no row
    assert league["implementations"][0]["certified_worst_lre"] == 10.0
    md = ecosystem.league_markdown(league)
    assert "worst certified LRE" in md and "10.0 (SmLs01-oneway-REML)" in md
    assert "fails SmLs09-oneway-REML" in md
    assert "lme4 fails SmLs09-oneway-REML" in ecosystem.render_html(league)


def test_a_league_without_certified_cases_keeps_its_columns():
    league = ecosystem.build_league(ITEMS[-1:], ["mixedref"])
    assert "certified" not in league
    assert "certified" not in ecosystem.league_markdown(league)


def test_the_report_section_lists_each_implementation_and_lme4s_failures():
    cases = [{"case": {"id": it["case"]}, "comparisons": {it["impl"]: it["comparison"]}}
             for it in ITEMS]
    text = "\n".join(report_lines(report_summary(cases)))
    assert "| mixedref | 2 | 10.0 (SmLs01-oneway-REML) | none |" in text
    assert "lme4 itself fails the certified truth on SmLs09-oneway-REML" in text


def test_the_markdown_report_carries_the_section():
    from harness.commands.report.markdown import render

    cases = [{"case": {"id": it["case"]}, "comparisons": {it["impl"]: it["comparison"]}}
             for it in ITEMS]
    text = render({"counts": {}, "cases": [], "certified": report_summary(cases)})
    assert "## Certified cases" in text and "lme4 itself fails the certified truth" in text
    from harness.commands.report.html import _certified

    page = _certified(report_summary(cases))
    assert "worst LRE (case)" in page and "lme4 itself fails the certified truth" in page


def test_a_registered_comparison_read_back_from_a_journal():
    """Decision.props marks a registered comparison ("registered"), which the report command
    reads back from its journal: that key is not a field of the Comparison."""
    from harness.core.compare import Comparison

    comp = Comparison.from_dict({**ITEMS[2]["comparison"], "registered": True})
    assert comp.verdict == "disagreed" and comp.rows[0].name == "certified[var Treatment]"


def test_the_report_command_judges_a_certified_case_against_its_truth():
    from harness.__main__ import run_cases
    from harness.adapters import Lme4Recorded, get_adapter
    from harness.core.catalog import load_catalog

    case = next(c for c in load_catalog() if c.id == "SiRstv-oneway-REML")
    (res,) = run_cases([case], Lme4Recorded(), [get_adapter("mixedref")])
    comps = res["comparisons"]
    assert set(comps) == {"mixedref", "lme4-recorded"}  # lme4 is a candidate there
    assert {c.reference_impl for c in comps.values()} == {"certified"}
    assert all(r.name.startswith(("certified[", "nist[")) for r in comps["mixedref"].rows)
