"""statsmodels' MixedLM on the cases it can express: one grouping factor, with a correlated
term ``(1 + x | g)``, an intercept-only or slope-only term, or uncorrelated terms
``(1 + x || g)`` (a diagonal covariance, through MixedLM's ``free`` pattern).

The matrices come from mixedref.design.build_model, so fixed effects carry R's column names
and no name mapping is needed; estimates are mapped into lme4's quantities (varcorr rows as
R orders them, θ as the Cholesky factor of the covariance / σ², objective = -2 logLik).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from harness.adapters.base import Adapter
from mixedref.design import theta_positions

_BAR = re.compile(r"\(([^()|]*(?:\([^()]*\)[^()|]*)*)(\|\|?)([^()]*)\)")


def bar_terms(formula: str) -> list[tuple[str, str, str]]:
    """The random-effects terms of a formula as (expression, bar, grouping) strings."""
    return [(e.strip(), b, g.strip()) for e, b, g in _BAR.findall(formula)]


class Statsmodels(Adapter):
    """statsmodels.MixedLM, fitted with its defaults (REML or ML as the case says)."""

    name = "statsmodels"

    def unavailable(self) -> str | None:
        try:
            import statsmodels.regression.mixed_linear_model  # noqa: F401
        except Exception as exc:
            return f"statsmodels import failed: {type(exc).__name__}: {exc}"
        try:
            from mixedref.design import build_model  # noqa: F401
        except Exception as exc:
            return f"mixedref.design.build_model not available: {exc}"
        return None

    def supports(self, case: Any) -> str | None:
        terms = bar_terms(case.formula)
        if not terms:
            return "no random-effects term: not a mixed model for statsmodels.MixedLM"
        groups = {g for _, _, g in terms}
        if len(groups) > 1:
            return ("not expressible in statsmodels.MixedLM: more than one grouping factor "
                    f"({', '.join(sorted(groups))}); MixedLM has one")
        group = groups.pop()
        if any(ch in group for ch in ":/"):
            return f"not expressible in statsmodels.MixedLM: nested/interaction grouping {group!r}"
        bars = {b for _, b, _ in terms}
        if len(terms) > 1 and bars != {"||"}:
            return ("not expressible in statsmodels.MixedLM: several terms for one grouping "
                    "factor with a correlated one among them")
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import statsmodels
        from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

        from mixedref.design import build_model
        from mixedref.optimize import is_singular

        model = build_model(case.formula, data)
        terms = model.reterms
        if len({t.group for t in terms}) != 1 or any(t.nlevels != terms[0].nlevels
                                                     for t in terms):
            raise NotImplementedError("statsmodels.MixedLM has a single grouping factor")
        if model.weights is not None or model.offset is not None:
            raise NotImplementedError("weights/offsets are not mapped to statsmodels.MixedLM")
        codes = terms[0].codes
        if any(not np.array_equal(t.codes, codes) for t in terms):
            raise NotImplementedError("terms group the rows differently")
        exog_re = np.column_stack([t.X for t in terms])
        q = exog_re.shape[1]
        REML = bool(case.REML)
        mod = MixedLM(model.y, model.X, groups=codes, exog_re=exog_re)
        kwargs: dict[str, Any] = {"reml": REML}
        if len(terms) > 1:  # uncorrelated terms: a diagonal covariance
            kwargs["free"] = MixedLMParams.from_components(np.ones(model.p), np.eye(q))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = mod.fit(**kwargs)
        messages = [f"{w.category.__name__}: {w.message}" for w in caught]
        scale = float(res.scale)
        cov = np.asarray(res.cov_re, dtype=float).reshape(q, q)
        names = list(model.fixef_names)
        theta = _theta(terms, cov, scale)
        return {
            "fixef": dict(zip(names, map(float, res.fe_params), strict=True)),
            "fixef_se": dict(zip(names, map(float, np.asarray(res.bse_fe)), strict=True)),
            "sigma": float(np.sqrt(scale)),
            "varcorr": _varcorr_rows(terms, cov, scale),
            "theta": theta,
            "loglik": float(res.llf),
            "objective": -2.0 * float(res.llf),
            "REML": REML,
            "nobs": model.n,
            "ngroups": model.ngroups,
            "converged": bool(res.converged),
            "singular": None if theta is None else is_singular(theta, model.theta_lower),
            "messages": messages,
            "versions": {"statsmodels": statsmodels.__version__},
        }


def _grp_names(terms: Any) -> list[str]:
    """lme4's VarCorr group names: repeated factors get .1, .2, ... suffixes."""
    seen: dict[str, int] = {}
    out = []
    for t in terms:
        k = seen.get(t.group, 0)
        out.append(t.group if k == 0 else f"{t.group}.{k}")
        seen[t.group] = k + 1
    return out


def _varcorr_rows(terms: Any, cov: np.ndarray, scale: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    start = 0
    for grp, t in zip(_grp_names(terms), terms, strict=True):
        block = cov[start:start + t.q, start:start + t.q]
        sd = np.sqrt(np.clip(np.diag(block), 0.0, None))
        for i, col in enumerate(t.columns):
            rows.append({"grp": grp, "var1": col, "var2": None, "vcov": float(block[i, i]),
                         "sdcor": float(sd[i])})
        for j in range(t.q):  # R's order: column-major lower triangle
            for i in range(j + 1, t.q):
                denom = sd[i] * sd[j]
                rows.append({"grp": grp, "var1": t.columns[j], "var2": t.columns[i],
                             "vcov": float(block[i, j]),
                             "sdcor": float(block[i, j] / denom) if denom > 0 else 0.0})
        start += t.q
    rows.append({"grp": "Residual", "var1": None, "var2": None, "vcov": scale,
                 "sdcor": float(np.sqrt(scale))})
    return rows


def _theta(terms: Any, cov: np.ndarray, scale: float) -> list[float] | None:
    """lme4's θ: per term the lower Cholesky factor of cov/σ², column-major; None when the
    covariance is not positive definite (θ is then not unique from the covariance alone)."""
    out: list[float] = []
    start = 0
    for t in terms:
        block = cov[start:start + t.q, start:start + t.q] / scale
        try:
            L = np.linalg.cholesky(block)
        except np.linalg.LinAlgError:
            if t.q == 1:
                L = np.sqrt(np.clip(block, 0.0, None))
            else:
                return None
        out += L[theta_positions(t.q)].tolist()
        start += t.q
    return out
