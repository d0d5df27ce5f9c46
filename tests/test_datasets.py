"""Tests of harness.core.datasets and harness.generate.simulate: types and level order as recorded,
truth for
the simulated designs, committed files equal to a regeneration from the seeds, and (with R)
the files equal to lme4's own datasets and read identically by r_scripts/catalog.R."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core.datasets import (
    DatasetError,
    dataset_info,
    dataset_names,
    load_dataset,
    package_data_dir,
)
from harness.generate import simulate

ROOT = Path(__file__).resolve().parents[1]
LME4_DATASETS = ["sleepstudy", "Dyestuff", "Dyestuff2", "Penicillin", "Pastes", "cake", "InstEval"]
DERIVED = ["cbpp_binary"]  # source lme4-derived: computed from an lme4 dataset by export_datasets.R
SIMULATED = list(simulate.REGISTRY)
GLMM_DESIGNS = [
    "sim_glmm_slopes",
    "sim_glmm_crossed",
    "sim_glmm_rare",
    "sim_glmm_separation",
    "sim_glmm_olre",
    "sim_glmm_poisson_slopes",
    "sim_glmm_gamma",
    "sim_glmm_trials",
]
#: prior weights of a GLMM design's model (a column of the data), where it has them
GLMM_WEIGHTS = {"sim_glmm_trials": "n"}


def test_all_expected_datasets_are_present():
    names = dataset_names()
    assert set(LME4_DATASETS) <= set(names)
    assert set(DERIVED) <= set(names)
    assert set(SIMULATED) <= set(names)
    assert set(GLMM_DESIGNS) <= set(SIMULATED)


@pytest.mark.parametrize("name", LME4_DATASETS + DERIVED + SIMULATED)
def test_dataset_loads_with_recorded_types(name):
    df = load_dataset(name)
    info = dataset_info(name)
    assert list(df.columns) == [c["name"] for c in info["columns"]]
    assert len(df) == info["nrow"] > 0
    for col in info["columns"]:
        s = df[col["name"]]
        if col["type"] in ("factor", "ordered"):
            assert isinstance(s.dtype, pd.CategoricalDtype)
            assert list(s.cat.categories) == col["levels"]
            assert s.cat.ordered == (col["type"] == "ordered")
            assert not s.isna().any()
        elif col["type"] == "integer":
            assert s.dtype == np.int64
        else:
            assert s.dtype == np.float64
            assert np.isfinite(s).all()


def test_r_level_order_is_kept():
    # facts from R 4.2.2 / lme4 1.1-31: levels(cake$temperature), levels(InstEval$dept)[1:3]
    cake = load_dataset("cake")
    assert cake["temperature"].cat.ordered
    assert list(cake["temperature"].cat.categories) == ["175", "185", "195", "205", "215", "225"]
    assert cake["angle"].dtype == np.int64
    inst = load_dataset("InstEval")
    assert list(inst["dept"].cat.categories[:3]) == ["15", "5", "10"]
    assert inst["studage"].cat.ordered and inst["lectage"].cat.ordered
    assert not inst["service"].cat.ordered
    assert (len(inst), inst["s"].nunique(), inst["d"].nunique()) == (73421, 2972, 1128)


def test_sleepstudy_fdays_is_a_factor_copy_of_days():
    d = load_dataset("sleepstudy")
    assert list(d["fDays"].cat.categories) == [str(i) for i in range(10)]
    assert (d["fDays"].astype(str).astype(float) == d["Days"]).all()


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(DatasetError, match=r"unknown dataset 'nope'.*sleepstudy"):
        load_dataset("nope")
    with pytest.raises(DatasetError, match="unknown dataset"):
        dataset_info("nope")


def test_load_returns_a_fresh_copy():
    a = load_dataset("Dyestuff")
    a.loc[0, "Yield"] = -1.0
    assert load_dataset("Dyestuff").loc[0, "Yield"] != -1.0


def test_files_are_small():
    sizes = {p.name: p.stat().st_size for p in package_data_dir().glob("*.csv.gz")}
    assert sizes["InstEval.csv.gz"] < 1_000_000
    assert sum(sizes.values()) < 2_000_000


def test_user_data_dir_is_searched_first(tmp_path):
    df = pd.DataFrame(
        {
            "y": [1.5, 2.5, 3.0, 4.0],
            "g": pd.Categorical(["b", "a", "b", "a"], categories=["b", "a"]),
        }
    )
    with gzip.open(tmp_path / "mine.csv.gz", "wb") as f:
        f.write(simulate.csv_bytes(df))
    meta = {
        "datasets": {
            "mine": {
                "source": "user",
                "file": "mine.csv.gz",
                "nrow": 4,
                "columns": simulate.column_metadata(df),
            }
        }
    }
    (tmp_path / "datasets.yaml").write_text(json.dumps(meta))  # JSON is YAML
    got = load_dataset("mine", [tmp_path])
    pd.testing.assert_frame_equal(got, df)
    assert "mine" in dataset_names([tmp_path]) and "sleepstudy" in dataset_names([tmp_path])


def test_file_not_matching_metadata_is_reported(tmp_path):
    df = pd.DataFrame({"y": [1.0], "g": pd.Categorical(["z"])})
    with gzip.open(tmp_path / "bad.csv.gz", "wb") as f:
        f.write(simulate.csv_bytes(df))
    cols = [{"name": "y", "type": "numeric"}, {"name": "g", "type": "factor", "levels": ["a"]}]
    meta = {"datasets": {"bad": {"source": "user", "file": "bad.csv.gz", "columns": cols}}}
    (tmp_path / "datasets.yaml").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"'bad', column 'g'.*\['z'\]"):
        load_dataset("bad", [tmp_path])


# ---- simulated designs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SIMULATED)
def test_simulated_truth_is_recorded(name):
    info = dataset_info(name)
    assert info["source"] == "simulated"
    assert info["seed"] == simulate.REGISTRY[name].seed
    assert info["generator"].startswith("harness.generate.simulate:")
    truth = info["truth"]
    glmm = "family" in truth
    nb = glmm and truth["family"] == "negative.binomial"  # glmer.nb: its dispersion too
    assert set(truth) == ({"beta", "sigma", "varcorr"} | ({"family", "link"} if glmm else set())
                          | ({"nb_theta"} if nb else set()))
    if nb:
        assert truth["nb_theta"] > 0
    assert "(Intercept)" in truth["beta"]
    if glmm and truth["family"] in simulate.FIXED_DISPERSION_FAMILIES:
        # as lme4's glmer reports binomial and Poisson fits: sigma 1, no residual row
        assert truth["sigma"] == 1.0
        assert all(row["grp"] != "Residual" for row in truth["varcorr"])
    else:
        assert truth["varcorr"][-1]["grp"] == "Residual"
        assert truth["varcorr"][-1]["sdcor"] == pytest.approx(truth["sigma"])
        assert [row["grp"] for row in truth["varcorr"]].count("Residual") == 1
    for row in truth["varcorr"]:
        assert set(row) == {"grp", "var1", "var2", "vcov", "sdcor"}
        if row["var2"] is None:  # a standard deviation: vcov = sd^2
            assert row["vcov"] == pytest.approx(row["sdcor"] ** 2, rel=1e-12, abs=0)
        else:
            assert -1.0 <= row["sdcor"] <= 1.0


@pytest.mark.parametrize("name", SIMULATED)
def test_regeneration_equals_committed_file(name):
    """A change to a generator (or its seed) shows here: rerun `python -m harness.generate.simulate
    --write`.

    Numbers are compared to 1e-13 relative rather than bit for bit only to tolerate a last-bit
    difference of libm or SIMD summation on another machine; any real change is far larger.
    """
    df, truth = simulate.simulate(name)
    committed = load_dataset(name)
    assert list(df.columns) == list(committed.columns)
    assert len(df) == len(committed)
    for col in df.columns:
        a, b = df[col], committed[col]
        if isinstance(a.dtype, pd.CategoricalDtype):
            assert list(a.cat.categories) == list(b.cat.categories), col
            assert (a.astype(str).to_numpy() == b.astype(str).to_numpy()).all(), col
        else:
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-13, atol=0, err_msg=col)
    _, entry = simulate.metadata_entry(name)
    info = dataset_info(name)
    for key in ("seed", "generator", "formula", "nrow", "columns", "truth", "description"):
        assert info[key] == entry[key], key


@pytest.mark.parametrize("name", GLMM_DESIGNS)
def test_glmm_design_reproduces_from_its_seed(name):
    """The same seed gives the same data and truth, another seed other data (same layout)."""
    seed = simulate.REGISTRY[name].seed
    df1, truth1 = simulate.simulate(name)
    df2, truth2 = simulate.simulate(name, seed)
    pd.testing.assert_frame_equal(df1, df2)
    assert truth1 == truth2
    df3, truth3 = simulate.simulate(name, seed + 1)
    assert list(df3.columns) == list(df1.columns) and len(df3) == len(df1)
    assert truth3 == truth1  # the truth is the design's, not the draw's
    response = simulate.REGISTRY[name].formula.split("~")[0].strip()
    assert not df3[response].equals(df1[response])


@pytest.mark.parametrize("name", GLMM_DESIGNS)
def test_glmm_truth_has_family_and_link(name):
    truth = dataset_info(name)["truth"]
    assert (truth["family"], truth["link"]) in {
        ("binomial", "logit"),
        ("poisson", "log"),
        ("Gamma", "log"),
    }
    assert truth == json.loads(json.dumps(simulate.simulate(name)[1]))
    # the response suits the family: 0/1 or a proportion, a count, a positive number
    d = load_dataset(name)
    y = d[simulate.REGISTRY[name].formula.split("~")[0].strip()]
    if truth["family"] == "binomial":
        assert ((y >= 0) & (y <= 1)).all() and y.dtype == np.float64
        if name not in GLMM_WEIGHTS:
            assert set(y.unique()) == {0.0, 1.0}
    elif truth["family"] == "poisson":
        assert y.dtype == np.int64 and (y >= 0).all()
    else:
        assert (y > 0).all()


def test_glmm_truth_helper_follows_lme4s_residual_convention():
    comps = [("g", ["(Intercept)"], [0.5], None)]
    beta = {"(Intercept)": 0.0}
    tr = simulate.glmm_truth("poisson", "log", beta, comps)
    assert tr["sigma"] == 1.0 and [r["grp"] for r in tr["varcorr"]] == ["g"]
    tr = simulate.glmm_truth("Gamma", "log", beta, comps, sigma=0.5)
    assert [r["grp"] for r in tr["varcorr"]] == ["g", "Residual"]
    assert tr["varcorr"][-1]["vcov"] == 0.25
    with pytest.raises(ValueError, match="no scale parameter"):
        simulate.glmm_truth("binomial", "logit", beta, comps, sigma=1.0)
    with pytest.raises(ValueError, match="has a scale parameter"):
        simulate.glmm_truth("Gamma", "log", beta, comps)
    # the LMM truth is unchanged: a residual row last, no family
    lmm = simulate.truth(beta, 2.0, comps)
    assert set(lmm) == {"beta", "sigma", "varcorr"} and lmm["varcorr"][-1]["grp"] == "Residual"


def test_glmm_design_properties():
    """The GLMM designs do what their descriptions promise (checked on the committed data)."""
    d = load_dataset("sim_glmm_crossed")  # fully crossed, every pair once
    assert (pd.crosstab(d["subj"], d["item"]).to_numpy() == 1).all()
    assert (d["subj"].nunique(), d["item"].nunique()) == (40, 30)
    d = load_dataset("sim_glmm_rare")
    assert 0.005 < d["y"].mean() < 0.03
    assert (d.groupby("g", observed=True)["y"].sum() == 0).any()
    d = load_dataset("sim_glmm_separation")
    assert list(d["z"].cat.categories) == ["a", "b"]
    assert 0.35 < (d["z"] == "b").mean() < 0.65
    b = d[d["z"] == "b"]
    assert (b.groupby("g", observed=True)["y"].min() == 1).sum() >= 3  # all-1 z = b cells
    assert 0 < b["y"].mean() < 1 and 0 < d["y"].mean() < 1  # but not separated when pooled
    d = load_dataset("sim_glmm_olre")
    assert d["obs"].nunique() == len(d)
    assert d["y"].var() > 1.5 * d["y"].mean()  # overdispersed
    d = load_dataset("sim_glmm_poisson_slopes")
    assert -1 <= d["x"].min() and d["x"].max() <= 1
    d = load_dataset("sim_glmm_trials")
    assert d["n"].between(5, 20).all() and (d["k"] <= d["n"]).all()
    np.testing.assert_array_equal(d["prop"], d["k"] / d["n"])
    for name in GLMM_DESIGNS:  # covariates rounded to 3 decimals, as the LMM designs
        x = load_dataset(name)["x"]
        np.testing.assert_allclose(x, np.round(x, 3), rtol=0, atol=1e-12)


def test_cbpp_binary_is_cbpp_one_row_per_animal():
    cbpp = load_dataset("cbpp")
    binary = load_dataset("cbpp_binary")
    assert list(binary.columns) == ["herd", "period", "y"]
    assert len(binary) == cbpp["size"].sum()
    assert set(binary["y"].unique()) <= {0.0, 1.0} and binary["y"].dtype == np.float64
    for col in ("herd", "period"):
        assert list(binary[col].cat.categories) == list(cbpp[col].cat.categories)
    keys = ["herd", "period"]
    got = binary.groupby(keys, observed=True)["y"].agg(["sum", "size"])
    want = cbpp.groupby(keys, observed=True)[["incidence", "size"]].sum()
    assert len(got) == len(want)
    got, want = got.sort_index(), want.sort_index()
    np.testing.assert_array_equal(got["sum"].to_numpy(), want["incidence"].to_numpy())
    np.testing.assert_array_equal(got["size"].to_numpy(), want["size"].to_numpy())
    info = dataset_info("cbpp_binary")
    assert info["source"] == "lme4-derived" and "cbpp" in info["description"]


def test_design_properties():
    """The designs do what their names promise (checked on the generated data)."""
    d = load_dataset("sim_unbalanced")
    sizes = d["g"].value_counts()
    assert sizes.min() == 1 and sizes.max() == 40
    d = load_dataset("sim_many_groups")
    assert d["g"].nunique() >= 2000 and 5_000 <= len(d) <= 20_000
    d = load_dataset("sim_crossed_partial")
    seen = pd.crosstab(d["a"], d["b"]) > 0
    assert 0 < seen.to_numpy().mean() < 1  # crossed, only partly
    assert abs(load_dataset("sim_scale_large")["y"]).median() > 1e5
    assert abs(load_dataset("sim_scale_small")["y"]).median() < 1e-5
    assert load_dataset("sim_huge_offset")["y"].min() > 1e9 - 100
    d = load_dataset("sim_collinear")
    assert 0.999999 < np.corrcoef(d["x1"], d["x2"])[0, 1] < 1.0
    d = load_dataset("sim_singular")  # noise centred in groups: group means on the true line
    beta = dataset_info("sim_singular")["truth"]["beta"]
    resid = d["y"] - beta["(Intercept)"] - beta["x"] * d["x"]
    assert np.allclose(resid.groupby(d["g"], observed=True).mean(), 0.0, atol=1e-12)


RECORDED = json.loads((ROOT / "harness" / "references" / "lme4.json").read_text())["records"]


def _corr(rows):
    return {(r["var1"], r["var2"]): r["sdcor"] for r in rows if r["var2"] is not None}


@pytest.mark.parametrize("name", ["sim_corr3", "sim_corr_plus1", "sim_corr_minus1"])
def test_lme4_recovers_the_declared_correlations(name):
    """The data carry the correlations their truth declares: lme4's REML estimates (recorded)
    are within 0.1 of each, and a declared +-1 is estimated at (or next to) that boundary."""
    truth = _corr(dataset_info(name)["truth"]["varcorr"])
    case = next(cid for cid in RECORDED if cid.startswith(f"{name}-") and cid.endswith("-REML"))
    est = _corr(RECORDED[case]["varcorr"])
    assert set(est) == set(truth)
    for key, rho in truth.items():
        assert est[key] == pytest.approx(rho, abs=0.1), key
        if abs(rho) == 1:
            assert est[key] * rho > 0.95, key


def test_tiny_variance_is_tiny_in_the_data():
    """sim_tiny_variance's group variance is below what its 400 rows can resolve: lme4's
    estimate sits on the boundary (singular), as the design intends."""
    rec = RECORDED["sim_tiny_variance-intercept-REML"]
    assert rec["singular"] and rec["varcorr"][0]["vcov"] < 1e-6 * rec["sigma"] ** 2


def test_simulated_designs_are_registered_with_docstrings():
    for d in simulate.REGISTRY.values():
        response = d.formula.split("~")[0].strip()
        assert d.description
        assert response in [c["name"] for c in dataset_info(d.name)["columns"]], d.name
    with pytest.raises(ValueError, match="registered twice"):
        simulate.design("sim_singular", seed=1, formula="y ~ 1 + (1 | g)")(lambda rng: None)


def test_write_keeps_other_entries(tmp_path):
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n  other: {source: lme4, file: other.csv.gz, columns: []}\n"
    )
    simulate.write_all(tmp_path, ["sim_singular"])
    meta = simulate.read_metadata(tmp_path)
    assert list(meta) == ["other", "sim_singular"]
    pd.testing.assert_frame_equal(
        load_dataset("sim_singular", [tmp_path]), load_dataset("sim_singular")
    )


# ---- against R ------------------------------------------------------------------------------


@pytest.mark.needs_r
def test_files_equal_lme4s_own_datasets(catalog_rscript):
    out = json.loads(catalog_rscript("print_lme4_dataset_check()"))
    assert set(LME4_DATASETS) <= set(out["checked"])  # and any lme4 dataset added since
    assert out["problems"] == []


@pytest.mark.needs_r
@pytest.mark.parametrize(
    "name", [n for n in LME4_DATASETS if n != "InstEval"] + DERIVED + SIMULATED
)
def test_r_reads_the_same_data(name, catalog_rscript):
    out = json.loads(catalog_rscript(f'print_dataset_exact("{name}")'))
    df = load_dataset(name)
    assert out["names"] == list(df.columns)
    for col, rcol in zip(df.columns, out["columns"], strict=True):
        s = df[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            assert rcol["class"] == (["ordered", "factor"] if s.cat.ordered else ["factor"])
            assert rcol["levels"] == list(s.cat.categories)
            assert rcol["values"] == list(s.astype(str))
        else:
            assert rcol["class"] == (["integer"] if s.dtype == np.int64 else ["numeric"])
            assert np.array_equal(np.array(rcol["values"], dtype=float), s.to_numpy(float))


_GLMER_FIT = """
fit_one <- function(name, weights) {
  info <- read_dataset_meta(harness_data_dir())[[name]]
  d <- read_dataset(name)
  fam <- get(info$truth$family)(link = info$truth$link)
  w <- if (nzchar(weights)) d[[weights]] else NULL
  m <- suppressWarnings(glmer(as.formula(info$formula), data = d, family = fam, weights = w))
  vc <- as.data.frame(VarCorr(m))
  list(name = name, family = family(m)$family, link = family(m)$link, sigma = sigma(m),
       beta = as.list(fixef(m)), grp = I(vc$grp), var1 = I(ifelse(is.na(vc$var1), "", vc$var1)),
       var2 = I(ifelse(is.na(vc$var2), "", vc$var2)), vcov = I(vc$vcov))
}
"""


@pytest.mark.needs_r
def test_lme4_fits_the_glmm_designs_with_the_truths_layout(catalog_rscript):
    """glmer (the truth's family and link, prior weights where the design has them) fits every
    GLMM design, with finite estimates (sim_glmm_separation too), and reports the fixed effects
    and the VarCorr rows (grp, var1, var2, in order; a residual row only for Gamma) that the
    truth names, and sigma = 1 where the family has no scale parameter."""
    calls = ", ".join(f'fit_one("{n}", "{GLMM_WEIGHTS.get(n, "")}")' for n in GLMM_DESIGNS)
    code = (
        "suppressPackageStartupMessages(library(lme4)); "
        + _GLMER_FIT
        + f"cat(jsonlite::toJSON(list({calls}), auto_unbox = TRUE, digits = NA))"
    )
    fits = json.loads(catalog_rscript(code))
    assert [f["name"] for f in fits] == GLMM_DESIGNS
    for fit in fits:
        truth = dataset_info(fit["name"])["truth"]
        assert (fit["family"], fit["link"]) == (truth["family"], truth["link"]), fit["name"]
        assert list(fit["beta"]) == list(truth["beta"]), fit["name"]
        assert np.isfinite(list(fit["beta"].values())).all(), fit["name"]
        assert np.isfinite(fit["vcov"]).all() and np.isfinite(fit["sigma"]), fit["name"]
        layout = [(r["grp"], r["var1"] or "", r["var2"] or "") for r in truth["varcorr"]]
        est = [tuple(t) for t in zip(fit["grp"], fit["var1"], fit["var2"], strict=True)]
        assert est == layout, fit["name"]
        if truth["family"] in simulate.FIXED_DISPERSION_FAMILIES:
            assert fit["sigma"] == 1.0, fit["name"]
