"""The registry of findings: the ``findings:`` format (one cause, its evidence, the rows it
explains) flattened to per-row rules, its validation naming the finding and row, the converter
from the flat format, and ``python -m harness divergences --measure``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.compare import Row
from harness.divergences import RegistryError, load_registry, rows_of

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
