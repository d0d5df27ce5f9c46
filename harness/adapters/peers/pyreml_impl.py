"""pyreml (PyPI ``pyreml``, REML in PyTorch, from animal breeding):
``MixedModel.from_dataframe(data, response, fixed="1 + x", random=[Random(unit, formula,
left_hand)])`` then ``fit()``. Each lme4 term is one ``Random``: ``left_hand="iid"`` for one
column, ``"full"`` for a correlated term, and a ``||`` pair becomes one ``Random`` over both
columns with ``left_hand="diag"``; an interaction grouping is passed as a column of its own.
Formulas are patsy's (ordered factors as ``C(x, Poly)``: R's contr.poly). REML only: with a
random effect the package always fits REML (its ML loss covers the OLS path alone). Gaussian
responses only: no GLMM fitter."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers import _reported as R
from harness.adapters.peers import calls
from harness.adapters.peers._base import Peer


class PyremlPeer(Peer):
    name = "pyreml"
    module = "pyreml"
    dist = "pyreml"

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if not case.REML:
            raise F.cannot("pyreml", "ML fits", "with a random effect it fits by REML only "
                           "(MixedModel.ML_loss covers the OLS path alone)")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import torch
        from pyreml import MixedModel, Random

        calls.torch_threads(torch)  # the harness's share of the cores
        parsed, terms = self.prepare(case, data)
        randoms, units = pyreml_randoms(parsed), []
        for bar in parsed.bars:
            units += [(group, list(bar.columns)) for group in bar.groups]
        fixed = F.patsy_formula(parsed.fixed, data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mm = calls.pyreml_fit(MixedModel, Random, data, parsed.response, fixed, randoms)
        sigma2 = float(mm.residual.variance["sigma"])
        blocks = {}
        for (group, cols), r in zip(units, mm.random, strict=True):
            S = np.atleast_2d(np.asarray(r.variance["sigma"], dtype=float))
            key = group if group not in blocks else f"{group}#{len(blocks)}"
            blocks[key] = (cols, S)
        covs = [F.pick_block({k: v for k, v in blocks.items()
                              if k.split("#")[0] == t.group}, t, "pyreml") for t in terms]
        theta = F.theta_of(terms, covs, sigma2)
        est = mm.estimates
        names = F.map_names([str(n) for n in est["term"]], data, "patsy")
        objective = float(mm.neg2loglik)
        return {
            "fixef": dict(zip(names, map(float, est["estimate"]), strict=True)),
            "fixef_se": dict(zip(names, map(float, est["SE"]), strict=True)),
            "sigma": math.sqrt(sigma2),
            "varcorr": F.varcorr_rows(terms, covs, sigma2),
            "theta": theta,
            "loglik": -0.5 * objective,
            "objective": objective,
            "REML": True,
            "nobs": int(mm.n),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(mm.opti_REML.converged),
            "singular": F.singular(theta, terms),
            "messages": F.caught_messages(caught),
            "nfev": len(mm.opti_REML.loss),
            "versions": {**self.versions(), "torch": str(torch.__version__)},
            "ranef": ranef(mm, units, terms),
        }


def pyreml_randoms(parsed: F.Parsed) -> list[tuple[str, str, str, str]]:
    """pyreml's ``Random`` per lme4 term, as :func:`calls.pyreml_fit` takes them: (unit
    column, grouping factor, left-hand formula, kind): ``iid`` for one column, ``full`` for a
    correlated term, ``diag`` for a ``||`` term; an interaction ``a:b`` gets the unit ``a__b``."""
    out = []
    for bar in parsed.bars:
        lhs = " + ".join((["1"] if bar.intercept else ["0"]) + bar.predictors)
        q = len(bar.columns)
        kind = "iid" if q == 1 else ("diag" if bar.double else "full")
        out += [("__".join(group.split(":")), group, lhs, kind) for group in bar.groups]
    return out


def ranef(mm: Any, units: list[tuple[str, list[str]]], terms: list[F.Term]
          ) -> list[dict[str, Any]] | None:
    """pyreml's predictions of the random effects, each Random's ``table`` after the fit
    (random.py format_pred: ``prediction`` and ``SE`` = sqrt(diag(PEV)) per unit and
    component, the components in the term's column order), in lme4's names. Its SE is the
    prediction error's (Henderson's C^22, which counts β's estimation too), reported as given."""
    blocks = []
    for (group, cols), r in zip(units, mm.random, strict=True):
        table = getattr(r, "table", None)
        if table is None:
            return None
        comps = list(r.colnames)
        if len(comps) != len(cols):
            return None
        wide = table.pivot(index="unit", columns="component", values="prediction")[comps]
        se = table.pivot(index="unit", columns="component", values="SE")[comps]
        blocks.append((group, [str(u) for u in wide.index], cols, wide.to_numpy(float),
                       se.loc[wide.index].to_numpy(float)))
    return R.ranef_of(blocks, terms)
