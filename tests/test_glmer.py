"""mixedref.glmer against lme4 1.1-31's glmer (references from r_scripts/glmer_references.R).

Two kinds of check per case (tests/references/glmer/<case>.json):

- the engine: the criterion at the same (theta, beta) points as lme4's own devfun
  (glmer(..., devFunOnly = TRUE)) to 1e-6 relative at lme4's default tolPwrss (binomial and
  Poisson agree to ~1e-12: same PIRLS, same restart point lp0, same stopping rule; Gamma(log)
  to ~1e-7, PIRLS's truncation error from a slightly different lp0), and to 1e-10 with PIRLS
  iterated to 1e-12 on both sides;
- the fit: estimates within harness/core/tolerance.py's DEFAULT (fixed effects within 0.01 SE, SEs
  0.2 % relative, theta 5e-3 + 0.2 %, criterion 2e-3 + 1e-6 relative). These were checked
  against lme4's own spread: with stage 2 done by each of allFit's optimizers (bobyqa,
  Nelder_Mead, nloptwrap, nlminbwrap), lme4's answers agree with its default within the same
  tolerance (test_lme4_allfit_spread_within_tolerance), so the tolerance is not wider than
  lme4's optimizers need.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedref
from harness.core.datasets import load_dataset
from harness.core.tolerance import GLMM as TOL
from mixedref.errors import DataError, FormulaError, MixedrefError
from mixedref.models.family import FamilyError, binomial, get_family
from mixedref.models.glmer import GlmerFit, ResponseError, glmer, glmer_devfun

REF_DIR = Path(__file__).parent / "references" / "glmer"
CASES = sorted(p.stem for p in REF_DIR.glob("*.json"))
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _ref(case: str) -> dict:
    ref = json.loads((REF_DIR / f"{case}.json").read_text())
    ref["theta"] = list(np.atleast_1d(ref["theta"]))  # jsonlite unboxes length-1 vectors
    for a in (ref.get("allfit") or {}).values():
        if "theta" in a:
            a["theta"] = list(np.atleast_1d(a["theta"]))
    return ref


def _data(ref: dict) -> pd.DataFrame:
    if "data" in ref:  # the simulated Gamma set travels in its reference file
        d = pd.DataFrame(ref["data"])
        d["g"] = pd.Categorical(d["g"], categories=sorted(set(d["g"])))
        return d
    return load_dataset(ref["dataset"])


_FITS: dict[str, GlmerFit] = {}


def _fit(case: str) -> GlmerFit:
    if case not in _FITS:
        ref = _ref(case)
        _FITS[case] = glmer(ref["formula"], _data(ref), ref["family"], link=ref["link"],
                            nAGQ=ref["nAGQ"])
    return _FITS[case]


def _name(x: object) -> str | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def _table(rows: list[tuple[str, float, float, float]]) -> str:
    out = [f"{'':2} {'name':28} {'lme4':>14} {'mixedref':>14} {'diff':>11} {'allowed':>10}"]
    for name, r, c, allowed in rows:
        bad = not abs(c - r) <= allowed
        out.append(f"{'XX' if bad else 'ok'} {name:28} {r:14.8g} {c:14.8g} {c - r:11.3e} "
                   f"{allowed:10.3e}")
    return "\n".join(out)


def _check(rows: list[tuple[str, float, float, float]]) -> None:
    bad = [r for r in rows if not abs(r[2] - r[1]) <= r[3]]
    assert not bad, "disagreements with lme4:\n" + _table(rows)


# ----------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("case", CASES)
def test_criterion_at_lme4_points(case: str) -> None:
    """glmer's criterion at given (theta, beta), against lme4's devfun at the same points and
    lme4's PIRLS tolerance (mixedref's default is tighter: see
    mixedref.fitting.control.GLMER_TOL_PWRSS)."""
    ref = _ref(case)
    f = glmer_devfun(ref["formula"], _data(ref), ref["family"], link=ref["link"],
                     nAGQ=ref["nAGQ"], control={"tol_pwrss": ref["devfun"]["tol_pwrss"]})
    rows = []
    for i, (pars, value) in enumerate(zip(ref["devfun"]["points"], ref["devfun"]["values"],
                                          strict=True)):
        if value is None:  # lme4's PIRLS failed there
            continue
        rows.append((f"devfun[{i}]", value, f(pars), 1e-6 * abs(value)))
    assert rows
    _check(rows)


@pytest.mark.parametrize("case", CASES)
def test_criterion_converged_pirls(case: str) -> None:
    """With PIRLS iterated to 1e-12 on both sides the criteria agree to rounding (1e-10), for
    every family and link: what remains at the default tolPwrss is PIRLS's truncation error,
    which depends on the restart point (for Gamma's non-canonical log link, about 1e-7
    relative, as the two stage-1 optimizers end at slightly different lp0)."""
    ref = _ref(case)
    tight = ref["devfun"].get("values_tight")
    if tight is None:
        pytest.skip("reference written before values_tight was recorded")
    f = glmer_devfun(ref["formula"], _data(ref), ref["family"], link=ref["link"],
                     nAGQ=ref["nAGQ"], control={"tol_pwrss": ref["devfun"]["tol_pwrss_tight"]})
    rows = [(f"devfun_tight[{i}]", v, f(p), 1e-10 * abs(v))
            for i, (p, v) in enumerate(zip(ref["devfun"]["points"], tight, strict=True))
            if v is not None]
    _check(rows)


def test_laplace_matches_lme4_to_rounding() -> None:
    """Binomial/Poisson: the same algorithm step for step, so far closer than 1e-6."""
    for case in ("cbpp_logit", "grouseticks", "verbagg"):
        ref = _ref(case)
        f = glmer_devfun(ref["formula"], _data(ref), ref["family"], link=ref["link"],
                         control={"tol_pwrss": ref["devfun"]["tol_pwrss"]})
        for pars, value in zip(ref["devfun"]["points"], ref["devfun"]["values"], strict=True):
            assert f(pars) == pytest.approx(value, rel=1e-10, abs=0)


# ----------------------------------------------------------------------------- the fits


@pytest.mark.parametrize("case", CASES)
def test_fit_matches_lme4(case: str) -> None:
    ref = _ref(case)
    m = _fit(case)
    rows = []
    se_h = ref["se_hessian"]
    for name, value in ref["fixef"].items():
        rows.append((f"fixef[{name}]", value, float(m.fixef[name]),
                     TOL.fixef_se_units * ref["se_rx"][name]))
    for name, value in se_h.items():  # lme4's Hessian is of its truncated PIRLS criterion
        rows.append((f"se[{name}]", value, float(m.se[name]), TOL.fixef_se_rel * value))
    for name, value in ref["se_rx"].items():
        rows.append((f"se_rx[{name}]", value, float(m.se_rx[name]), TOL.fixef_se_rx_rel * value))
    for i, value in enumerate(ref["theta"]):
        rows.append((f"theta[{i}]", value, float(m.theta[i]),
                     TOL.theta_abs + TOL.theta_rel * abs(value)))
    for key, mine in (("minus2loglik", m.objective), ("loglik", m.loglik), ("aic", m.aic),
                      ("bic", m.bic)):
        rows.append((key, ref[key], mine, TOL.objective_allowed(ref[key])))
    rows.append(("sigma", ref["sigma"], m.sigma, TOL.sigma_rel * ref["sigma"]))
    vc = m.varcorr
    assert len(vc) == len(ref["varcorr"])
    resid_var = ref["sigma"] ** 2
    for r, row in zip(ref["varcorr"], vc.itertuples(index=False), strict=True):
        assert (row.grp, _name(row.var1), _name(row.var2)) == (r["grp"], r["var1"], r["var2"])
        if r["var2"] is None:
            rows.append((f"var[{r['grp']},{r['var1']}]", r["vcov"], float(row.vcov),
                         max(TOL.var_rel * r["vcov"], TOL.var_abs_sigma2 * resid_var)))
        else:
            rows.append((f"corr[{r['grp']},{r['var1']},{r['var2']}]", r["sdcor"],
                         float(row.sdcor), TOL.corr_abs))
    assert m.df_resid == ref["df_resid"] and m.nobs == ref["nobs"]
    assert m.singular == ref["singular"] and m.converged
    _check(rows)


@pytest.mark.parametrize("case", CASES)
def test_fitted_residuals_ranef(case: str) -> None:
    """Predictions follow the estimates: fitted values, residuals and conditional modes within
    the size the estimates' own tolerance implies (0.2 % of their scale); deviance(m), the sum
    of squared deviance residuals (first order in the estimates, not stationary at the optimum:
    two lme4 reference runs, the data re-exported in between, moved it by 7e-4 on
    grouseticks), as far as the fitted values differ."""
    ref = _ref(case)
    m = _fit(case)
    fitted = np.asarray(ref["fitted"])
    scale = max(float(np.max(np.abs(fitted))), 1.0)
    np.testing.assert_allclose(m.fitted, fitted, rtol=2e-3, atol=2e-3 * scale)
    for kind in ("deviance", "pearson", "response"):
        r = np.asarray(ref["residuals"][kind])
        np.testing.assert_allclose(m.residuals_of(kind), r, rtol=2e-3,
                                   atol=2e-3 * max(float(np.max(np.abs(r))), 1.0))
    # deviance(m) is the sum of the unit deviances at the fitted values: the definition holds
    # at lme4's own fitted values to rounding, and mixedref's differs from lme4's only as far as
    # its fitted values do (first order: sum |d dev_i / d mu_i| |delta mu_i|, doubled)
    fam, obj = m.family, m._obj
    assert float(np.sum(fam.dev_resids(obj.y, fitted, obj.wt))) == pytest.approx(
        ref["deviance"], rel=1e-10)
    slope = np.abs(2.0 * obj.wt * (obj.y - fitted) / fam.variance(fitted))
    allowed = 2.0 * float(np.sum(slope * np.abs(m.fitted - fitted))) + 1e-8
    assert abs(m.deviance - ref["deviance"]) <= allowed
    for grp, block in ref["ranef"].items():
        mine = m.ranef[grp]
        assert list(mine.index) == list(np.atleast_1d(block["levels"]))
        assert list(mine.columns) == list(np.atleast_1d(block["columns"]))
        vals = np.asarray(block["values"], dtype=float).reshape(len(block["levels"]), -1)
        sd = np.sqrt(np.max(vals.var(axis=0))) if vals.shape[0] > 1 else 1.0
        np.testing.assert_allclose(mine.to_numpy(), vals, rtol=0, atol=1e-2 * sd)
        if "condvar" in block:  # conditional variances: variances, so var_rel of the policy
            q = vals.shape[1]
            cv = np.asarray(block["condvar"], dtype=float).reshape(len(block["levels"]), q, q)
            mine_cv = m.ranef_condvar[grp]
            np.testing.assert_allclose(mine_cv, cv, rtol=TOL.var_rel,
                                       atol=TOL.var_abs_sigma2 * float(np.max(np.abs(cv))))


def test_lme4_allfit_spread_within_tolerance() -> None:
    """lme4's own optimizers (stage 2 by allFit's bobyqa, Nelder_Mead, nloptwrap, nlminbwrap)
    agree with its default within the tolerance used above: it is not wider than lme4 needs."""
    checked = 0
    for case in CASES:
        ref = _ref(case)
        for opt, a in (ref.get("allfit") or {}).items():
            if "error" in a:
                continue
            rows = [(f"{opt}:fixef[{k}]", v, a["fixef"][k], TOL.fixef_se_units *
                     ref["se_hessian"][k]) for k, v in ref["fixef"].items()]
            rows += [(f"{opt}:theta[{i}]", v, a["theta"][i], TOL.theta_abs + TOL.theta_rel *
                      abs(v)) for i, v in enumerate(ref["theta"])]
            rows.append((f"{opt}:-2logLik", ref["minus2loglik"], a["minus2loglik"],
                         TOL.objective_allowed(ref["minus2loglik"])))
            _check(rows)
            checked += 1
    if checked == 0:
        pytest.skip("references written without GLMER_ALLFIT=1")


# ----------------------------------------------------------------------------- forms


def test_proportions_with_weights_equal_cbind() -> None:
    d = load_dataset("cbpp")
    d["prop"] = d["incidence"] / d["size"]
    a = glmer(CBPP, d, "binomial")
    b = glmer("prop ~ period + (1 | herd)", d, "binomial", weights="size")
    np.testing.assert_allclose(b.fixef.to_numpy(), a.fixef.to_numpy(), rtol=1e-8, atol=1e-10)
    assert b.objective == pytest.approx(a.objective, rel=1e-12)
    assert b.formula == "prop ~ period + (1 | herd)"
    assert a.formula == CBPP


def test_factor_response_equals_01() -> None:
    d = load_dataset("Contraception")
    d["use01"] = (d["use"] == "Y").astype(float)
    pars = [0.5, -1.0, 0.7, 0.0, -0.004, 0.8, 0.9, 0.9]
    f1 = glmer_devfun("use ~ urban + age + I(age^2) + livch + (1 | district)", d)
    f2 = glmer_devfun("use01 ~ urban + age + I(age^2) + livch + (1 | district)", d)
    assert f1(pars) == pytest.approx(f2(pars), rel=1e-12)


def test_family_object_equals_name_and_link() -> None:
    d = load_dataset("cbpp")
    ref = _ref("cbpp_probit")
    f = glmer_devfun(CBPP, d, binomial("probit"), control={"tol_pwrss": 1e-7})  # as lme4's
    pars = ref["devfun"]["points"][1]
    assert f(pars) == pytest.approx(ref["devfun"]["values"][1], rel=1e-10)
    fam = get_family("poisson")
    assert (fam.name, fam.link) == ("poisson", "log")
    assert get_family("Gamma", "log").link == "log"


def test_summary_and_shapes() -> None:
    m = _fit("cbpp_logit")
    text = str(m.summary())
    assert text.startswith("Generalized linear mixed model fit by maximum likelihood (Laplace "
                           "Approximation) [glmerMod]")
    assert " Family: binomial  ( logit )" in text
    for part in ("AIC", "BIC", "logLik", "deviance", "df.resid", "Scaled residuals:",
                 "Random effects:", "Fixed effects:", "z value", "Pr(>|z|)", "herd, 15"):
        assert part in text
    assert list(m.varcorr.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert list(m.vcov.index) == list(m.fixef.index)
    assert mixedref.glmer is glmer and mixedref.GlmerFit is GlmerFit
    assert mixedref.models.family.binomial().link == "logit"
    agq = _fit("cbpp_agq9")
    assert "Adaptive Gauss-Hermite Quadrature, nAGQ = 9" in str(agq.summary())
    gam = _fit("gamma_log")
    assert "t value" in str(gam.summary()) and gam.varcorr["grp"].iloc[-1] == "Residual"


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return load_dataset("cbpp")


def test_binomial_response_outside_unit_interval(cbpp: pd.DataFrame) -> None:
    with pytest.raises(ResponseError, match="0 <= y <= 1"):
        glmer("incidence ~ period + (1 | herd)", cbpp, "binomial")


def test_binomial_non_integer_successes(cbpp: pd.DataFrame) -> None:
    d = cbpp.copy()
    d["prop"] = d["incidence"] / d["size"]
    with pytest.raises(ResponseError, match="non-integer #successes"):
        glmer("prop ~ period + (1 | herd)", d, "binomial")
    d["half"] = d["incidence"] + 0.5
    with pytest.raises(ResponseError, match="non-integer counts"):
        glmer("cbind(half, size - incidence) ~ period + (1 | herd)", d, "binomial")
    with pytest.raises(ResponseError, match="non-negative"):
        glmer("cbind(incidence, incidence - size) ~ period + (1 | herd)", d, "binomial")


def test_poisson_non_integer_and_negative_counts(cbpp: pd.DataFrame) -> None:
    d = cbpp.copy()
    d["rate"] = d["incidence"] / d["size"]
    with pytest.raises(ResponseError, match="non-integer counts"):
        glmer("rate ~ period + (1 | herd)", d, "poisson")
    d["neg"] = d["incidence"] - 3
    with pytest.raises(ResponseError, match="negative values"):
        glmer("neg ~ period + (1 | herd)", d, "poisson")
    with pytest.raises(ResponseError, match="non-positive"):
        glmer("incidence ~ period + (1 | herd)", d, "Gamma")


def test_negative_weights(cbpp: pd.DataFrame) -> None:
    d = cbpp.copy()
    d["w"] = 1.0
    d.loc[0, "w"] = -1.0
    with pytest.raises(DataError, match="negative weights"):
        glmer("incidence ~ period + (1 | herd)", d, "poisson", weights="w")


def test_unknown_family_and_link(cbpp: pd.DataFrame) -> None:
    with pytest.raises(FamilyError, match="unknown family 'binomal'"):
        glmer(CBPP, cbpp, "binomal")
    with pytest.raises(FamilyError, match="R spells it 'Gamma'"):
        glmer("size ~ period + (1 | herd)", cbpp, "gamma")
    with pytest.raises(FamilyError, match="link 'logit' not available for poisson"):
        glmer("incidence ~ period + (1 | herd)", cbpp, "poisson", link="logit")
    with pytest.raises(FamilyError, match="mixedref.lmer"):
        glmer("size ~ period + (1 | herd)", cbpp, "gaussian")
    assert issubclass(FamilyError, MixedrefError)


def test_agq_needs_one_scalar_term() -> None:
    d = load_dataset("grouseticks")
    with pytest.raises(MixedrefError, match="single, scalar random-effects term"):
        glmer("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", d, "poisson", nAGQ=5)
    with pytest.raises(MixedrefError, match="between 0 and 25"):
        glmer("TICKS ~ YEAR + (1 | BROOD)", d, "poisson", nAGQ=30)


def test_bad_formula_and_column(cbpp: pd.DataFrame) -> None:
    with pytest.raises(FormulaError):
        glmer("cbind(incidence) ~ period + (1 | herd)", cbpp, "binomial")
    with pytest.raises(FormulaError):
        glmer("cbind(incidence, nope) ~ period + (1 | herd)", cbpp, "binomial")
    with pytest.raises(ResponseError, match="needs the binomial family"):
        glmer(CBPP, cbpp, "poisson")


def test_seconds_and_ratio_recorded() -> None:
    """The references carry glmer's time: the ratio is reported, not asserted (shared box)."""
    for case in CASES:
        ref = _ref(case)
        assert ref["seconds"] > 0
        assert math.isfinite(ref["seconds"])


