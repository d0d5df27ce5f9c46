"""What the peer adapters share: availability as one line, formula checks before any data is
read (``supports``) and after (``fit`` raises NotImplementedError), and the record's common
fields."""

from __future__ import annotations

from typing import Any

from harness.adapters.base import Adapter
from harness.adapters.peers import _formula as F
from harness.adapters.peers import calls
from harness.core import protocol


class Peer(Adapter):
    """A PyPI mixed-model package: ``module`` is its import name, ``dist`` its distribution.

    GLMMs: ``glmm_links`` maps each glmer family the package fits (R's names) to the links it
    has (R's names); empty for a package of linear mixed models only. ``glmm_agq`` says it
    fits lme4's nAGQ > 1 criterion (one scalar random-effects term); ``glmm_weights`` that it
    takes prior weights (binomial: the trials of a proportion response)."""

    module = ""
    dist = ""
    glmm_links: dict[str, tuple[str, ...]] = {}
    glmm_agq: str | None = "it has no adaptive Gauss-Hermite quadrature"  # None: it has
    glmm_weights = True
    glmm_nagq0 = False  # it fits lme4's nAGQ = 0 criterion when asked
    glmm_unmapped: tuple[str, ...] = ()  # families it has that the adapter does not map yet

    def unavailable(self) -> str | None:
        """Whether the package is installed where it fits: this process's environment, or the
        interpreter given with --impl-python (asked there, once)."""
        if not self.python:
            return F.missing(self.module, self.dist)
        if "_missing" not in self.__dict__:
            from harness.core import isolation

            out = isolation.call(self.lane, "harness.adapters.peers._formula:missing",
                                 self.module, self.dist, python=self.python,
                                 timeout=isolation.START_TIMEOUT)
            self.__dict__["_missing"] = (out.value if out.kind == "ok" else
                                         f"{self.dist}: {self.python}: {out.error}")
        return self.__dict__["_missing"]

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        """Raise NotImplementedError (via F.cannot) for what the package cannot express;
        ``data`` is None when only the formula is known."""

    def capabilities(self) -> protocol.Capabilities:
        """The package's GLMM families and links as the implementation protocol declares a
        candidate's (harness.core.protocol), so peers and users' callables are held to one
        rule."""
        families = {f: links for f, links in self.glmm_links.items()
                    if f not in self.glmm_unmapped}
        return protocol.Capabilities(keywords=None if self.glmm_links else frozenset(),
                                     families=families)

    def check_glmm(self, case: Any) -> None:
        """Raise NotImplementedError for a GLMM case the package cannot fit as glmer does."""
        args = protocol.model_arguments(case)
        family = args.get("family")
        if family is None:
            return
        if not self.glmm_links:
            raise F.cannot(self.dist, f"a GLMM (glmer, family {family})", "it fits linear "
                           "mixed models only (no family argument, no GLMM fitter)")
        if family in self.glmm_unmapped:
            raise F.cannot(self.dist, f"the GLMM family {family} through this adapter", "the "
                           "package has it, but the adapter does not yet map its dispersion to "
                           "lme4's sigma and Residual row (untested)")
        if protocol.refusal(self.capabilities(), case) is not None:
            raise F.cannot(self.dist, f"the {family} GLMM with link {args['link']}",
                           "its GLMM families and links are " + "; ".join(
                f"{f} ({', '.join(links)})" for f, links in self.glmm_links.items()))
        nagq = args["nAGQ"]
        if nagq > 1 and self.glmm_agq:
            raise F.cannot(self.dist, f"nAGQ = {nagq}", self.glmm_agq)
        if nagq < 1 and not self.glmm_nagq0:
            raise F.cannot(self.dist, f"nAGQ = {nagq}", "lme4's nAGQ = 0 criterion "
                           "(fixed effects inside PIRLS) is not one of its fitting methods")
        if "weights" in args and not self.glmm_weights:
            raise F.cannot(self.dist, f"prior weights ({args['weights']})", "its GLMM fitter "
                           "takes no weights")

    def supports(self, case: Any) -> str | None:
        parsed = F.parse(case.formula)
        if not parsed.bars:
            return f"{self.dist} cannot express a model without random-effects terms"
        try:
            self.check_glmm(case)
            self.check(parsed, case)
        except NotImplementedError as exc:
            return str(exc)
        return None

    def prepare(self, case: Any, data: Any) -> tuple[F.Parsed, list[F.Term]]:
        parsed = F.parse(case.formula)
        self.check_glmm(case)
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
    import patsy

    parsed = F.parse(case.formula)
    factors = sorted({p for b in parsed.bars for p in b.predictors} & set(F.factors(data)))
    if factors:
        raise NotImplementedError(
            f"factor-valued random slopes ({', '.join(factors)}): this translation names a "
            "term's columns by the formula and does not expand a factor into R's treatment "
            "columns, so it cannot state the fit in lme4's terms")
    terms = F.lme4_terms(parsed, data)
    y, X, groups, exog_re = calls.mixedlm_design(
        patsy, data, parsed.response, F.patsy_formula(parsed.fixed, data),
        mixedlm_re_terms(terms), terms[0].group)
    names = [F.r_name(c) for c in X.columns]
    q = exog_re.shape[1]
    REML = bool(case.REML)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = calls.mixedlm_fit(MixedLM, MixedLMParams, y, X, groups, exog_re, REML,
                                diagonal=len(terms) > 1)
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


