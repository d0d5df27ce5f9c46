"""A compared quantity defined wholly by a plugin: its comparator registered from a conftest
(``pytest_harness_comparators``), its value carried in the record's open namespace
(``record["extra"]``) by the candidate and by the recorded reference, compared, and failing
when the candidate's value is off. No file of the harness changes for it."""

from __future__ import annotations

import json

# imported before pytester's in-process runs (see tests/test_plugin.py)
import pytest

import harness.adapters  # noqa: F401
import harness.core.catalog  # noqa: F401
import harness.pytest_plugin.plugin  # noqa: F401

pytest_plugins = ["pytester"]

CASE = "sleepstudy-intercept-REML"

# the plugin: the intraclass correlation, var(Subject) / (var(Subject) + sigma^2)
ICC_CONFTEST = '''
from harness.core.comparators import extra_value, row


class IntraclassCorrelation:
    name = "icc"
    reason = "a ratio of variances, each compared to 0.2% relative: 1e-3 relative"

    def rows(self, reference, candidate, tol, notes):
        ref = extra_value(reference, "icc")
        r = row("icc", ref, extra_value(candidate, "icc"),
                None if ref is None else 1e-3 * abs(ref))
        return [] if r is None else [r]


def pytest_harness_comparators(config):
    return [IntraclassCorrelation()]
'''

# two implementations returning lme4's recorded answer with the plugin's quantity: one right,
# one 5% off
ICC_IMPLS = '''
import copy
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog

_CASE = next(c for c in load_catalog() if c.id == "CASE_ID")


def _record(scale):
    rec = copy.deepcopy(Lme4Recorded().fit(_CASE, None))
    for key in ("impl", "case_id"):
        rec.pop(key)
    subject = next(r["vcov"] for r in rec["varcorr"] if r["grp"] == "Subject")
    rec["extra"] = {"icc": scale * subject / (subject + rec["sigma"] ** 2)}
    return rec


def right(formula, data, REML):
    return _record(1.0)


def off(formula, data, REML):
    return _record(1.05)
'''.replace("CASE_ID", CASE)


def _icc(rec: dict) -> float:
    subject = next(r["vcov"] for r in rec["varcorr"] if r["grp"] == "Subject")
    return subject / (subject + rec["sigma"] ** 2)


def test_a_plugin_quantity_is_recorded_compared_and_fails_when_off(
        pytester: pytest.Pytester, tmp_path) -> None:
    from harness.adapters.lme4 import RECORDED_PATH

    doc = json.loads(RECORDED_PATH.read_text())
    reference = doc["records"][CASE]
    icc = _icc(reference)  # from lme4's own variance components
    reference["extra"] = {"icc": icc}
    recorded = tmp_path / "lme4_with_icc.json"
    recorded.write_text(json.dumps(doc))
    pytester.makeconftest(ICC_CONFTEST)
    pytester.makepyfile(iccimpls_q=ICC_IMPLS)
    pytester.syspathinsert()
    report = tmp_path / "report"
    result = pytester.runpytest("--pyargs", "harness", "--reference=recorded", "-rfs",
                                "--recorded", str(recorded), "--report", str(report),
                                "--impl", "iccimpls_q:right", "--impl", "iccimpls_q:off",
                                "-k", f"{CASE} and not test_fit")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*iccimpls_q:off vs lme4-recorded: disagreed in icc*"])
    (case,) = json.loads((report / "report.json").read_text())["cases"]
    assert case["records"]["iccimpls_q:off"]["extra"] == {"icc": pytest.approx(1.05 * icc)}
    rows = {impl: {r["name"]: r for r in comp["rows"]}
            for impl, comp in case["comparisons"].items()}
    assert rows["iccimpls_q:right"]["icc"]["ok"] is True
    off = rows["iccimpls_q:off"]["icc"]
    assert off["ok"] is False
    assert off["reference"] == pytest.approx(icc, rel=1e-12)
    assert off["candidate"] == pytest.approx(1.05 * icc, rel=1e-12)
