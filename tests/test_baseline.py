"""Regression baselines on hand-made records and cases: the catalog version, saving and
opening a baseline, and drift under the tolerance policy."""

from __future__ import annotations

import copy
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.core.baseline import (
    DRIFT_NOTE,
    MANIFEST,
    BaselineError,
    catalog_version,
    compare_with_baseline,
    drift,
    open_baseline,
    quote_name,
    record_path,
    save_record,
    unquote_name,
    write_manifest,
)
from harness.core.catalog import Case
from harness.core.record import failed_record, normalize_record
from harness.core.tolerance import DEFAULT as TOL
from harness.core.tolerance import Tolerance


def _case(id: str = "sleepstudy-slopes-REML", formula: str = "Reaction ~ Days + (Days | Subject)",
          REML: bool = True, **kw: object) -> Case:
    dataset, spec, method = id.split("-")
    return Case(id=id, dataset=dataset, spec=spec, formula=formula, REML=REML, method=method,
                **kw)


CASES = [_case(), _case("sleepstudy-slopes-ML", REML=False),
         _case("Dyestuff-intercept-REML", "Yield ~ 1 + (1 | Batch)")]


def _record(impl: str = "mypkg.fit:fit", case_id: str = "sleepstudy-slopes-REML") -> dict:
    # shaped like a sleepstudy (Days | Subject) REML record (values hand-made)
    return normalize_record({
        "fixef": {"(Intercept)": 251.4, "Days": 10.47},
        "fixef_se": {"(Intercept)": 6.8, "Days": 1.5},
        "sigma": 25.6,
        "varcorr": [
            {"grp": "Subject", "var1": "(Intercept)", "var2": None, "vcov": 612.0, "sdcor": 24.74},
            {"grp": "Subject", "var1": "Days", "var2": None, "vcov": 35.0, "sdcor": 5.916},
            {"grp": "Subject", "var1": "(Intercept)", "var2": "Days", "vcov": 9.6,
             "sdcor": 0.0656},
            {"grp": "Residual", "var1": None, "var2": None, "vcov": 655.36, "sdcor": 25.6},
        ],
        "theta": [0.9667, 0.0152, 0.2309],
        "loglik": -871.8,
        "objective": 1743.6,
        "REML": True,
        "seconds": 0.01,
        "messages": ["a message"],
    }, impl, case_id)


# ---- catalog version ----------------------------------------------------------------------


def test_catalog_version_is_short_stable_and_order_free() -> None:
    v = catalog_version(CASES)
    assert re.fullmatch(r"[0-9a-f]{16}", v)
    assert catalog_version(list(reversed(CASES))) == v == catalog_version(tuple(CASES))


def test_catalog_version_follows_what_defines_a_case() -> None:
    v = catalog_version(CASES)
    changed = [
        [_case(formula="Reaction ~ Days + (1 | Subject)"), *CASES[1:]],
        [_case(REML=False), *CASES[1:]],
        [_case(id="sleepstudy-slopes2-REML"), *CASES[1:]],
        [Case(**{**CASES[0].__dict__, "dataset": "other"}), *CASES[1:]],
        CASES[:2],
    ]
    assert all(catalog_version(c) != v for c in changed)
    assert len({catalog_version(c) for c in changed}) == len(changed)
    # what does not define the fit does not change it
    same = [_case(notes="new notes", tags=("edge",), timeout=5.0, xfail={"x": "why"}), *CASES[1:]]
    assert catalog_version(same) == v


# ---- saving and opening -------------------------------------------------------------------


