"""The fit's tables (issue 23): computed on first access, not by the fit; built by their fast
constructors with exactly the frames pandas' general constructors give; shared pieces (the
fixed effects' Index, VarCorr's columns) private to each fit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedref
from mixedref.models import basefit
from mixedref.models.basefit import VARCORR_COLUMNS, varcorr_frame, varcorr_groups, varcorr_rows


@pytest.fixture(scope="module")
def fits() -> dict[str, mixedref.LmerFit]:
    from harness.core import runner
    from harness.core.catalog import load_catalog

    cases = {c.id: c for c in load_catalog()}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cid in ("sleepstudy-slopes-REML", "sleepstudy-uncorrelated-ML",
                    "Penicillin-crossed-REML", "Pastes-nested-REML", "cake-interaction-REML"):
            case = cases[cid]
            out[cid] = mixedref.lmer(case.formula, runner.case_data(case),
                                     REML=bool(case.REML))
    return out


def _by_rows(terms, theta, sigma, residual):
    """VarCorr's frame as pandas builds it from the rows (dicts): the reference."""
    pieces = basefit.split_theta(theta, terms)
    covs = [(grp, t.columns, sigma**2 * t.covariance(th)) for grp, t, th in
            zip(varcorr_groups([t.group for t in terms]), terms, pieces, strict=True)]
    return pd.DataFrame(varcorr_rows(covs, sigma if residual else None),
                        columns=list(VARCORR_COLUMNS))


@pytest.mark.parametrize("from_arrays", [True, False])
def test_varcorr_frame_is_the_frame_of_its_rows(fits, monkeypatch, from_arrays) -> None:
    """varcorr_frame equals pandas' frame of varcorr_rows exactly (values, dtypes, index and
    columns) with the residual row and without (glmer), at θ̂ and on the boundary, by
    DataFrame._from_arrays and by the public constructor it falls back to."""
    if not from_arrays:
        monkeypatch.delattr(pd.DataFrame, "_from_arrays")
    for cid, m in fits.items():
        for theta in (m.theta, np.zeros_like(m.theta)):
            for residual in (True, False):
                got = varcorr_frame(m.model.reterms, theta, m.sigma, residual)
                want = _by_rows(m.model.reterms, theta, m.sigma, residual)
                pd.testing.assert_frame_equal(got, want, check_exact=True)
                assert got.columns.dtype == want.columns.dtype, cid
                assert list(got.dtypes) == list(want.dtypes), cid


def test_tables_are_computed_on_access(fits) -> None:
    """The fit stores θ, the criterion and the optimizer's report; the solution at θ̂ and the
    tables from it appear only when asked for (loglik needs none of them)."""
    m = fits["sleepstudy-slopes-REML"].update()
    m.loglik  # noqa: B018
    assert not {"_sol", "fixef", "se", "vcov", "varcorr", "ranef", "sigma"} & set(vars(m))
    m.fixef  # noqa: B018
    assert {"_sol", "fixef"} <= set(vars(m)) and "varcorr" not in vars(m)


def test_shared_pieces_stay_private_to_each_fit(fits) -> None:
    """The fixed effects' Index and VarCorr's columns are built once per names and shared as
    views: a name set on one fit's index or columns, or a value set in its VarCorr, leaves
    every other fit's alone."""
    a = fits["sleepstudy-slopes-REML"]
    b = a.update()
    a.fixef.index.name = "term"
    a.varcorr.columns.name = "what"
    a.varcorr.loc[0, "grp"] = "changed"
    assert b.fixef.index.name is None and b.se.index.name is None
    assert b.varcorr.columns.name is None and b.varcorr.loc[0, "grp"] == "Subject"
    c = b.update()
    assert c.fixef.index.name is None and c.varcorr.columns.name is None


def test_interaction_groups_as_pandas_would_code_them() -> None:
    """An interaction grouping factor's codes (GroupCodes, finalize_group) are those of the
    pandas Categorical of its observed combinations after the rows kept, unused levels dropped
    (fixed.finalize): random codes with missing values and rows dropped."""
    from mixedref.frontend import fixed
    from mixedref.frontend.design import GroupCodes, finalize_group

    rng = np.random.default_rng(23)
    for _ in range(300):
        k, n = int(rng.integers(1, 12)), int(rng.integers(1, 60))
        labels = tuple(f"l{j}" for j in range(k))
        codes = rng.integers(-1, k, n)
        keep = None if rng.random() < 0.3 else rng.random(n) < 0.7
        want = fixed.finalize("g", pd.Categorical.from_codes(
            codes, categories=pd.Index(list(labels), dtype=fixed.STR_DTYPE)), keep)
        got = finalize_group("g", GroupCodes(codes, labels), keep)
        assert got.levels == want.levels and got.codes.dtype == want.codes.dtype
        np.testing.assert_array_equal(got.codes, want.codes)