def test_sparse_factor_path_equals_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond DENSE_MAX random effects after the first term the factor is sparse (SuperLU):
    forced here on grouseticks, it gives the blocked factor's criterion."""
    import mixedref.engines.pirls as pirls

    ref = _ref("grouseticks")
    d = _data(ref)
    ctrl = {"nAGQ0initStep": False}
    blocked = glmer_devfun(ref["formula"], d, "poisson", control=ctrl)
    monkeypatch.setattr(pirls, "DENSE_MAX", 10)
    sparse = glmer_devfun(ref["formula"], d, "poisson", control=ctrl)
    assert not sparse.objective.dense and blocked.objective.dense
    for pars in ref["devfun"]["points"]:
        assert sparse(pars) == pytest.approx(blocked(pars), rel=1e-10)
    theta = np.asarray(ref["theta"])
    st_b = blocked.objective.state(theta, None)
    st_s = sparse.objective.state(theta, None)
    np.testing.assert_allclose(st_s.beta, st_b.beta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sparse.objective.unscaled_vcov(st_s),
                               blocked.objective.unscaled_vcov(st_b), rtol=1e-8, atol=1e-12)


def test_convergence_checks_warn_as_lme4_and_mark_the_fit() -> None:
    """lme4's checkConv on the stage-2 derivatives: a fit stopped early (maxeval) fails the
    scaled-gradient check, warns with lme4's text and is not converged; the full fit passes."""
    from mixedref.errors import ConvergenceWarning

    d = load_dataset("cbpp")
    with pytest.warns(ConvergenceWarning, match="Model failed to converge"):
        early = glmer(CBPP, d, "binomial", control={"maxeval": 12})
    assert not early.converged
    assert any("failed to converge" in m for m in early.messages)
    assert _fit("cbpp_logit").converged