def test_save_and_open_round_trip(tmp_path: Path) -> None:
    rec = _record()
    path = save_record(tmp_path / "base", rec)  # the folder does not exist yet; no manifest
    assert path == tmp_path / "base" / "mypkg.fit%3Afit" / "sleepstudy-slopes-REML.json"
    assert path == record_path(tmp_path / "base", "mypkg.fit:fit", "sleepstudy-slopes-REML")
    other = save_record(tmp_path / "base", _record("statsmodels", "Dyestuff-intercept-REML"))
    write_manifest(tmp_path / "base", catalog_version(CASES), "/somewhere/catalog.yaml")

    base = open_baseline(tmp_path / "base", catalog_version(CASES))
    assert base.record("mypkg.fit:fit", "sleepstudy-slopes-REML") == rec
    assert json.loads(other.read_text()) == base.record("statsmodels", "Dyestuff-intercept-REML")
    assert base.record("mypkg.fit:fit", "Dyestuff-intercept-REML") is None
    assert base.record("nosuch", "sleepstudy-slopes-REML") is None
    assert base.impls() == ["mypkg.fit:fit", "statsmodels"]
    m = json.loads((tmp_path / "base" / MANIFEST).read_text())
    assert m["catalog_version"] == catalog_version(CASES) == base.catalog_version
    assert m["catalog_path"] == "/somewhere/catalog.yaml"
    assert m["harness_version"] and m["created"]
    # atomic writes leave no temporary files behind
    leftovers = [p for p in (tmp_path / "base").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_saving_again_replaces_the_record(tmp_path: Path) -> None:
    save_record(tmp_path, _record())
    newer = _record()
    newer["sigma"] = 30.0
    path = save_record(tmp_path, newer)
    write_manifest(tmp_path, "v", "c.yaml")
    assert open_baseline(tmp_path, "v").record(newer["impl"], newer["case_id"])["sigma"] == 30.0
    assert len(list(path.parent.iterdir())) == 1


def test_concurrent_saves_side_by_side_and_of_one_record(tmp_path: Path) -> None:
    # xdist workers save their own records at the same time, without a manifest; writers of
    # one file never leave it half-written (a temporary file each, then os.replace)
    ids = [f"sim_{k}-intercept-REML" for k in range(8)]
    jobs = [_record("mixedref", i) for i in ids] + [_record("mixedref", ids[0])] * 8
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda rec: save_record(tmp_path, rec), jobs))
    assert sorted({p.name for p in paths}) == sorted(f"{i}.json" for i in ids)
    assert sorted(p.name for p in (tmp_path / "mixedref").iterdir()) == sorted(
        f"{i}.json" for i in ids)
    write_manifest(tmp_path, "v", "c.yaml")
    base = open_baseline(tmp_path, "v")
    assert all(base.record("mixedref", i) == _record("mixedref", i) for i in ids)


@pytest.mark.parametrize("name", ["mypkg.fit:fit", "a/b", "..", ".hidden", "with space",
                                  "100%", "ünï", "C:\\x"])
def test_names_are_made_safe_reversibly(name: str) -> None:
    quoted = quote_name(name)
    assert unquote_name(quoted) == name
    assert re.fullmatch(r"[A-Za-z0-9_.~%-]+", quoted) and not quoted.startswith(".")


def test_a_record_without_impl_or_case_is_refused(tmp_path: Path) -> None:
    rec = _record()
    rec["impl"] = None
    with pytest.raises(BaselineError, match="without impl and case_id"):
        save_record(tmp_path, rec)
    rec = _record()
    rec["sigma"] = float("nan")
    with pytest.raises(BaselineError, match="not JSON-serializable"):
        save_record(tmp_path, rec)


def test_missing_baseline_or_manifest_is_refused(tmp_path: Path) -> None:
    for where in (tmp_path / "nosuch", tmp_path):
        with pytest.raises(BaselineError) as info:
            open_baseline(where, "v")
        assert str(info.value) == (f"no baseline at {where} (manifest.json missing): save one "
                                   f"with --save-baseline {where}")
    save_record(tmp_path, _record())  # records without a manifest are not a baseline
    with pytest.raises(BaselineError, match="manifest.json missing"):
        open_baseline(tmp_path, "v")
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(BaselineError, match="cannot be read"):
        open_baseline(tmp_path, "v")


