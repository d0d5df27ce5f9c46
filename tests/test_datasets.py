"""Tests of harness.datasets and harness.simulate: types and level order as recorded, truth for
the simulated designs, committed files equal to a regeneration from the seeds, and (with R)
the files equal to lme4's own datasets and read identically by r_scripts/catalog.R."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import simulate
from harness.datasets import (
    DatasetError,
    dataset_info,
    dataset_names,
    load_dataset,
    package_data_dir,
)

ROOT = Path(__file__).resolve().parents[1]
LME4_DATASETS = ["sleepstudy", "Dyestuff", "Dyestuff2", "Penicillin", "Pastes", "cake", "InstEval"]
SIMULATED = list(simulate.REGISTRY)


def test_all_expected_datasets_are_present():
    names = dataset_names()
    assert set(LME4_DATASETS) <= set(names)
    assert set(SIMULATED) <= set(names)


@pytest.mark.parametrize("name", LME4_DATASETS + SIMULATED)
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
    assert info["generator"].startswith("harness.simulate:")
    truth = info["truth"]
    assert set(truth) == {"beta", "sigma", "varcorr"}
    assert "(Intercept)" in truth["beta"]
    assert truth["varcorr"][-1]["grp"] == "Residual"
    assert truth["varcorr"][-1]["sdcor"] == pytest.approx(truth["sigma"])
    for row in truth["varcorr"]:
        assert set(row) == {"grp", "var1", "var2", "vcov", "sdcor"}
        if row["var2"] is None:  # a standard deviation: vcov = sd^2
            assert row["vcov"] == pytest.approx(row["sdcor"] ** 2, rel=1e-12, abs=0)
        else:
            assert -1.0 <= row["sdcor"] <= 1.0


@pytest.mark.parametrize("name", SIMULATED)
def test_regeneration_equals_committed_file(name):
    """A change to a generator (or its seed) shows here: rerun `python -m harness.simulate --write`.

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
        assert d.description and d.formula.startswith("y ~")
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
@pytest.mark.parametrize("name", [n for n in LME4_DATASETS if n != "InstEval"] + SIMULATED)
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
