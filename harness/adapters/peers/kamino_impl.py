"""kamino-lme (PyPI ``kamino-lme``, import ``kamino``): ``kamino.lmer(formula, data, reml=)``,
Gaussian linear mixed models only, lme4's profiled criterion (its ``objective`` is lme4's
deviance / REML criterion, ``-2 logLik``; θ is lme4's relative Cholesky factor).

Its formula parser is an allowlist (kamino/formula.py ``_parse_formula`` and
``_parse_general_formula``): a fixed side of identifiers, one ``a * b`` and ``offset(name)``;
on one grouping factor ``(1 | g)``, ``(1 + x | g)``, ``(1 | g) + (0 + x | g)`` or
``(1 + x || g)``; on several, random intercepts (``(1 | a/b)``, ``(1 | a:b)``) and categorical
slopes. Every bar must write its intercept (``(Days | g)`` is refused): the adapter writes
lme4's implicit intercept as ``1 +``. Factors are coded with treatment (or sum) contrasts only,
so ordered factors (lme4's contr.poly) are declined; what else its parser refuses is declined
with its own message. Grouping columns are passed as strings (its interactions need them)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers import calls
from harness.adapters.peers._base import Peer, complex_predictors, ordered_in_fixed

_IDENT = r"[A-Za-z_]\w*"
_FIXED_TOKEN = re.compile(rf"{_IDENT}|{_IDENT}\s*\*\s*{_IDENT}|offset\(\s*{_IDENT}\s*\)|1")


def kamino_formula(parsed: F.Parsed) -> str:
    """lme4's formula in kamino's spelling: each bar with its intercept written (``1 + x``)."""
    bars = []
    for b in parsed.bars:
        if b.intercept:
            expr = " + ".join(["1"] + b.predictors)
        else:
            expr = " + ".join(["0"] + b.predictors)
        bars.append(f"({expr} {'||' if b.double else '|'} {b.group})")
    fixed = parsed.fixed if parsed.fixed.strip() not in ("", "1") else "1"
    return f"{parsed.response} ~ {fixed} + " + " + ".join(bars)


def group_columns(terms: list[F.Term]) -> list[str]:
    """The columns of lme4's grouping factors (an interaction's parts), in first use."""
    return list(dict.fromkeys(p for t in terms for p in t.group.split(":")))


class KaminoPeer(Peer):
    name = "kamino-lme"
    module = "kamino"
    dist = "kamino-lme"

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if not re.fullmatch(_IDENT, parsed.response):
            raise F.cannot(self.dist, f"the response {parsed.response}", "its parser takes a "
                           "column name only (no cbind, no expressions)")
        tokens = [t.strip() for t in F._summands(parsed.fixed)]
        bad = [t for t in tokens if not _FIXED_TOKEN.fullmatch(t)]
        if bad:
            raise F.cannot(self.dist, f"the fixed-effects term(s) {', '.join(bad)}", "its "
                           "parser allows identifiers, one 'a * b' and offset(name) only")
        if complex_predictors(parsed):
            raise F.cannot(self.dist, "expressions in random-effects terms", "its parser "
                           "takes identifiers only")
        if data is not None and ordered_in_fixed(parsed, data):
            raise F.cannot(self.dist, f"contr.poly for the ordered factor(s) "
                           f"{', '.join(ordered_in_fixed(parsed, data))}", "it codes factors "
                           "with treatment or sum contrasts only")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import kamino
        from kamino.errors import UnsupportedFormulaError

        parsed, terms = self.prepare(case, data)
        REML = bool(case.REML)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                m = calls.kamino_lmer(kamino, data, kamino_formula(parsed), REML,
                                      group_columns(terms))
            except UnsupportedFormulaError as exc:
                raise F.cannot(self.dist, case.formula, f"its parser refuses it ({exc})"
                               ) from None
        if m.dropped_fixed_names:
            raise F.cannot(self.dist, "this rank-deficient design in lme4's terms", "it "
                           f"drops {list(m.dropped_fixed_names)}; the adapter does not map "
                           "the dropped columns")
        sigma2 = float(m.sigma2)
        covs = _term_covariances(m, terms)
        theta = F.theta_of(terms, covs, sigma2)
        names = list(m.fixed_names)
        se = np.sqrt(np.diag(np.asarray(m.beta_covariance, dtype=float)))
        diag = m.diagnostics
        messages = F.caught_messages(caught)
        if not diag.converged:
            messages.append(f"kamino: {diag.message}")
        return {
            "fixef": dict(zip(names, map(float, m.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, se), strict=True)),
            "sigma": float(np.sqrt(sigma2)),
            "varcorr": F.varcorr_rows(terms, covs, sigma2),
            "theta": theta,
            "loglik": float(m.log_likelihood),
            "objective": float(m.objective),
            "REML": REML,
            "nobs": int(len(m.fitted_values)),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(diag.converged),
            "singular": F.singular(theta, terms),
            "messages": messages,
            "nfev": int(diag.evaluations),
            "versions": self.versions(),
        }


def _term_covariances(m: Any, terms: list[F.Term]) -> list[np.ndarray]:
    """kamino's ``random_covariance`` cut into its terms (``covariance_term_sizes``, in the
    order of ``random_terms``; one grouping factor: ``group_name`` and
    ``random_coefficient_names``), then matched to lme4's terms."""
    blocks = calls.kamino_blocks(m)
    out = []
    for t in terms:
        picked = [F.pick_block({k.strip(): v}, t, "kamino-lme") for k, v in blocks.items()
                  if F.same_factor(k.strip(), t.group) and all(c in v[0] for c in t.columns)]
        if not picked:
            F.pick_block({}, t, "kamino-lme")  # raises, naming the term
        out.append(picked[0])
    return out