def test_other_catalog_version_is_refused_naming_both(tmp_path: Path) -> None:
    saved = catalog_version(CASES)
    now = catalog_version(CASES[:2])
    write_manifest(tmp_path, saved, "/old/catalog.yaml")
    with pytest.raises(BaselineError) as info:
        open_baseline(tmp_path, now)
    msg = str(info.value)
    assert saved in msg and now in msg and "/old/catalog.yaml" in msg
    assert f"--save-baseline {tmp_path}" in msg


# ---- drift --------------------------------------------------------------------------------


def test_no_drift_for_the_same_record() -> None:
    assert drift(_record(), _record()) == []


def test_drift_beyond_tolerance_is_found_and_within_is_not() -> None:
    old = _record()
    sigma_allowed = TOL.sigma_rel * old["sigma"]
    se_allowed = TOL.fixef_se_units * old["fixef_se"]["Days"]
    obj_allowed = TOL.objective_allowed(old["objective"])

    within = copy.deepcopy(old)
    within["sigma"] += 0.5 * sigma_allowed
    within["fixef"]["Days"] -= 0.5 * se_allowed
    within["objective"] += 0.5 * obj_allowed
    assert drift(old, within) == []

    moved = copy.deepcopy(old)
    moved["sigma"] += 1.5 * sigma_allowed
    moved["fixef"]["Days"] -= 1.5 * se_allowed
    moved["objective"] -= 1.5 * obj_allowed  # lower is drift too: the package changed
    rows = drift(old, moved)
    assert [r.name for r in rows] == ["fixef[Days]", "sigma", "objective"]
    by = {r.name: r for r in rows}
    assert by["sigma"].reference == old["sigma"] and by["sigma"].candidate == moved["sigma"]
    assert by["sigma"].allowed == pytest.approx(sigma_allowed)
    assert by["fixef[Days]"].difference == pytest.approx(-1.5 * se_allowed)
    assert all(r.note == DRIFT_NOTE == "drift since baseline" and r.ok is False for r in rows)


def test_drift_uses_the_given_tolerance() -> None:
    old, new = _record(), _record()
    new["sigma"] = old["sigma"] * (1 + 2 * TOL.sigma_rel)
    assert [r.name for r in drift(old, new)] == ["sigma"]
    assert drift(old, new, tol=Tolerance(sigma_rel=4 * TOL.sigma_rel)) == []


def test_a_quantity_no_longer_reported_is_drift() -> None:
    old, new = _record(), _record()
    del new["fixef"]["Days"]
    rows = drift(old, new)
    assert [(r.name, r.note) for r in rows] == [("fixef[Days]", f"{DRIFT_NOTE}: missing")]


def test_a_failed_baseline_record_gives_no_drift() -> None:
    old = failed_record("mypkg.fit:fit", "sleepstudy-slopes-REML", "it raised")
    new = _record()
    assert drift(old, new) == []
    comp = compare_with_baseline(old, new)
    assert any("the baseline's fit failed (it raised)" in n for n in comp.notes)


def test_a_failed_new_record_gives_no_drift() -> None:
    # a fit that now fails is the comparison with the reference's business, not drift's
    new = failed_record("mypkg.fit:fit", "sleepstudy-slopes-REML", "it raised now")
    assert drift(_record(), new) == []
    assert any("this run's fit failed" in n for n in compare_with_baseline(_record(), new).notes)


def test_an_unchanged_quantity_without_a_tolerance_is_no_drift() -> None:
    # a GLMM peer reporting no standard errors (gpboost): the fixed effects' tolerance, in
    # units of the saved record's SEs, cannot be formed; equal values have still not moved
    old = _record()
    old["fixef_se"] = {}
    assert drift(old, copy.deepcopy(old)) == []
    moved = copy.deepcopy(old)
    moved["fixef"]["Days"] += 1.0  # a move that cannot be judged stays drift
    assert [r.name for r in drift(old, moved)] == ["fixef[Days]"]
