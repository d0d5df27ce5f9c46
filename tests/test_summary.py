"""LmerFit.summary() against lme4's printed summary (tests/references/summaries.json, written
by r_scripts/summary_references.R): the same header, the same random-effects table (groups,
names, variances, standard deviations, correlations) and fixed-effects table (rows, columns,
values), with values equal within the tolerance policy (the two optima differ in the last
printed digits)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import mixedref
from harness.core.catalog import load_catalog, load_data
from harness.core.tolerance import DEFAULT as TOL

REFS = json.loads((Path(__file__).parent / "references" / "summaries.json").read_text())
CASES = {c.id: c for c in load_catalog()}


def _section(text: str, title: str, end: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(title)) + 1
    stop = next(i for i in range(start, len(lines)) if lines[i].startswith(end))
    return [ln for ln in lines[start:stop] if ln.strip()]


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+|-?\d+(?=\s|$)", line)]


def _labels(line: str) -> list[str]:
    return [t for t in line.split() if not re.fullmatch(r"-?\d+(\.\d+)?", t)]


@pytest.mark.parametrize("case_id", sorted(REFS["summaries"]))
def test_summary_matches_lme4s_printed_summary(case_id: str) -> None:
    case = CASES[case_id]
    ours = str(mixedref.lmer(case.formula, load_data(case), REML=case.REML).summary())
    theirs = REFS["summaries"][case_id]
    assert ours.splitlines()[0] == theirs.splitlines()[0]  # "... fit by REML ['lmerMod']"
    assert ours.splitlines()[1] == theirs.splitlines()[1]  # Formula: ...
    crit = "REML criterion at convergence" if case.REML else "AIC"
    assert any(ln.lstrip().startswith(crit) for ln in ours.splitlines())
    for title, end in (("Random effects:", "Number of obs"), ("Fixed effects:", "Correlation")):
        a = _section(ours, title, end) if end in ours else _section(ours + "\nCorrelation", title,
                                                                     end)
        b = _section(theirs + "\nCorrelation", title, end)
        assert len(a) == len(b), (title, a, b)
        assert a[0].split() == b[0].split(), title  # the column headers
        for ra, rb in zip(a[1:], b[1:], strict=True):
            assert _labels(ra) == _labels(rb), (ra, rb)
            na, nb = _numbers(ra), _numbers(rb)
            assert len(na) == len(nb), (ra, rb)
            for x, y in zip(na, nb, strict=True):
                # printed values: the tolerance policy's relative size, or a unit in the last
                # printed digit of lme4's
                last = 10.0 ** -len(f"{y}".split(".")[1]) if "." in f"{y}" else 1.0
                assert abs(x - y) <= max(TOL.var_rel * abs(y), 1.5 * last, TOL.corr_abs), \
                    (title, ra, rb)
    number = [ln for ln in theirs.splitlines() if ln.startswith("Number of obs")]
    assert number == [ln for ln in ours.splitlines() if ln.startswith("Number of obs")]
