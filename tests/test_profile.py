"""mixedref.inference.profile / confint against lme4's profile(m), confint(m) and confint(m, "Wald")
(tests/references/inference.json, written by r_scripts/inference_references.R), and the
properties a profile must have.

Tolerance of the profile intervals, from lme4's own spread: lme4 interpolates a spline through
a grid of ζ values, so its interval moves when the grid is refined. The R script measures that
move (default delta.cutoff = 1/8 vs 1/32, maxpts 400) per parameter and side, ``spread``; it is
up to 2e-3 on Dyestuff's sd_(Intercept) lower limit (12.2) and ~1e-4 on sleepstudy's sd's.
mixedref's endpoints are exact roots of the profile, so they should lie within ``spread`` of
lme4's default answer plus the refined grid's own remaining error (a spline error at least
linear in the step, cut 4×, leaves at most spread/3): allowed = 1.5 × spread, plus a floor of
1e-6 relative for the inner optimizations of both sides (and for a spread measured as 0).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, norm

from harness.core.datasets import load_dataset
from mixedref import MixedrefError, glmer, lmer
from mixedref.inference.profile import Profiler, confint, parameter_names, profile

REFS = json.loads((Path(__file__).parent / "references" / "inference.json").read_text())
PROFILES = REFS["profiles"]

SPREAD_FACTOR, FLOOR = 1.5, 1e-6  # see the module docstring

#: lme4's Wald intervals are β̂ ± z·SE of its fit; fixed effects compared in units of their SE
#: (DESIGN.md): sleepstudy's ML optimum differs from lme4's by 4e-5 SE (optimizer spread).
WALD_SE_TOL = 1e-4

#: lme4's ζ at its grid points comes from its inner BOBYQA at default tolerances; ours from a
#: tighter one. Ours may be lower (a better conditional optimum: not a failure, DESIGN.md rule
#: 3), never higher than lme4's by more than the deviance noise; and within ZETA_ATOL of it
#: (largest seen: 8e-4 at sleepstudy's sd_Days = 11.8, where lme4's optimum is the worse one).
DEV_ATOL, ZETA_ATOL = 1e-5, 2e-3

_FITS: dict[str, object] = {}
_CIS: dict[str, pd.DataFrame] = {}
_PROFILERS: dict[str, Profiler] = {}


def fit(case: str):
    """The case's fit, once per module."""
    if case not in _FITS:
        ref = PROFILES[case]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dyestuff2 is singular, as lme4 says too
            _FITS[case] = lmer(ref["formula"], load_dataset(ref["dataset"]), REML=ref["REML"])
    return _FITS[case]


def profile_ci(case: str) -> pd.DataFrame:
    if case not in _CIS:
        _CIS[case] = confint(fit(case))
    return _CIS[case]


def profiler(case: str) -> Profiler:
    if case not in _PROFILERS:
        _PROFILERS[case] = Profiler(fit(case))
    return _PROFILERS[case]


def lme4_ci(case: str, key: str) -> pd.DataFrame:
    c = PROFILES[case][key]
    return pd.DataFrame({c["colnames"][0]: c["lower"], c["colnames"][1]: c["upper"]},
                        index=c["rownames"]).astype(float)


#: sleepstudy under ML has the same ML profile as under REML (lme4 refits): profiled once.
PROFILED = ["sleepstudy-slopes-REML", "Penicillin-crossed-REML", "Dyestuff-ML",
            "Dyestuff2-singular-ML"]


@pytest.mark.parametrize("case", PROFILED)
def test_profile_intervals_match_lme4(case: str) -> None:
    got, want = profile_ci(case), lme4_ci(case, "profile_ci")
    spread = PROFILES[case]["spread"]
    assert list(got.index) == list(want.index) == parameter_names(fit(case))
    assert list(got.columns) == list(want.columns) == ["2.5 %", "97.5 %"]
    rows = []
    for j, side in enumerate(["lower", "upper"]):
        for i, name in enumerate(want.index):
            ref, cand = want.iloc[i, j], got.iloc[i, j]
            allowed = SPREAD_FACTOR * spread[side][i] + FLOOR * max(1.0, abs(ref))
            rows.append((name, side, ref, cand, cand - ref, allowed))
    bad = [r for r in rows if not abs(r[4]) <= r[5]]
    table = "\n".join(f"{n:32s} {s:5s} {r:.8g} {c:.8g} {d:+.3g} {a:.3g}"
                      for n, s, r, c, d, a in rows)
    assert not bad, "name side lme4 mixedref diff allowed\n" + table


def test_reml_fit_profiles_the_ml_deviance() -> None:
    """As lme4's devfun2 (refitML): a REML fit's profile is the ML fit's."""
    reml, ml = fit("sleepstudy-slopes-REML"), fit("sleepstudy-slopes-ML")
    assert profiler("sleepstudy-slopes-REML").deviance == pytest.approx(ml.objective, abs=1e-7)
    assert PROFILES["sleepstudy-slopes-REML"]["ml_deviance"] == pytest.approx(
        ml.objective, abs=1e-6)
    got = confint(ml, "sigma")
    np.testing.assert_allclose(got.to_numpy(), profile_ci("sleepstudy-slopes-REML")
                               .loc[["sigma"]].to_numpy(), rtol=1e-8)
    assert reml.REML  # the fit itself is untouched


