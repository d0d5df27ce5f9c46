"""mixedref.glmer_nb against lme4's glmer.nb: recorded by r_scripts/glmer_nb_references.R
(tests/references/glmer_nb.json) on grouseticks and a seeded overdispersed design with known
truth, and live through R where it runs.

Allowances: θ̂ of the negative binomial in log θ to 1e-4 (each side's Brent search stops within
2·tol/3 of its own minimiser, tol = 5e-5: two such stops differ by < 6.7e-5); the fixed
effects, their SEs, the covariance parameters and logLik as the harness's GLMM tolerance
(harness.core.tolerance.GLMM); logLik's df exactly."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedref
from harness.core.datasets import load_dataset
from harness.core.tolerance import GLMM
from mixedref.errors import ResponseError
from mixedref.models.family import negative_binomial

REFERENCES = Path(__file__).resolve().parent / "references"
RECORDED = json.loads((REFERENCES / "glmer_nb.json").read_text())
SEEDED_CSV = REFERENCES / "glmer_nb_seeded.csv"
LOG_THETA_ALLOWED = 1e-4

TRUTH = {"beta": {"(Intercept)": 1.0, "x": 0.5}, "sd_g": 0.6, "theta_nb": 2.5}


def seeded_nb(seed: int = 2606) -> pd.DataFrame:
    """40 groups x 15 rows, log μ = 1 + 0.5 x + b_g, b_g ~ N(0, 0.6²), negative binomial counts
    with θ = 2.5 (tests/references/glmer_nb_seeded.csv holds it for R)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 15)
    x = rng.normal(size=g.size)
    b = rng.normal(scale=TRUTH["sd_g"], size=40)
    mu = np.exp(TRUTH["beta"]["(Intercept)"] + TRUTH["beta"]["x"] * x + b[g])
    theta = TRUTH["theta_nb"]
    y = rng.negative_binomial(theta, theta / (theta + mu))
    return pd.DataFrame({"y": y.astype(float), "x": x,
                         "g": pd.Categorical([f"g{i:02d}" for i in g])})


def _data(case_id: str) -> pd.DataFrame:
    return seeded_nb() if case_id == "seeded" else load_dataset("grouseticks")


def _fit(case_id: str) -> mixedref.GlmerFit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mixedref.glmer_nb(RECORDED["cases"][case_id]["formula"], _data(case_id))


def test_the_seeded_design_is_the_recorded_one() -> None:
    recorded = pd.read_csv(SEEDED_CSV)
    ours = seeded_nb()
    np.testing.assert_array_equal(recorded["y"], ours["y"])
    np.testing.assert_array_equal(recorded["x"], ours["x"])
    assert list(recorded["g"]) == list(ours["g"].astype(str))


def _assert_agrees(fit: mixedref.GlmerFit, ref: dict) -> None:
    assert abs(math.log(fit.family.theta) - math.log(ref["theta_nb"])) < LOG_THETA_ALLOWED
    assert fit.family.name == ref["family"]
    assert fit.df == ref["df"]
    assert abs(-2 * fit.loglik + 2 * ref["loglik"]) < GLMM.objective_allowed(-2 * ref["loglik"])
    for name, beta in ref["fixef"].items():
        se = ref["se"][name]
        assert abs(fit.fixef[name] - beta) < GLMM.fixef_se_units * se, name
        assert abs(fit.se[name] - se) < GLMM.fixef_se_rel * se, name
    for ours, theirs in zip(fit.theta, ref["theta"], strict=True):
        assert abs(ours - theirs) < GLMM.theta_abs + GLMM.theta_rel * abs(theirs)


@pytest.mark.parametrize("case_id", sorted(RECORDED["cases"]))
def test_agrees_with_lme4s_recorded_glmer_nb(case_id: str) -> None:
    _assert_agrees(_fit(case_id), RECORDED["cases"][case_id])


def test_the_seeded_design_recovers_its_truth() -> None:
    """The estimates within 3 SEs of the truth that generated the data (θ: its SE from the
    negative binomial's Fisher information at the fitted means, MASS's theta.ml SE)."""
    from scipy import special

    fit = _fit("seeded")
    for name, beta in TRUTH["beta"].items():
        assert abs(fit.fixef[name] - beta) < 3 * fit.se[name], name
    t, y, mu = fit.family.theta, fit.model.y, fit.fitted
    info = np.sum(-special.polygamma(1, t + y) + special.polygamma(1, t) - 1 / t
                  + 2 / (mu + t) - (y + t) / (mu + t) ** 2)
    assert abs(t - TRUTH["theta_nb"]) < 3 / math.sqrt(info)
    sd = float(fit.varcorr["sdcor"].iloc[0])
    assert 0.3 < sd < 0.9


def test_non_count_responses_are_named() -> None:
    data = seeded_nb()
    data.loc[3, "y"] = 2.5
    with pytest.raises(ResponseError, match=r"counts: response 'y' has the value 2.5 \(row 4"):
        mixedref.glmer_nb("y ~ x + (1 | g)", data)
    data.loc[3, "y"] = -1.0
    with pytest.raises(ResponseError, match="has the value -1"):
        mixedref.glmer_nb("y ~ x + (1 | g)", data)


