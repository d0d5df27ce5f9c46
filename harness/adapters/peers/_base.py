"""What the peer adapters share: availability as one line, formula checks before any data is
read (``supports``) and after (``fit`` raises NotImplementedError), and the record's common
fields."""

from __future__ import annotations

from typing import Any

from harness.adapters.base import Adapter
from harness.adapters.peers import _formula as F


class Peer(Adapter):
    """A PyPI mixed-model package: ``module`` is its import name, ``dist`` its distribution."""

    module = ""
    dist = ""

    def unavailable(self) -> str | None:
        return F.missing(self.module, self.dist)

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        """Raise NotImplementedError (via F.cannot) for what the package cannot express;
        ``data`` is None when only the formula is known."""

    def supports(self, case: Any) -> str | None:
        parsed = F.parse(case.formula)
        if not parsed.bars:
            return f"{self.dist} cannot express a model without random-effects terms"
        try:
            self.check(parsed, case)
        except NotImplementedError as exc:
            return str(exc)
        return None

    def prepare(self, case: Any, data: Any) -> tuple[F.Parsed, list[F.Term]]:
        parsed = F.parse(case.formula)
        self.check(parsed, case, data)
        facs = set(F.factors(data))
        slopes = [p for b in parsed.bars for p in b.predictors if p in facs]
        if slopes:
            raise F.cannot(self.dist, f"the factor-valued random slope(s) {', '.join(slopes)}",
                           "this adapter does not map their contrast columns to lme4's names")
        return parsed, F.lme4_terms(parsed, data)

    def versions(self) -> dict[str, str]:
        return {self.dist: F.version_of(self.dist)}


def ordered_in_fixed(parsed: F.Parsed, data: Any) -> list[str]:
    """Ordered factors the fixed part uses (lme4 codes them with contr.poly)."""
    return [v for v in F.ordered_factors(data) if F.uses(parsed.fixed, v)]


def complex_predictors(parsed: F.Parsed) -> list[str]:
    """Random-effect predictors that are expressions, not column names (I(...), log(...))."""
    return [p for b in parsed.bars for p in b.predictors if not p.isidentifier()]


def single_factor_reason(formula: str, package: str, *, double_bar: bool = True) -> str | None:
    """Why a statsmodels-style MixedLM (one grouping factor, one covariance matrix for it)
    cannot fit ``formula``, or None. ``double_bar``: it has a ``free`` pattern for a diagonal
    covariance (``||``)."""
    bars = F.parse(formula).bars
    if not bars:
        return f"no random-effects term: not a mixed model for {package}"
    groups = {b.group for b in bars}
    if len(groups) > 1:
        return (f"not expressible in {package}: more than one grouping factor "
                f"({', '.join(sorted(groups))}); MixedLM has one")
    group = next(iter(groups))
    if any(ch in group for ch in ":/"):
        return f"not expressible in {package}: nested/interaction grouping {group!r}"
    if len(bars) > 1 and any(not b.double for b in bars):
        return (f"not expressible in {package}: several terms for one grouping factor with a "
                "correlated one among them")
    if any(b.double for b in bars) and not double_bar:
        return (f"not expressible in {package}: '||' needs a diagonal covariance, and its "
                "fit() refuses free= (NotImplementedError in this release)")
    return None


def fit_mixedlm_api(MixedLM: Any, MixedLMParams: Any, case: Any, data: Any) -> dict[str, Any]:
    """Fit with a statsmodels-style ``MixedLM(endog, exog, groups, exog_re)`` on the design
    patsy builds (R's column names); a ``||`` split as a diagonal ``free`` pattern. The
    record without ``versions``."""
    import warnings

    import numpy as np

    parsed = F.parse(case.formula)
    y, X, names = F.fixed_design(parsed, data)
    terms = F.lme4_terms(parsed, data)
    exog_re = np.column_stack([F.re_design(t.columns, data) for t in terms])
    q = exog_re.shape[1]
    REML = bool(case.REML)
    mod = MixedLM(y, X, groups=F.group_labels(data, terms[0].group), exog_re=exog_re)
    kwargs: dict[str, Any] = {"reml": REML}
    if len(terms) > 1:  # uncorrelated terms: a diagonal covariance
        kwargs["free"] = MixedLMParams.from_components(np.ones(X.shape[1]), np.eye(q))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mod.fit(**kwargs)
    scale = float(res.scale)
    cov = np.asarray(res.cov_re, dtype=float).reshape(q, q)
    covs, start = [], 0
    for t in terms:
        covs.append(cov[start:start + len(t.columns), start:start + len(t.columns)])
        start += len(t.columns)
    theta = F.theta_of(terms, covs, scale)
    own_singular = getattr(res, "singular", None)
    return {
        "fixef": dict(zip(names, map(float, res.fe_params), strict=True)),
        "fixef_se": dict(zip(names, map(float, np.asarray(res.bse_fe)), strict=True)),
        "sigma": float(np.sqrt(scale)),
        "varcorr": F.varcorr_rows(terms, covs, scale),
        "theta": theta,
        "loglik": float(res.llf),
        "objective": -2.0 * float(res.llf),
        "REML": REML,
        "nobs": int(len(y)),
        "ngroups": {t.group: t.nlevels for t in terms},
        "converged": bool(res.converged),
        "singular": bool(own_singular) if own_singular is not None
        else F.singular(theta, terms),
        "messages": F.caught_messages(caught),
    }
