"""lme-python (PyPI ``lme-python``, the Rust crate lme-rs): ``lme_python.lmer(formula, data,
reml=, factors=)`` takes lme4's formula and a polars frame. Factors go in as strings with their
levels declared (``FactorSpec(levels, coding="treatment")``), so the reference level is R's;
its codings are treatment and sum only, so ordered factors (lme4: contr.poly) cannot be
expressed. Its ``var_corr`` rows are (grp, var1, var2, vcov, sdcor) with the covariance row
written (slope, intercept) and no correlation: rebuilt into lme4's rows from the covariances."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers._base import Peer, ordered_in_fixed


class LmePythonPeer(Peer):
    name = "lme-python"
    module = "lme_python"
    dist = "lme-python"

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if data is not None and ordered_in_fixed(parsed, data):
            raise F.cannot("lme-python", "contr.poly for the ordered factor(s) "
                           f"{', '.join(ordered_in_fixed(parsed, data))}",
                           "FactorSpec's coding is treatment or sum only")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import lme_python
        import polars as pl

        parsed, terms = self.prepare(case, data)
        cols, factors = {}, {}
        for c in data.columns:
            if str(data[c].dtype) == "category":
                cols[c] = data[c].astype(str).to_numpy()
                if F.uses(parsed.fixed, c):
                    factors[c] = lme_python.FactorSpec(
                        [str(v) for v in data[c].cat.categories], coding="treatment")
            else:
                cols[c] = data[c].to_numpy()
        frame = pl.DataFrame(cols)
        REML = bool(case.REML)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = lme_python.lmer(case.formula, frame, reml=REML, factors=factors or None)
        sigma2 = float(m.sigma2)
        blocks: dict[str, tuple[list[str], dict[tuple[str, str], float]]] = {}
        for grp, v1, v2, vcov, _ in m.var_corr or []:
            if grp == "Residual":
                continue
            names, entries = blocks.setdefault(grp, ([], {}))
            if v1 == v2:
                names.append(v1)
            entries[(v1, v2)] = entries[(v2, v1)] = float(vcov)
        mats = {g: (names, np.array([[e.get((a, b), 0.0) for b in names] for a in names]))
                for g, (names, e) in blocks.items()}
        covs = [F.pick_block(mats, t, "lme-python") for t in terms]
        theta = F.theta_of(terms, covs, sigma2)
        names = list(m.fixed_names or [])
        diag = dict(m.diagnostics or {})
        messages = F.caught_messages(caught) + [str(w) for w in diag.get("warnings") or []]
        if diag.get("termination") not in (None, "Converged"):
            messages.append(f"termination: {diag['termination']}")
        objective = m.reml_criterion if REML else m.deviance
        return {
            "fixef": dict(zip(names, map(float, m.coefficients), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.beta_se or []), strict=True)),
            "sigma": float(np.sqrt(sigma2)),
            "varcorr": F.varcorr_rows(terms, covs, sigma2),
            "theta": theta,
            "loglik": float(m.log_likelihood),
            "objective": None if objective is None else float(objective),
            "REML": REML,
            "nobs": int(m.num_obs),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(m.converged),
            "singular": F.singular(theta, terms),
            "messages": messages,
            "nfev": None if m.iterations is None else int(m.iterations),
            "versions": self.versions(),
        }