def mixedlm_re_terms(terms: list[F.Term]) -> list[str]:
    """Each lme4 term's right-hand side as patsy reads it (``1 + Days``, ``0 + Days``): the
    random-effects design blocks of a statsmodels-style MixedLM, in lme4's term order."""
    out = []
    for t in terms:
        preds = [c for c in t.columns if c != "(Intercept)"]
        out.append(" + ".join(["1" if "(Intercept)" in t.columns else "0"] + preds))
    return out


def nagq_of(case: Any) -> int:
    """The case's nAGQ (1 when it says nothing)."""
    n = getattr(case, "nAGQ", None)
    return 1 if n is None else int(n)


def scaled_family(case: Any) -> bool:
    """A GLMM family with a scale parameter (Gamma, inverse Gaussian): lme4 reports sigma and a
    Residual varcorr row; binomial and Poisson have sigma 1 and no Residual row."""
    return case.family in ("Gamma", "inverse.gaussian")


def glmm_record(case: Any, terms: list[F.Term], covs: list[Any], *, names: list[str],
                beta: Any, se: Any | None, se_rx: Any = None, sigma: float = 1.0,
                loglik: float | None, deviance: float | None, nobs: int, converged: bool,
                singular: bool | None = None, messages: list[str] | None = None,
                nfev: int | None = None) -> dict[str, Any]:
    """The record of a GLMM fit from a package's own quantities, in lme4's shapes: varcorr rows
    without the Residual row for binomial and Poisson (lme4's sigma() is 1 there), theta as
    lme4's (the Cholesky factor of the covariance over sigma^2), objective = -2 logLik (the
    package's logLik, as it reports it), deviance = the sum of the unit deviances at the
    conditional modes (lme4's deviance(m))."""
    import numpy as np

    sigma2 = float(sigma) ** 2 if scaled_family(case) else 1.0
    rows = F.varcorr_rows(terms, covs, sigma2)
    if not scaled_family(case):
        rows = [r for r in rows if r["grp"] != "Residual"]
    theta = F.theta_of(terms, covs, sigma2)
    se_rx_map = None if se_rx is None else dict(zip(names, map(float, se_rx), strict=True))
    return {
        "fixef": dict(zip(names, map(float, beta), strict=True)),
        # like with like: RX-based SEs go in fixef_se_rx only (fixef_se is lme4's Hessian-based)
        "fixef_se": {} if se is None else dict(zip(names, map(float, se), strict=True)),
        "fixef_se_rx": se_rx_map,
        "sigma": float(np.sqrt(sigma2)),
        "varcorr": rows,
        "theta": theta,
        "loglik": None if loglik is None else float(loglik),
        "objective": None if loglik is None else -2.0 * float(loglik),
        "deviance": None if deviance is None else float(deviance),
        "REML": False,
        "nobs": int(nobs),
        "ngroups": {t.group: t.nlevels for t in terms},
        "converged": bool(converged),
        "singular": F.singular(theta, terms) if singular is None else bool(singular),
        "messages": list(messages or []),
        "nfev": nfev,
        "family": case.family,
        "link": case.link_name,
        "nAGQ": nagq_of(case),
    }


def lmm_record(terms: list[F.Term], covs: list[Any], *, names: list[str], beta: Any, se: Any,
               sigma2: float, loglik: float, REML: bool, nobs: int, converged: bool,
               messages: list[str]) -> dict[str, Any]:
    """The record of a linear mixed model fit from a package's own quantities, in lme4's
    shapes: varcorr rows and theta from the terms' covariances and sigma^2, objective =
    -2 logLik (the package's logLik), singular as lme4's isSingular of that theta."""
    import numpy as np

    theta = F.theta_of(terms, covs, sigma2)
    return {
        "fixef": dict(zip(names, map(float, beta), strict=True)),
        "fixef_se": dict(zip(names, map(float, se), strict=True)),
        "sigma": float(np.sqrt(sigma2)),
        "varcorr": F.varcorr_rows(terms, covs, sigma2),
        "theta": theta,
        "loglik": loglik,
        "objective": -2.0 * loglik,
        "REML": REML,
        "nobs": int(nobs),
        "ngroups": {t.group: t.nlevels for t in terms},
        "converged": converged,
        "singular": F.singular(theta, terms),
        "messages": messages,
    }


def response_frame(case: Any, data: Any, column: str = "glmm_y_") -> tuple[Any, Any]:
    """A copy of ``data`` with the case's response as glmer reads it in ``column`` (binomial:
    the proportion), and the :class:`F.GlmmResponse` (its prior weights: the trials)."""
    resp = F.glmm_response(case, data)
    data = data.copy()
    data[column] = resp.y
    return data, resp


def response_formula(formula: str, column: str = "glmm_y_") -> str:
    """``formula`` with its left-hand side replaced by ``column``."""
    return column + " ~" + formula.partition("~")[2]
