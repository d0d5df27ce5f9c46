"""interlace (PyPI ``interlace-lme``, pure Python profiled REML/ML):
``interlace.fit(fixed, data, random=[...], method="REML"|"ML")`` with a patsy fixed formula and
lme4-style random-effect strings. Its grammar differs from lme4's in two places the adapter
translates: ``(x | g)`` is a slope *without* intercept in interlace (documented in
``interlace.formula.parse_random_effects``), so the intercept is written out, ``(1 + x | g)``;
an interaction grouping ``(1 | a:b)`` is refused by its parser, so the pasted factor is passed as
a column of its own. Random-effect predictors must be data columns (no ``I(...)``)."""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers._base import Peer, complex_predictors


class InterlacePeer(Peer):
    name = "interlace-lme"
    module = "interlace"
    dist = "interlace-lme"

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        bad = complex_predictors(parsed)
        if bad:
            raise F.cannot("interlace", f"the random-effect predictor(s) {', '.join(bad)}",
                           "its random-effect predictors are data columns, not expressions")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import interlace

        parsed, terms = self.prepare(case, data)
        data = data.copy()
        random, alias = [], {}
        for b in parsed.bars:
            group = b.group
            if ":" in group:  # interaction grouping: a column of its own
                col = "__".join(group.split(":"))
                data[col] = F.group_labels(data, group)
                alias[col] = group
                group = col
            lhs = " + ".join((["1"] if b.intercept else ["0"]) + b.predictors)
            random.append(f"({lhs} {'||' if b.double else '|'} {group})")
        REML = bool(case.REML)
        fixed = f"{parsed.response} ~ {F.patsy_formula(parsed.fixed, data)}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = interlace.fit(fixed, data, random=random, method="REML" if REML else "ML")
            rows = interlace.VarCorr(m).as_dataframe().to_dict("records")
        blocks: dict[str, tuple[list[str], dict[tuple[str, str], float]]] = {}
        sigma2 = float(m.scale)
        for r in rows:
            grp = alias.get(str(r["grp"]), str(r["grp"]))
            if grp == "Residual":
                continue
            v1, v2 = r["var1"], r["var2"]
            names, entries = blocks.setdefault(grp, ([], {}))
            if _missing(v2):
                names.append(str(v1))
                entries[(v1, v1)] = float(r["vcov"])
            else:
                entries[(v1, v2)] = entries[(v2, v1)] = float(r["vcov"])
        mats = {g: (n, np.array([[e.get((a, b), 0.0) for b in n] for a in n]))
                for g, (n, e) in blocks.items()}
        messages = F.caught_messages(caught)
        try:
            covs = [F.pick_block(mats, t, "interlace") for t in terms]
            varcorr, theta = F.varcorr_rows(terms, covs, sigma2), F.theta_of(terms, covs, sigma2)
        except RuntimeError as exc:  # its VarCorr names other columns than lme4's: as it says
            messages.append(f"harness: {exc}; its VarCorr rows are reported as it labels them")
            varcorr = [{**r, "grp": alias.get(str(r["grp"]), str(r["grp"])),
                        "var1": None if _missing(r["var1"]) else str(r["var1"]),
                        "var2": None if _missing(r["var2"]) else str(r["var2"])} for r in rows]
            theta = None
        names = F.map_names([str(k) for k in m.fe_params.index], data, "patsy")
        loglik = float(m.llf)
        return {
            "fixef": dict(zip(names, map(float, m.fe_params), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.fe_bse), strict=True)),
            "sigma": math.sqrt(sigma2),
            "varcorr": varcorr,
            "theta": theta,
            "loglik": loglik,
            "objective": -2.0 * loglik,
            "REML": REML,
            "nobs": int(m.nobs),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(m.converged),
            "singular": bool(m.is_singular),
            "messages": messages,
            "versions": self.versions(),
        }


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or not re.sub(r"\s", "", str(v))