def test_the_family_is_mass_negative_binomial() -> None:
    fam = negative_binomial(2.0)
    mu, y = np.array([0.5, 3.0]), np.array([0.0, 5.0])
    np.testing.assert_allclose(fam.variance(mu), mu + mu**2 / 2.0)
    assert fam.name == "Negative Binomial(2)"
    # MASS's dev.resids at y = 0: 2 (y + θ) log((μ + θ)/(y + θ))
    assert fam.dev_resids(y, mu, np.ones(2))[0] == pytest.approx(2 * 2.0 * math.log(2.5 / 2.0))


@pytest.mark.needs_r
def test_live_lme4_glmer_nb_on_grouseticks() -> None:
    from harness.core import rbridge

    if rbridge.unavailable():
        pytest.skip(rbridge.unavailable())
    import rpy2.robjects as ro

    ro.globalenv["d"] = rbridge.to_r_frame(load_dataset("grouseticks"))
    formula = RECORDED["cases"]["grouseticks-location"]["formula"]
    out = ro.r(f"""local({{
      suppressMessages(library(lme4))
      m <- suppressWarnings(glmer.nb({formula}, data = d))
      ll <- logLik(m)
      list(theta_nb = getME(m, "glmer.nb.theta"), loglik = as.numeric(ll),
           df = attr(ll, "df"), fixef = fixef(m), se = sqrt(diag(as.matrix(vcov(m)))),
           theta = getME(m, "theta"), family = family(m)$family)}})""")
    names = [str(n) for n in out[3].names]
    ref = {"theta_nb": float(out[0][0]), "loglik": float(out[1][0]), "df": int(out[2][0]),
           "fixef": dict(zip(names, map(float, out[3]), strict=True)),
           "se": dict(zip(names, map(float, out[4]), strict=True)),
           "theta": [float(v) for v in out[5]], "family": str(out[6][0])}
    _assert_agrees(_fit("grouseticks-location"), ref)


@pytest.mark.parametrize("case_id", sorted(RECORDED["glmmTMB"]))
def test_against_glmmtmb_nbinom2_as_lme4_is(case_id: str) -> None:
    """glmmTMB's nbinom2 (recorded with lme4's answers) fits the same model and lands near
    lme4: θ within 0.4%, logLik within 0.2, the fixed effects within 0.5 of their SEs
    (measured, tests/references/glmer_nb.json; the cause, lme4's and TMB's Laplace
    approximations at a non-canonical link, is not shown here). mixedref follows lme4, so it
    stands from glmmTMB where lme4 stands: its differences from glmmTMB are lme4's, to the
    allowances above."""
    tmb, lme4 = RECORDED["glmmTMB"][case_id], RECORDED["cases"][case_id]
    if tmb is None:
        pytest.skip("glmmTMB was not installed when the references were recorded")
    fit = _fit(case_id)
    ours = math.log(fit.family.theta) - math.log(tmb["theta_nb"])
    theirs = math.log(lme4["theta_nb"]) - math.log(tmb["theta_nb"])
    assert abs(theirs) < 5e-3
    assert abs(ours - theirs) < LOG_THETA_ALLOWED
    for name, beta in tmb["fixef"].items():
        se = tmb["se"][name]
        assert abs(lme4["fixef"][name] - beta) < 0.5 * se
        assert abs((fit.fixef[name] - beta) - (lme4["fixef"][name] - beta)) < \
            GLMM.fixef_se_units * lme4["se"][name]
    assert abs(lme4["loglik"] - tmb["loglik"]) < 0.25
    assert fit.df == tmb["df"]


def test_only_the_returned_fit_runs_the_derivative_checks(monkeypatch) -> None:
    """The search's fits skip glmer's derivative checks (the Hessian and gradient by central
    differences); the returned fit alone gets them."""
    from mixedref.models import glmer as glmer_module

    calls = []
    real = glmer_module.derivatives

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(glmer_module, "derivatives", counting)
    fit = _fit("seeded")
    assert fit.nb_evaluations > 1
    assert len(calls) == 1
    assert fit.hessian is not None and fit.gradient is not None


def test_deferred_checks_give_glmers_fit() -> None:
    """A fit whose derivative checks were deferred, once concluded, is glmer's own: the same
    Hessian, gradient, SEs, evaluations and messages (two paths of the code compared, no
    recorded number)."""
    from mixedref.models.glmer import conclude_deferred, glmer_deferred

    data = seeded_nb()
    fam = negative_binomial(2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = mixedref.glmer("y ~ x + (1 | g)", data, fam)
        deferred = glmer_deferred("y ~ x + (1 | g)", data, fam)
        concluded = conclude_deferred(deferred)
    assert deferred.hessian is None
    np.testing.assert_array_equal(concluded.hessian, direct.hessian)
    np.testing.assert_array_equal(concluded.gradient, direct.gradient)
    np.testing.assert_array_equal(concluded.se.to_numpy(), direct.se.to_numpy())
    np.testing.assert_array_equal(concluded.theta, direct.theta)
    assert concluded.objective == direct.objective
    assert concluded.nfev == direct.nfev
    assert concluded.messages == direct.messages
    assert concluded.converged == direct.converged
    assert concluded.optinfo.checks == direct.optinfo.checks