def test_the_model_is_built_from_the_formula_as_written(cbpp: pd.DataFrame) -> None:
    """build_model takes glmer's response rule: the formula is not rewritten (no reserved
    column; a column named as the old rewrite's is an ordinary variable), the response keeps
    its name, and the trials join the prior weights."""
    d = cbpp.copy()
    d["glmerY__"] = np.arange(len(d)) % 3  # glmer used to reserve this name
    fit = glmer(CBPP.replace("period", "period + glmerY__"), d, "binomial")
    assert fit.model.formula == fit.formula == CBPP.replace("period", "period + glmerY__")
    assert fit.model.response == "cbind(incidence, size - incidence)"
    np.testing.assert_array_equal(fit.model.weights, d["size"].to_numpy(dtype=float))


def test_glmer_sizes_allow_one_level_per_observation(cbpp: pd.DataFrame) -> None:
    """lme4's glmer checks, not lmer's: a grouping factor with as many levels as observations
    (an observation-level random effect) is refused by lmer's rule and built under glmer's,
    from the data as given (the frame has the data's rows, not a doubled copy)."""
    from mixedref.frontend.design import build_model
    from mixedref.models.glmer import _GlmerResponse

    d = cbpp.copy()
    d["obs"] = pd.Categorical([str(i) for i in range(len(d))])
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)"
    with pytest.raises(DataError, match="must be < number of observations"):
        build_model("incidence ~ period + (1 | herd) + (1 | obs)", d)
    model = build_model(formula, d, response=_GlmerResponse(binomial()).rule())
    assert model.n == len(d) and model.ngroups["obs"] == len(d)
    assert list(model.row_index) == list(d.index)
    fit = glmer(formula, d, "binomial")
    assert fit.nobs == len(d) and fit.ngroups["obs"] == len(d)


