"""mixedref's two engines as implementations: ``mixedref.lmer`` (penalized least squares) and
the dense oracle ``mixedref.literal`` (for small data; cases it cannot express are reported as
unsupported). The records are built here, from each fit's own quantities: the library knows
nothing of the harness."""

from __future__ import annotations

import math
import platform
import warnings
from typing import Any

import numpy as np

from harness.adapters.base import Adapter
from harness.core.comparators.confint import wants_intervals
from harness.core.record import ranef_rows, varcorr_rows


class Mixedref(Adapter):
    """mixedref.lmer with its defaults."""

    name = "mixedref"

    def unavailable(self) -> str | None:
        try:
            import mixedref
        except Exception as exc:
            return f"mixedref import failed: {type(exc).__name__}: {exc}"
        if not hasattr(mixedref, "lmer"):
            return "mixedref.lmer is not available (mixedref has no lmer yet)"
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        fit = self.fit_only(case, data)
        glmm = case_is_glmm(case)
        predictions = []
        for kind in ("link", "response") if glmm else ("link",):
            predictions += (prediction_rows(fit, data, case.formula, kind) or []) + (
                grid_rows(fit, data, getattr(case, "predict_grid", None), kind) or [])
        inference = {"predictions": predictions or None,
                     "confint": confint_rows(fit, profile=wants_intervals(case)),
                     "anova": anova_rows(fit, data, getattr(case, "anova_formula", None),
                                         refit=lambda f: self.fit_only(case, data, f))}
        if glmm:
            return {**glmer_record(fit), **inference, "coef_tests": wald_z_rows(fit)}
        return {**lmer_record(fit), **inference}

    @staticmethod
    def fit_only(case: Any, data: Any, formula: str | None = None) -> Any:
        """The fit alone (an LmerFit or a GlmerFit), without the record's post-fit quantities
        (conditional variances, coefficient tests): what the benchmarks time, as lme4's.
        ``formula`` replaces the case's (its anova partner, fitted alike)."""
        import mixedref

        formula = case.formula if formula is None else formula
        if getattr(case, "family", None) == "negative.binomial":
            return mixedref.glmer_nb(formula, data, link=case.link or "log",
                                     nAGQ=case.nAGQ, weights=case.prior_weights(data))
        if case_is_glmm(case):
            return mixedref.glmer(formula, data, case.family, link=case.link,
                                  nAGQ=case.nAGQ, weights=case.prior_weights(data))
        return mixedref.lmer(formula, data, REML=bool(case.REML))


