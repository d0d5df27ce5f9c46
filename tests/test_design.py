"""build_model against lme4::lFormula: X (values, names), y, dropped columns, each random-effects
term's group, columns, levels and Zt, the term order and theta's length; and the errors.

References: tests/references/design/*.json, written by r_scripts/design_references.R.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mixedref.errors import DataError, FormulaError
from mixedref.frontend.design import build_model

REF_DIR = Path(__file__).parent / "references" / "design"


def _listify(v: object) -> list:
    return v if isinstance(v, list) else [v]


def _column(spec: dict) -> pd.Series | pd.Categorical:
    vals = _listify(spec["values"])
    kind = spec["type"]
    if kind == "factor":
        return pd.Categorical(vals, categories=_listify(spec["levels"]), ordered=spec["ordered"])
    if kind == "logical":
        if any(v is None for v in vals):
            return pd.array(vals, dtype="boolean")
        return np.array(vals, dtype=bool)
    if kind == "character":
        return np.array(vals, dtype=object)
    if kind == "integer" and not any(v is None for v in vals):
        return np.array(vals, dtype=np.int64)
    return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)


@cache
def datasets() -> dict[str, pd.DataFrame]:
    raw = json.loads((REF_DIR / "datasets.json").read_text())
    return {
        name: pd.DataFrame({c: _column(d["columns"][c]) for c in _listify(d["names"])})
        for name, d in raw.items()
    }


@cache
def cases() -> list[dict]:
    return json.loads((REF_DIR / "cases.json").read_text())["cases"]


def _zt(term: dict) -> np.ndarray:
    zt = np.zeros(term["zt_dim"])
    zt[np.asarray(term["zt_i"], int), np.asarray(term["zt_j"], int)] = term["zt_x"]
    return zt


@pytest.mark.parametrize("case", cases(), ids=lambda c: f"{c['dataset']}:{c['formula']}")
def test_matches_lformula(case: dict) -> None:
    data = datasets()[case["dataset"]]
    mf = build_model(case["formula"], data, weights=case.get("weights"))
    assert mf.n == case["n"]
    assert mf.n_dropped_na == case["n_dropped_na"]
    np.testing.assert_allclose(mf.y, case["y"], rtol=1e-13)
    assert list(mf.fixef_names) == _listify(case["X_colnames"])
    np.testing.assert_allclose(mf.X, np.asarray(case["X"]).reshape(mf.n, -1), rtol=1e-12,
                               atol=1e-14)
    assert list(mf.dropped_fixef) == case["dropped"]
    if case["dropped"]:
        assert any(m.startswith(case["messages"][0].strip()) for m in mf.messages)
        assert all(d in mf.messages[-1] for d in case["dropped"])
    if case.get("weights_used") is not None:
        np.testing.assert_allclose(mf.weights, case["weights_used"])
    assert [t.group for t in mf.reterms] == [t["group"] for t in case["terms"]]
    assert mf.ntheta == case["theta_len"]
    np.testing.assert_array_equal(mf.theta_lower, np.asarray(case["lower"], dtype=float))
    for term, ref in zip(mf.reterms, case["terms"], strict=True):
        assert list(term.columns) == _listify(ref["cnms"])
        assert list(term.levels) == _listify(ref["levels"])
        assert term.nlevels == ref["nl"]
        np.testing.assert_allclose(term.Z.T.toarray(), _zt(ref), rtol=1e-13)


def test_ngroups_and_row_index() -> None:
    mf = build_model("strength ~ (1 | batch/cask)", datasets()["Pastes"])
    assert mf.ngroups == {"cask:batch": 30, "batch": 10}
    toy = datasets()["toy"]
    mf = build_model("y ~ x + (1 | h)", toy)
    assert list(mf.row_index) == list(toy.index[toy[["y", "x", "h"]].notna().all(axis=1)])


def test_numeric_grouping_message() -> None:
    mf = build_model("y ~ x + (1 | g)", datasets()["toy"])
    assert any("'g'" in m and "factor" in m for m in mf.messages)


def test_weights_and_offset_as_arrays() -> None:
    toy = datasets()["toy"]
    off = np.arange(len(toy), dtype=float)
    mf = build_model("y ~ x + (1 | h)", toy, weights=toy["w"].to_numpy(), offset=off)
    keep = toy[["y", "x", "h"]].notna().all(axis=1).to_numpy()
    np.testing.assert_array_equal(mf.offset, off[keep])
    np.testing.assert_array_equal(mf.weights, toy["w"].to_numpy()[keep])
    mf = build_model("y ~ x + (1 | h)", toy, offset="x2")
    np.testing.assert_array_equal(mf.offset, toy["x2"].to_numpy()[keep])


def test_string_dtype_and_bool_columns() -> None:
    """pandas' str dtype and plain bool columns behave as R's character and logical."""
    toy = datasets()["toy"].dropna()
    alt = toy.assign(s=toy["s"].astype("str"), lg=toy["lg"].astype(bool), h=toy["h"].astype("str"))
    a = build_model("y ~ x + s + lg + (1 | h)", toy)
    b = build_model("y ~ x + s + lg + (1 | h)", alt)
    assert a.fixef_names == b.fixef_names == (
        "(Intercept)", "x", "s_z", "sa", "sb", "lgTRUE"
    )
    np.testing.assert_array_equal(a.X, b.X)


# ----------------------------------------------------------------------------- errors


def _sleep() -> pd.DataFrame:
    return datasets()["sleepstudy"]


@pytest.mark.parametrize(
    ("data", "formula", "kwargs", "exc", "match"),
    [
        ("list", "Reaction ~ Days + (1 | Subject)", {}, DataError, "must be a pandas DataFrame"),
        ("empty", "Reaction ~ Days + (1 | Subject)", {}, DataError, "empty"),
        ("sleep", "Reaction ~ Dayz + (1 | Subject)", {}, FormulaError, "unknown column 'Dayz'"),
        ("sleep", "Reaction ~ Days + (1 | Subj)", {}, FormulaError, "unknown column 'Subj'"),
        ("sleep", "Subject ~ Days + (1 | Days)", {}, DataError, "response 'Subject' must be"),
        ("dup", "Reaction ~ Days + (1 | Subject)", {}, DataError, "duplicate column.*Days"),
        ("sleep", "Reaction ~ Days + (1 | row)", {}, DataError,
         r"must be < number of observations \(problems: row\)"),
        ("sleep", "Reaction ~ Days + (Days | cell)", {}, DataError,
         r"number of observations \(=180\) <= number of random effects \(=180\) "
         r"for term \(Days \| cell\)"),
        ("sleep", "Reaction ~ Days + (1 | one)", {}, DataError,
         r"> 1 sampled level \(problems: one\)"),
        ("inf", "Reaction ~ Days + (1 | Subject)", {}, DataError, "'Days' has infinite"),
        ("sleep", "Reaction ~ Days + (1 | Subject)", {"weights": "neg"}, DataError,
         "negative weights"),
        ("sleep", "Reaction ~ Days + (1 | Subject)", {"weights": np.ones(3)}, DataError,
         "one value per row"),
        ("sleep", "Reaction ~ Days + (1 | Subject)", {"offset": "nope"}, FormulaError,
         "offset column 'nope'"),
        ("sleep", "Reaction ~ Days", {}, FormulaError, "No random effects terms"),
        ("sleep", "Reaction ~ Days + (1 | Subject", {}, FormulaError, "unbalanced parentheses"),
        ("sleep", "Reaction Days + (1 | Subject)", {}, FormulaError, "missing operator"),
        ("sleep", "Days + (1 | Subject)", {}, FormulaError, "no '~'"),
        ("sleep", "Reaction ~ Days + ( | Subject)", {}, FormulaError, "missing its left side"),
        ("sleep", "Reaction ~ Days + (Days | )", {}, FormulaError, "nothing on its right"),
        ("allna", "Reaction ~ Days + (1 | Subject)", {}, DataError, "0 \\(non-NA\\) cases"),
        ("mixed", "Reaction ~ Days + mix + (1 | Subject)", {}, DataError, "column 'mix' holds"),
        ("sleep", "Reaction ~ lowess(Days) + (1 | Subject)", {}, FormulaError,
         "function 'lowess'.*not supported.*poly, scale, ns, bs"),
        ("sleep", "Reaction ~ I(Subject^2) + (1 | Subject)", {}, FormulaError,
         "arithmetic on the factor"),
    ],
)
def test_errors(data: str, formula: str, kwargs: dict, exc: type, match: str) -> None:
    base = _sleep().assign(
        row=np.arange(180), cell=np.arange(180) // 2, one="a", neg=-1.0
    )
    frames = {
        "sleep": base,
        "list": [1, 2, 3],
        "empty": base.iloc[:0],
        "dup": pd.concat([base, base[["Days"]]], axis=1),
        "inf": base.assign(Days=base["Days"].where(base.index != 4, np.inf)),
        "allna": base.assign(Reaction=np.nan),
        "mixed": base.assign(mix=np.array(["a", 1] * 90, dtype=object)),
    }
    with pytest.raises(exc, match=match):
        build_model(formula, frames[data], **kwargs)


# ----------------------------------------------------------------------------- speed


def test_build_speed_on_sleepstudy(benchmark: Any) -> None:
    """Timed by pytest-benchmark (`./dev bench`), never asserted: ~2 ms here."""
    data = _sleep()
    mf = benchmark.pedantic(build_model, ("Reaction ~ Days + (Days | Subject)", data),
                            rounds=20, iterations=1, warmup_rounds=1)
    assert mf.n == len(data)


def test_build_speed_on_large_frame(benchmark: Any) -> None:
    """InstEval-sized (73k rows, three grouping factors incl. an interaction); timed by
    pytest-benchmark, never asserted (~0.2 s here)."""
    rng = np.random.default_rng(1)
    n = 73421
    data = pd.DataFrame({
        "y": rng.integers(1, 6, n).astype(float),
        "service": pd.Categorical(rng.integers(0, 2, n).astype(str)),
        "s": pd.Categorical(rng.integers(0, 2972, n)),
        "d": pd.Categorical(rng.integers(0, 1128, n)),
        "dept": pd.Categorical(rng.integers(0, 14, n)),
    })
    mf = benchmark.pedantic(build_model, ("y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)",
                                          data), rounds=1, iterations=1)
    assert [t.group for t in mf.reterms] == ["s", "d", "dept:service"]