def test_the_family_owns_initialize_validate_and_simulate() -> None:
    """R's family objects: initialize's mustart (binomial (w y + 1/2) / (w + 1), Poisson
    y + 0.1, Gamma y: stats::binomial()$initialize and friends), its response checks as
    errors naming the response, and simulate's draws (Poisson: mean = variance = mu)."""
    from mixedref.models.family import Gamma, poisson

    y, w = np.array([0.0, 0.5, 1.0]), np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(binomial().initialize(y, w), (w * y + 0.5) / (w + 1.0))
    np.testing.assert_allclose(poisson().initialize(np.array([0.0, 3.0]), np.ones(2)),
                               [0.1, 3.1])
    np.testing.assert_allclose(Gamma().initialize(np.array([0.5, 2.0]), np.ones(2)), [0.5, 2.0])
    with pytest.raises(ResponseError, match="'y'.*0 <= y <= 1"):
        binomial().validate(np.array([0.0, 1.5]), np.ones(2), "y")
    with pytest.raises(ResponseError, match="non-integer counts in the Poisson response 'n'"):
        poisson().validate(np.array([0.0, 1.5]), np.ones(2), "n")
    with pytest.raises(ResponseError, match="response 'y' is constant"):
        Gamma().validate(np.array([2.0, 2.0]), np.ones(2), "y")
    binomial().validate(np.array([0.5, 0.5]), np.full(2, 2.0), "y", counts=True)  # cbind: fine
    draws = poisson().simulate(np.full((40_000, 1), 3.0), None, 1.0, np.random.default_rng(1))
    assert draws.mean() == pytest.approx(3.0, abs=0.05)  # sd of the mean 0.009
    assert draws.var() == pytest.approx(3.0, abs=0.15)