def _common_record(fit: Any) -> dict[str, Any]:
    """The record fields an LmerFit and a GlmerFit give the same way."""
    import numpy as np

    import mixedref

    vc = [{"grp": str(r.grp), "var1": _text(r.var1), "var2": _text(r.var2),
           "vcov": float(r.vcov), "sdcor": _number(r.sdcor)}
          for r in fit.varcorr.itertuples(index=False)]
    return {
        "fixef": {k: float(v) for k, v in fit.fixef.items()},
        "fixef_se": {k: float(v) for k, v in fit.se.items()},
        "sigma": float(fit.sigma),
        "varcorr": vc,
        "ranef": ranef_rows(fit.ranef, fit.ranef_sd),
        "theta": [float(v) for v in fit.theta],
        "loglik": float(fit.loglik),
        "objective": float(fit.objective),
        "REML": bool(fit.REML),
        "nobs": int(fit.nobs),
        "ngroups": {k: int(v) for k, v in fit.ngroups.items()},
        "converged": bool(fit.converged),
        "singular": bool(fit.singular),
        "messages": [str(m) for m in fit.messages],
        "seconds": None if fit.seconds is None else float(fit.seconds),
        "nfev": int(fit.nfev),
        "versions": {"mixedref": mixedref.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }


def case_is_glmm(case: Any) -> bool:
    return getattr(case, "family", None) is not None


def lmer_record(fit: Any) -> dict[str, Any]:
    """The record fields of an LmerFit (harness/core/record.py), as plain JSON values."""
    log = getattr(fit, "optinfo", None)
    return {**_common_record(fit), "optinfo": None if log is None else log.to_dict(),
            "coef_tests": coef_tests(fit), "anova_terms": anova_terms_rows(fit)}


def confint_rows(fit: Any, profile: bool) -> list[dict[str, Any]] | None:
    """confint() as rows {method, parm, lower, upper}: Wald (the fixed effects; the variance
    parameters have none) always, the profile intervals when asked (r_scripts/lmer_record.R's
    rule); intervals mixedref cannot compute are left out."""
    from mixedref.errors import MixedrefError

    rows: list[dict[str, Any]] = []
    for method in ("Wald", "profile") if profile else ("Wald",):
        try:
            table = fit.confint(method=method)
        except (MixedrefError, ValueError, np.linalg.LinAlgError):
            continue
        for parm, (lo, hi) in zip(table.index, table.to_numpy(), strict=True):
            lo, hi = _number(lo), _number(hi)
            if lo is not None and hi is not None:
                rows.append({"method": method, "parm": str(parm), "lower": lo, "upper": hi})
    return rows or None


def anova_rows(fit: Any, data: Any, partner: str | None,
               refit: Any = None) -> list[dict[str, Any]] | None:
    """mixedref.anova(m0, m1) with m0 the case's partner model (``partner``, its formula)
    fitted alike (by ``refit(formula)``; None: lmer with the fit's REML), as rows {model, npar,
    AIC, BIC, logLik, deviance, Chisq, Df, p} (r_scripts/lmer_record.R's anova_rows); None
    without a partner or when a fit fails."""
    import warnings

    import mixedref
    from mixedref.errors import MixedrefError

    if partner is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fits' own warnings and anova's refit message
        try:
            m0 = (mixedref.lmer(partner, data, REML=fit.REML) if refit is None
                  else refit(partner))
            table = mixedref.anova(m0, fit, names=["m0", "m1"])
        except MixedrefError:
            return None
    return [{"model": str(name), "npar": int(r["npar"]), "AIC": _number(r["AIC"]),
             "BIC": _number(r["BIC"]), "logLik": _number(r["logLik"]),
             "deviance": _number(r["deviance"]), "Chisq": _number(r["Chisq"]),
             "Df": 0 if _number(r["Df"]) is None else int(r["Df"]),
             "p": _number(r["Pr(>Chisq)"])} for name, r in table.iterrows()]


#: as r_scripts/lmer_record.R: the data rows predicted, and the unseen level of the new-level row
PREDICTION_ROWS = 10
NEW_LEVEL = "harness.new.level"


def prediction_rows(fit: Any, data: Any, formula: str, type: str = "link"  # noqa: A002
                    ) -> list[dict[str, Any]] | None:
    """predict(type=) on the data's first rows at re_form "NA" and None (lme4's NULL), and on
    the first row at new grouping levels (allow_new_levels) when every grouping factor is a
    data column the fixed part does not use: the rule r_scripts/lmer_record.R records lme4's
    by. ``type`` "link", or "response" for a GlmerFit."""
    import re

    from harness.adapters.peers._formula import parse
    from mixedref.errors import MixedrefError

    nd = data.iloc[:PREDICTION_ROWS]
    rows = _population_and_conditional(fit, nd, grid=False, type=type)
    groups = list(fit.ngroups)
    fixed = parse(formula).fixed
    if all(g in data.columns for g in groups) and not any(
            re.search(rf"(?<![\w.]){re.escape(g)}(?![\w.])", fixed) for g in groups):
        first = nd.iloc[:1].copy()
        for g in groups:
            first[g] = NEW_LEVEL
        try:
            value = fit.predict(first, allow_new_levels=True, type=type)[0]
        except MixedrefError:
            value = None
        if value is not None:
            rows.append({"re_form": "NULL", "row": 0, "new_levels": True, "value": _number(value),
                         "type": type})
    return rows or None


def grid_frame(data: Any, grid: dict[str, list[Any]]) -> Any:
    """The catalog's prediction grid as new data: the data's first row repeated, the grid's
    columns crossed as R's expand.grid (first column fastest); a categorical column keeps its
    categories plus any new level the grid names (r_scripts/lmer_record.R's grid_rows)."""
    import itertools

    import pandas as pd

    combos = [tuple(reversed(c)) for c in itertools.product(*reversed(list(grid.values())))]
    nd = data.iloc[[0] * len(combos)].reset_index(drop=True)
    for j, col in enumerate(grid):
        values = [c[j] for c in combos]
        if isinstance(data[col].dtype, pd.CategoricalDtype):
            cats = list(data[col].cat.categories)
            cats += [v for v in dict.fromkeys(map(str, values)) if v not in cats]
            nd[col] = pd.Categorical([str(v) for v in values], categories=cats,
                                     ordered=data[col].cat.ordered)
        elif data[col].dtype == object:
            nd[col] = [str(v) for v in values]
        else:
            nd[col] = [float(v) for v in values]
    return nd


def grid_rows(fit: Any, data: Any, grid: dict[str, list[Any]] | None,
              type: str = "link") -> list[dict[str, Any]] | None:  # noqa: A002
    """predict(type=) on the catalog's prediction grid at re_form "NA" and None, new levels
    allowed: rows {re_form, row, new_levels False, value, grid True, type}; None without a
    grid."""
    if not grid:
        return None
    return _population_and_conditional(fit, grid_frame(data, grid), grid=True, type=type) or None


def _population_and_conditional(fit: Any, newdata: Any, grid: bool, type: str = "link"  # noqa: A002
                                ) -> list[dict[str, Any]]:
    """predict() on ``newdata`` at re_form "NA" and None (lme4's NULL) as prediction rows;
    on the catalog's grid (``grid``) new levels are allowed, as r_scripts/lmer_record.R's
    grid_rows predicts them. A re_form mixedref refuses is left out (not reported)."""
    from mixedref.errors import MixedrefError

    rows: list[dict[str, Any]] = []
    for re_form, label in (("NA", "NA"), (None, "NULL")):
        try:
            values = fit.predict(newdata, re_form=re_form, allow_new_levels=grid, type=type)
        except MixedrefError:
            continue
        rows += [{"re_form": label, "row": i, "new_levels": False, "value": _number(v),
                  "grid": grid, "type": type} for i, v in enumerate(values)]
    return rows


def coef_tests(fit: Any) -> list[dict[str, Any]] | None:
    """lmerTest's coefficient tests of an LmerFit (mixedref.inference.ddf), within the size limits;
    None when none applies or mixedref cannot compute them (then they are not reported)."""
    from harness.core.comparators.coef_tests import wanted_ddf
    from mixedref.errors import MixedrefError
    from mixedref.inference.ddf import coef_table

    rows: list[dict[str, Any]] = []
    for ddf in wanted_ddf(fit.nobs, fit.REML):
        try:
            table = coef_table(fit, ddf=ddf)
        except (MixedrefError, np.linalg.LinAlgError, ValueError):
            continue
        rows += [{"ddf": ddf, "term": str(term), "se": _number(r["Std. Error"]),
                  "df": _number(r["df"]), "p": _number(r["Pr(>|t|)"])}
                 for term, r in table.iterrows()]
    return rows or None


def anova_terms_rows(fit: Any) -> list[dict[str, Any]] | None:
    """lmerTest's anova(m, type, ddf) tables and lme4's anova(m) of an LmerFit as rows (the
    tables r_scripts/lmer_record.R records, within the same limits); None for a model without
    fixed-effect terms or when mixedref cannot compute them."""
    from harness.core.comparators.anova_terms import wanted_tables
    from mixedref.errors import MixedrefError
    from mixedref.inference.anova_terms import anova_terms, model_terms

    try:
        if not model_terms(fit).labels:
            return None
    except MixedrefError:
        return None
    rows: list[dict[str, Any]] = []
    for ddf, kind in wanted_tables(fit.nobs, fit.REML):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lmerTest's empty-cell note
                table = anova_terms(fit, type=kind or 3, ddf=ddf)
        except (MixedrefError, np.linalg.LinAlgError, ValueError):
            continue
        lme4 = ddf == "lme4"
        rows += [{"ddf": ddf, "type": kind, "term": str(term), "SumSq": _number(r["Sum Sq"]),
                  "MeanSq": _number(r["Mean Sq"]),
                  "NumDF": _number(r["npar"] if lme4 else r["NumDF"]),
                  "DenDF": None if lme4 else _number(r["DenDF"]),
                  "F": _number(r["F value"]), "p": None if lme4 else _number(r["Pr(>F)"])}
                 for term, r in table.iterrows()]
    return rows or None


def wald_z_rows(fit: Any) -> list[dict[str, Any]] | None:
    """lme4's summary(m)$coefficients of a GlmerFit as rows {ddf "Wald", term, se, df None, p,
    statistic} (r_scripts/glmer_record.R's wald_z_rows); None when it cannot be computed."""
    from mixedref.errors import MixedrefError

    try:
        table = fit.coef_table()
    except (MixedrefError, np.linalg.LinAlgError, ValueError):
        return None
    return [{"ddf": "Wald", "term": str(term), "se": _number(r.iloc[1]), "df": None,
             "p": _number(r.iloc[3]), "statistic": _number(r.iloc[2])}
            for term, r in table.iterrows()] or None


def glmer_record(fit: Any) -> dict[str, Any]:
    """The record fields of a GlmerFit: the LMM's, the family and link, deviance(m), and both
    SE variants (``fixef_se`` Hessian-based as lme4's vcov(m), ``fixef_se_rx`` from RX). A
    negative binomial fit (glmer_nb) is named by the catalog's family, ``negative.binomial``
    (its Family's name, MASS's "Negative Binomial(3.3034)", carries θ rounded), with θ as
    ``nb_theta``."""
    nb_theta = getattr(fit.family, "theta", None)
    name = fit.family.name if nb_theta is None else "negative.binomial"
    return {**_common_record(fit), "family": name, "link": fit.family.link,
            "nAGQ": int(fit.nAGQ), "deviance": float(fit.deviance),
            "fixef_se_rx": {k: float(v) for k, v in fit.se_rx.items()},
            "nb_theta": None if nb_theta is None else float(nb_theta)}


def _text(x: Any) -> str | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def _number(x: Any) -> float | None:
    """A number, or None for lme4's NaN (the correlation of a zero standard deviation)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


class MixedrefLiteral(Adapter):
    """mixedref.literal.fit_formula(formula, data, REML): the textbook dense equations.

    Each evaluation inverts n x n matrices (O(n^3)), so the harness runs the oracle only on
    cases of at most :attr:`max_rows` rows, where a fit takes seconds, not minutes.
    """

    name = "mixedref-literal"
    max_rows = 800

    def supports(self, case: Any) -> str | None:
        from harness.core.catalog import load_data

        if getattr(case, "family", None) is not None:
            return "the dense oracle implements linear mixed models only (no GLMM criterion)"
        n = len(load_data(case))
        if n > self.max_rows:
            return (f"too large for the dense oracle in the harness: {n} rows > {self.max_rows} "
                    "(O(n^3) per evaluation)")
        return None

    def unavailable(self) -> str | None:
        try:
            from mixedref.literal import fit_formula  # noqa: F401
        except Exception as exc:
            return f"mixedref.literal.fit_formula not available: {type(exc).__name__}: {exc}"
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import numpy as np

        import mixedref
        from mixedref.fitting.optimize import is_singular
        from mixedref.literal import fit_formula

        model, fit, seconds = fit_formula(case.formula, data, bool(case.REML))
        term = model.reterms[0]
        sd_a, sd_e = math.sqrt(fit.sigma2_alpha), math.sqrt(fit.sigma2_eta)
        cov = [[fit.sigma2_alpha, fit.rho * sd_a * sd_e], [fit.rho * sd_a * sd_e, fit.sigma2_eta]]
        theta = [float(v) for v in fit.lme4_theta]
        names = list(model.fixef_names)
        return {
            "fixef": dict(zip(names, map(float, fit.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, np.sqrt(np.diag(fit.vcov_beta))),
                                 strict=True)),
            "sigma": math.sqrt(fit.sigma2),
            "varcorr": varcorr_rows([(term.group, term.columns, cov)], math.sqrt(fit.sigma2)),
            "theta": theta,
            "loglik": fit.loglik,
            "objective": fit.objective,
            "REML": bool(case.REML),
            "nobs": model.n,
            "ngroups": model.ngroups,
            "converged": fit.converged,
            "singular": is_singular(np.asarray(theta), model.theta_lower),
            "messages": [] if fit.converged else [fit.message],
            "seconds": seconds,
            "nfev": fit.nfev,
            "versions": {"mixedref": mixedref.__version__, "optimizer": "scipy L-BFGS-B"},
        }
