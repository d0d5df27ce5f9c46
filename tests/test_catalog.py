"""Tests of harness.core.catalog: the shipped catalog's content, one test per kind of malformed
entry
(asserting the message names the entry and the problem), user catalogs with their own data, and
(with R) that r_scripts/catalog.R expands the same ids."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.core.catalog import Case, CatalogError, load_catalog, load_data
from harness.core.datasets import dataset_info
from harness.core.errors import HarnessError
from harness.generate import simulate

ROOT = Path(__file__).resolve().parents[1]
GOOD = {
    "spec": "intercept",
    "dataset": "Dyestuff",
    "formula": "Yield ~ 1 + (1 | Batch)",
    "methods": ["REML", "ML"],
}


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return load_catalog()


def write_catalog(tmp_path: Path, entries) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"cases": entries}, sort_keys=False))
    return path


def entry(**changes):
    e = dict(GOOD)
    for k, v in changes.items():
        if v is None:
            e.pop(k)
        else:
            e[k] = v
    return e


# ---- the shipped catalog --------------------------------------------------------------------


def test_at_least_40_cases_with_unique_readable_ids(cases):
    assert len(cases) >= 40
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids)
    for c in cases:
        assert c.id == f"{c.dataset}-{c.spec}-{c.method}"
        assert re.fullmatch(r"[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-(REML|ML)", c.id)
        assert c.REML == (c.method == "REML")
        assert c.timeout > 0


def test_required_coverage(cases):
    formulas = {(c.dataset, c.formula.replace(" ", "")) for c in cases}
    wanted = [
        ("sleepstudy", "Reaction~Days+(Days|Subject)"),
        ("sleepstudy", "Reaction~Days+(Days||Subject)"),
        ("sleepstudy", "Reaction~Days+(1|Subject)"),
        ("sleepstudy", "Reaction~Days+(0+Days|Subject)"),
        ("sleepstudy", "Reaction~fDays+(1|Subject)"),
        ("Dyestuff", "Yield~1+(1|Batch)"),
        ("Dyestuff2", "Yield~1+(1|Batch)"),
        ("Penicillin", "diameter~1+(1|plate)+(1|sample)"),
        ("Pastes", "strength~1+(1|batch/cask)"),
        ("Pastes", "strength~1+(1|batch)+(1|batch:cask)"),
        ("cake", "angle~recipe*temperature+(1|recipe:replicate)"),
        ("InstEval", "y~1+service+(1|s)+(1|d)+(1|dept:service)"),
    ]
    for w in wanted:
        assert w in formulas, w
    assert any(c.dataset == "sleepstudy" and "I(Days - 4.5)" in c.formula for c in cases)
    by_id = {c.id: c for c in cases}
    assert {"InstEval-service-REML", "InstEval-service-ML"} <= set(by_id)
    assert "large" in by_id["InstEval-service-ML"].tags
    assert by_id["Dyestuff2-intercept-REML"].expect == {"singular": True}


def formula_variables(formula: str) -> set[str]:
    """Names a formula refers to: R identifiers not followed by "(" (I, log, ... are calls)."""
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z]|\.(?!\d))[\w.]*", formula):
        if not formula[m.end() :].lstrip().startswith("("):
            names.add(m.group(0))
    return names


def test_formula_variables_helper():
    f = "Reaction ~ I(Days - 4.5) + log(x.1) + (0 + Days | Subject)"
    assert formula_variables(f) == {"Reaction", "Days", "x.1", "Subject"}


def test_every_dataset_loads_and_has_the_formulas_columns(cases):
    frames = {}
    for c in cases:
        if c.dataset not in frames:
            frames[c.dataset] = load_data(c)
            assert len(frames[c.dataset]) > 0
        missing = formula_variables(c.formula) - set(frames[c.dataset].columns)
        assert not missing, (c.id, missing)


def test_every_simulated_dataset_has_a_case_with_its_truth(cases):
    assert set(simulate.REGISTRY) <= {c.dataset for c in cases}
    for c in cases:
        if c.dataset.startswith("sim_"):
            info = dataset_info(c.dataset)
            assert "truth" in info and info["formula"] == c.formula
            # the LMM designs probe numerical edges or the hard shapes of issue 15 (tagged
            # hard: lme4's default optimizer known to struggle); the GLMM designs are the GLMM
            # catalog's ordinary cases (tagged edge where they are edges: rare, separation, OLRE)
            if c.dataset not in ("sim_unbalanced", "sim_many_groups",
                                 "sim_crossed_partial") and not c.is_glmm:
                assert "edge" in c.tags or "hard" in c.tags, c.id


def test_every_xfail_is_explained_and_aimed_at_a_candidate(cases):
    # a known disagreement carries its explanation (what differs and why), never a bare
    # marker, and lme4 (the reference) is never marked
    for c in cases:
        for impl, reason in c.xfail.items():
            assert impl not in ("lme4", "lme4-recorded"), c.id
            assert len(reason.split()) >= 10, f"{c.id}: xfail reason too thin: {reason!r}"


def test_case_is_frozen_and_hashable(cases):
    with pytest.raises(dataclasses.FrozenInstanceError):
        cases[0].formula = "y ~ 1"
    assert len({c: c.id for c in cases}) == len(cases)


# ---- malformed entries: one test per kind, the message names entry and problem --------------


def check_error(tmp_path, entries, pattern):
    path = write_catalog(tmp_path, entries)
    with pytest.raises(CatalogError, match=pattern) as info:
        load_catalog(path)
    assert isinstance(info.value, HarnessError)
    return str(info.value)


def test_missing_field(tmp_path):
    msg = check_error(tmp_path, [GOOD, entry(formula=None)], r"entry 1 .*missing.*'formula'")
    assert "spec='intercept', dataset='Dyestuff'" in msg


def test_unknown_key(tmp_path):
    check_error(tmp_path, [entry(REML=True)], r"entry 0 \(spec='intercept'.*unknown key.*'REML'")


def test_unknown_dataset(tmp_path):
    check_error(
        tmp_path,
        [entry(dataset="sleepstudi")],
        r"entry 0 .*dataset='sleepstudi'.*unknown dataset 'sleepstudi'; known datasets: .*sleep",
    )


CBPP = {"spec": "prop", "dataset": "cbpp", "formula": "incidence / size ~ period + (1 | herd)",
        "family": "binomial", "weights": "size", "methods": ["ML"]}


def test_glmm_entries_are_checked_as_glmer_checks_them(tmp_path):
    def glmm(**changes):
        e = dict(CBPP)
        e.update(changes)
        return {k: v for k, v in e.items() if v is not None}

    check_error(tmp_path, [glmm(family="binomal")], r"entry 0 .*unknown family 'binomal'")
    check_error(tmp_path, [glmm(link="log-log")],
                r"entry 0 .*link 'log-log' is not available for family binomial")
    check_error(tmp_path, [glmm(methods=["REML", "ML"])],
                r"entry 0 .*maximum likelihood: methods must be \[ML\]")
    check_error(tmp_path, [entry(nAGQ=9)], r"entry 0 .*\['nAGQ'\] apply to GLMMs only")
    check_error(tmp_path, [glmm(nAGQ=-1)], r"entry 0 .*nAGQ -1 must be a whole number")
    check_error(tmp_path, [glmm(weights="trials")],
                r"entry 0 .*weights column 'trials' is not a column of dataset 'cbpp' "
                r"\(columns: herd, incidence, size, period\)")
    case = load_catalog(write_catalog(tmp_path, [glmm()]))[0]
    assert (case.id, case.is_glmm, case.link_name, case.nAGQ, case.tags) == (
        "cbpp-prop-ML", True, "logit", 1, ("glmm",))


def test_bad_method(tmp_path):
    check_error(tmp_path, [entry(methods=["REML", "reml"])], r"entry 0 .*bad method.*'reml'")
    check_error(tmp_path, [entry(methods="REML")], r"entry 0 .*non-empty list")
    check_error(tmp_path, [entry(methods=["ML", "ML"])], r"entry 0 .*method twice")


def test_duplicate_id(tmp_path):
    dup = entry(methods=["ML"], formula="Yield ~ (1 | Batch)")
    check_error(
        tmp_path, [GOOD, dup], r"entry 1 .*duplicate id 'Dyestuff-intercept-ML' \(also entry 0\)"
    )


def test_bad_spec_name(tmp_path):
    check_error(tmp_path, [entry(spec="my-spec")], r"entry 0 .*spec 'my-spec' must be a name")


def test_bad_formula(tmp_path):
    check_error(tmp_path, [entry(formula="Yield ~ 1")], r"entry 0 .*formula 'Yield ~ 1'")
    check_error(tmp_path, [entry(formula=3)], r"entry 0 .*formula 3")


def test_bad_optional_fields(tmp_path):
    check_error(tmp_path, [entry(expect={"singlar": True})], r"entry 0 .*expect: unknown key")
    check_error(tmp_path, [entry(expect={"singular": "yes"})], r"expect: singular must be bool")
    check_error(tmp_path, [entry(xfail={"statsmodels": ""})], r"entry 0 .*xfail: 'statsmodels'")
    check_error(tmp_path, [entry(skip=["statsmodels"])], r"entry 0 .*skip must be a mapping")
    check_error(tmp_path, [entry(tags="large")], r"entry 0 .*tags 'large' must be a list")
    check_error(tmp_path, [entry(timeout=0)], r"entry 0 .*timeout 0 must be a positive")
    check_error(tmp_path, [entry(timeout=True)], r"entry 0 .*timeout True")
    check_error(tmp_path, [entry(notes=["a"])], r"entry 0 .*notes must be text")


def test_entry_not_a_mapping(tmp_path):
    check_error(
        tmp_path, [GOOD, "sleepstudy"], r"entry 1 \(str 'sleepstudy'\): .*must be a mapping"
    )


def test_malformed_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cases: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(path)
    path.write_text("cases: []\n")
    with pytest.raises(CatalogError, match="non-empty list"):
        load_catalog(path)
    path.write_text(yaml.safe_dump({"cases": [GOOD], "defaults": {}}))
    with pytest.raises(CatalogError, match=r"unknown top-level key\(s\) \['defaults'\]"):
        load_catalog(path)
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "missing.yaml")


def test_valid_user_catalog_with_defaults(tmp_path):
    path = write_catalog(tmp_path, [entry(methods=["ML"], tags=["edge"], skip={"x": "why"})])
    (case,) = load_catalog(path)
    assert case == Case(
        id="Dyestuff-intercept-ML",
        dataset="Dyestuff",
        spec="intercept",
        formula=GOOD["formula"],
        REML=False,
        method="ML",
        skip={"x": "why"},
        tags=("edge",),
        timeout=60.0,
    )


def test_user_catalog_with_its_own_dataset(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    df = pd.DataFrame(
        {"y": [1.0, 2.0, 3.5, 4.0], "grp": pd.Categorical(["q", "p", "q", "p"], ["q", "p"])}
    )
    with gzip.open(data / "mydata.csv.gz", "wb") as f:
        f.write(simulate.csv_bytes(df))
    cols = simulate.column_metadata(df)
    meta = {"datasets": {"mydata": {"source": "user", "file": "mydata.csv.gz", "columns": cols}}}
    (data / "datasets.yaml").write_text(yaml.safe_dump(meta))
    mine = {"spec": "ri", "dataset": "mydata", "formula": "y ~ 1 + (1 | grp)", "methods": ["ML"]}
    path = write_catalog(tmp_path, [mine, GOOD])
    cases = load_catalog(path)
    assert [c.id for c in cases] == [
        "mydata-ri-ML",
        "Dyestuff-intercept-REML",
        "Dyestuff-intercept-ML",
    ]
    pd.testing.assert_frame_equal(load_data(cases[0]), df)
    assert len(load_data(cases[1])) == 30  # the package's datasets still resolve


# ---- R expands the same catalog -------------------------------------------------------------


def _r_ids(rscript, path: Path) -> list[str]:
    return json.loads(rscript(f'print_catalog_ids("{path}")', 120))


@pytest.mark.needs_r
def test_r_expands_the_same_ids(cases, catalog_rscript):
    assert _r_ids(catalog_rscript, ROOT / "harness" / "catalog.yaml") == [c.id for c in cases]


@pytest.mark.needs_r
def test_r_reads_a_user_catalog(tmp_path, catalog_rscript):
    path = write_catalog(tmp_path, [entry(spec="n", methods=["ML", "REML"]), GOOD])
    assert _r_ids(catalog_rscript, path) == [c.id for c in load_catalog(path)]


def test_anova_partners_resolve_to_their_formula_and_bad_ones_are_named(tmp_path):
    small = entry(spec="small", formula="Yield ~ 0 + (1 | Batch)")
    big = entry(spec="big", anova="small")
    cases = load_catalog(write_catalog(tmp_path, [small, big]))
    partnered = [c for c in cases if c.spec == "big"]
    assert partnered and all(c.anova == "small" and
                             c.anova_formula == "Yield ~ 0 + (1 | Batch)"
                             for c in partnered)
    assert all(c.anova_formula is None for c in cases if c.spec == "small")
    check_error(tmp_path, [small, entry(spec="big", anova="smal")],
                r"entry 1 .*anova: 'smal' must be another spec on dataset 'Dyestuff' "
                r"\(its specs: small\)")
    check_error(tmp_path, [entry(spec="big", anova="big")], r"anova: 'big' must be another spec")
    check_error(tmp_path, [small, entry(spec="big", anova=["small"])],
                r"entry 1 .*anova \['small'\] must be the spec name")
    # GLMM pairs are fitted alike: the same family, link, nAGQ and weights
    glmm = {**CBPP, "spec": "glmm_big", "anova": "glmm_small"}
    pair = load_catalog(write_catalog(tmp_path, [{**CBPP, "spec": "glmm_small"}, glmm]))
    assert [c.anova_formula for c in pair] == [None, CBPP["formula"]]
    check_error(tmp_path, [{**CBPP, "spec": "glmm_small", "link": "probit"}, glmm],
                r"anova: a pair must be the same kind of model fitted alike.*'glmm_small' "
                r"differs")
    check_error(tmp_path, [entry(spec="lmm_small", dataset="cbpp",
                                 formula="incidence ~ 1 + (1 | herd)"), {**glmm, "anova":
                                                                         "lmm_small"}],
                r"anova: a pair must be the same kind of model")


def test_prediction_grids_are_checked_and_crossed_as_expand_grid(tmp_path):
    from harness.adapters.mixedref_impl import grid_frame
    from harness.core.catalog import grid_label, load_data

    grid = {"Batch": ["A", "new"], "Yield": [1500, 1512.5, 1600.0]}
    (case, *_) = load_catalog(write_catalog(tmp_path, [entry(predict_grid=grid)]))
    assert case.predict_grid == grid
    # R's as.character: 1600.0 is "1600"; the label is what a recording says it predicted at
    assert grid_label(grid) == "Batch=A,new; Yield=1500,1512.5,1600"
    nd = grid_frame(load_data(case), grid)
    # expand.grid: the first column varies fastest; a new level joins the categories
    assert list(nd["Batch"].astype(str)) == ["A", "new"] * 3
    assert list(nd["Yield"]) == [1500, 1500, 1512.5, 1512.5, 1600, 1600]
    assert "new" in list(nd["Batch"].cat.categories)
    check_error(tmp_path, [entry(predict_grid={"Batch": []})],
                r"predict_grid: Batch must be a non-empty list of numbers or level names")
    check_error(tmp_path, [entry(predict_grid={"Day": [1]})],
                r"predict_grid: 'Day' is not a column of dataset 'Dyestuff'")
    check_error(tmp_path, [entry(predict_grid=[1, 2])], r"predict_grid \[1, 2\] must be a mapping")