def test_lmer_and_glmer_fits_share_one_base() -> None:
    """One fitted-model base: both fits are MixedModelFit, their VarCorr rows come from the one
    builder (mixedref.models.basefit.varcorr_rows, which the harness record uses too) and θ is cut
    by
    reterm.split_theta."""
    from harness.core import record
    from mixedref.frontend.reterm import split_theta
    from mixedref.models.basefit import MixedModelFit, varcorr_groups

    sleep = load_dataset("sleepstudy")
    lmm = mixedref.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    glmm = _fit("cbpp_logit")
    for fit in (lmm, glmm):
        assert isinstance(fit, MixedModelFit) and fit.optinfo is not None
        terms = fit.model.reterms
        pieces = split_theta(fit.theta, terms)
        assert all(np.array_equal(a, b) for a, b in zip(fit.theta_by_term(), pieces,
                                                        strict=True))
        covs = [(g, t.columns, fit.sigma**2 * t.covariance(th)) for g, t, th in
                zip(varcorr_groups([t.group for t in terms]), terms, pieces, strict=True)]
        rows = record.varcorr_rows(covs, fit.sigma)
        if not fit._residual_row:
            rows = rows[:-1]
        want = fit.varcorr.astype(object).where(fit.varcorr.notna(), None)
        assert rows == want.to_dict("records")