def test_singular_fit_lower_limit_is_the_bound() -> None:
    """Dyestuff2's σ_Batch estimate is 0: ζ never reaches -1.96, lme4 reports 0."""
    assert profile_ci("Dyestuff2-singular-ML").loc["sd_(Intercept)|Batch", "2.5 %"] == 0.0
    assert lme4_ci("Dyestuff2-singular-ML", "profile_ci").iloc[0, 0] == 0.0


def _lme4_rows(case: str, step: int) -> list[dict]:
    df = pd.DataFrame(PROFILES[case]["profile"])
    return df.iloc[::step].to_dict("records")


@pytest.mark.parametrize("case,step", [("sleepstudy-slopes-ML", 4),
                                       ("Penicillin-crossed-REML", 3), ("Dyestuff-ML", 2),
                                       ("Dyestuff2-singular-ML", 2)])
def test_zeta_at_lme4_grid_points(case: str, step: int) -> None:
    """At lme4's own grid values, our exact ζ is no worse an optimum than lme4's, and close."""
    prof = profiler(case)
    bad = []
    for row in _lme4_rows(case, step):
        k = prof.names.index(row[".par"])
        z, _ = prof.zeta(k, row[".focal"])
        zl = row[".zeta"]
        worse = z * z > zl * zl + DEV_ATOL
        better = z * z < zl * zl - DEV_ATOL  # lme4's inner optimum the worse one: not ours
        if worse or (abs(z - zl) > ZETA_ATOL and not better) or z * zl < 0:
            bad.append((row[".par"], row[".focal"], zl, z))
    assert not bad, f"(par, value, lme4 zeta, mixedref zeta): {bad}"


@pytest.mark.parametrize("case", ["sleepstudy-slopes-ML", "Penicillin-crossed-REML"])
def test_deviance_at_lme4_profile_points(case: str) -> None:
    """Our ML deviance at the (sd, cor, σ) lme4 reports along its variance profiles gives
    lme4's ζ: the two criteria agree at lme4's points, whoever optimized better."""
    prof = profiler(case)
    dev0 = PROFILES[case]["ml_deviance"]
    for row in _lme4_rows(case, 3):
        if prof.names.index(row[".par"]) >= prof.nvar:
            continue  # β rows: lme4 does not report σ's conditional optimum there
        phi = np.array([row[n] for n in prof.names[:prof.nvar]])
        assert prof.var_deviance(phi) - dev0 == pytest.approx(row[".zeta"] ** 2, abs=1e-6)


def test_profile_table_shape_and_properties() -> None:
    """Columns as lme4's as.data.frame(profile): .zeta, the parameters, .par, .focal; ζ = 0 at
    the estimate and increasing in the focal value along every parameter's profile."""
    m = fit("Dyestuff-ML")
    tab = profile(m, npoints=4)
    assert list(tab.columns) == list(PROFILES["Dyestuff-ML"]["profile"])
    prof = profiler("Dyestuff-ML")
    for k, name in enumerate(prof.names):
        sub = tab[tab[".par"] == name].sort_values(".focal")
        assert len(sub) == 9
        assert np.all(np.diff(sub[".zeta"].to_numpy()) > 0), name
        at_est = sub[np.isclose(sub[".focal"], prof.estimate[k], rtol=1e-12)]
        assert at_est[".zeta"].abs().max() < 1e-6, name
        np.testing.assert_allclose(sub[name], sub[".focal"], rtol=1e-12)
        cutoff = math.sqrt(chi2.ppf(0.99, len(prof.names)))
        assert sub[".zeta"].abs().max() == pytest.approx(cutoff, rel=1e-6)


def test_profile_at_given_values() -> None:
    tab = profile(fit("Dyestuff-ML"), values={"sigma": [40.0, 60.0]})
    assert tab[".par"].tolist() == ["sigma", "sigma"]
    assert tab[".zeta"].iloc[0] < 0 < tab[".zeta"].iloc[1]


@pytest.mark.parametrize("case", sorted(PROFILES))
def test_wald_matches_lme4(case: str) -> None:
    got, want = confint(fit(case), method="Wald"), lme4_ci(case, "wald")
    assert list(got.index) == list(want.index)
    assert list(got.columns) == list(want.columns)
    np.testing.assert_array_equal(got.isna(), want.isna())  # variance rows NaN, as lme4
    se = fit(case).se.to_numpy()[:, None]
    diff = np.abs(got.dropna().to_numpy() - want.dropna().to_numpy())
    assert np.all(diff <= WALD_SE_TOL * se), diff / se


def test_wald_is_symmetric_about_fixef() -> None:
    m = fit("sleepstudy-slopes-REML")
    ci = confint(m, "beta_", method="Wald", level=0.9)
    assert list(ci.columns) == ["5 %", "95 %"]
    np.testing.assert_allclose(ci.mean(axis=1), m.fixef, rtol=1e-14)
    np.testing.assert_allclose((ci["95 %"] - ci["5 %"]) / 2, norm.ppf(0.95) * m.se,
                               rtol=1e-12)


def test_errors() -> None:
    m = fit("Dyestuff-ML")
    with pytest.raises(MixedrefError, match="method"):
        confint(m, method="boot")
    with pytest.raises(MixedrefError, match="level"):
        confint(m, level=1.5)
    with pytest.raises(MixedrefError, match="unknown parameters"):
        confint(m, ["sd_nope"], method="Wald")
    with pytest.raises(MixedrefError, match="unknown parameters"):
        profile(m, ["sd_nope"])
    g = glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
              load_dataset("cbpp"), "binomial")
    with pytest.raises(MixedrefError, match="LmerFit"):
        confint(g)