def test_pirls_takes_zs_layout_from_reterm() -> None:
    """PIRLS's row-wise layout of Z Lambda (reterm.z_columns) is the terms' own Z (ReTerm.Z,
    lme4's level-major columns) stacked: each row's non-zeros sit at those columns with those
    values, and Z Lambda's values are the terms' X times their templates."""
    import scipy.sparse as sp

    from mixedref.frontend.reterm import split_theta, z_columns

    ref = _ref("grouseticks")
    obj = glmer_devfun(ref["formula"], _data(ref), "poisson").objective
    terms = obj.model.reterms
    Z = sp.hstack([t.Z for t in terms]).tocsr()
    cols = z_columns(terms)
    X = np.hstack([np.asarray(t.X, dtype=float) for t in terms])
    dense = np.zeros(Z.shape)
    np.put_along_axis(dense, cols, X, axis=1)
    np.testing.assert_array_equal(dense, Z.toarray())
    assert np.array_equal(obj.cols, cols)
    theta = np.asarray(ref["theta"])
    ZL = Z.toarray() @ sp.block_diag([sp.kron(sp.identity(t.nlevels), t.template(th))
                                      for t, th in zip(terms, split_theta(theta, terms),
                                                       strict=True)]).toarray()
    got = np.zeros(Z.shape)
    np.put_along_axis(got, cols, obj.zlambda(theta), axis=1)
    np.testing.assert_allclose(got, ZL, rtol=1e-14, atol=1e-14)
