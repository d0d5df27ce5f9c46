"""interlace (PyPI ``interlace-lme``, pure Python profiled REML/ML):
``interlace.fit(fixed, data, random=[...], method="REML"|"ML")`` with a patsy fixed formula and
lme4-style random-effect strings. Its grammar differs from lme4's in two places the adapter
translates: ``(x | g)`` is a slope *without* intercept in interlace (documented in
``interlace.formula.parse_random_effects``), so the intercept is written out, ``(1 + x | g)``;
an interaction grouping ``(1 | a:b)`` is refused by its parser, so the pasted factor is passed as
a column of its own. Random-effect predictors must be data columns (no ``I(...)``).

GLMMs: ``interlace.glmer(fixed, data, family="binomial"|"poisson", random=[...], weights=,
nAGQ=)`` (interlace.glmm_laplace.fit_glmm): its binomial family has the logit link only, its
Poisson family the log link only. The Laplace fit optimizes theta with beta inside PIRLS, then
refines (theta, beta) jointly by Nelder-Mead (lme4's two stages); for nAGQ > 1 (one scalar
term) it optimizes theta alone, beta at the PIRLS mode, under its quadrature criterion. The
response is passed as glmer reads it (the proportion, weights = trials). Its ``fe_bse`` is the
inverse of the Schur complement X'WX - X'WZ* A^-1 Z*'WX at the conditional modes, i.e. the RX
(Fisher information) SE (lme4's ``vcov(m, use.hessian = FALSE)``), not lme4's Hessian-based
default: ``fixef_se_rx`` carries it (``fixef_se``, the
Hessian-based kind, is not reported). Its ``variance_components`` keep only
each term's first variance, so the covariances are rebuilt from its ``theta`` (per term the
lower Cholesky factor filled row by row, or the standard deviations of a ``||`` term).

Its fixed formula goes to formulaic, where ``^`` inside ``I()`` is Python's xor and
``offset()`` is undefined: R's ``I(x^k)`` is written ``I(x**k)`` (and its column name mapped
back to R's ``I(x^k)``), and each ``offset(expr)`` term is stripped and passed, evaluated, as
``offset=`` (both ``interlace.fit`` and ``interlace.glmer`` take one: an offset added to the
linear predictor, interlace/glmm_laplace.py fit_glmm)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers import _reported as R
from harness.adapters.peers import calls
from harness.adapters.peers._base import (
    Peer,
    complex_predictors,
    glmm_record,
    nagq_of,
    response_frame,
)


class InterlacePeer(Peer):
    name = "interlace-lme"
    module = "interlace"
    dist = "interlace-lme"
    glmm_links = {"binomial": ("logit",), "poisson": ("log",)}
    glmm_agq = None  # nAGQ > 1 for one scalar random intercept (fit_glmm refuses others)

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        bad = complex_predictors(parsed)
        if bad:
            raise F.cannot("interlace", f"the random-effect predictor(s) {', '.join(bad)}",
                           "its random-effect predictors are data columns, not expressions")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import interlace

        parsed, terms = self.prepare(case, data)
        fixed_rhs, offsets, random, columns = interlace_inputs(parsed)
        offset = F.offset_vector(offsets, data)
        alias = dict(columns)
        data = calls.with_groups(data, columns)
        if case.is_glmm:
            return self._fit_glmm(case, data, fixed_rhs, offset, terms, random, alias)
        REML = bool(case.REML)
        fixed = f"{parsed.response} ~ {F.patsy_formula(fixed_rhs, data)}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = calls.interlace_fit(interlace, data, fixed, random, "REML" if REML else "ML",
                                    offset, columns)
            rows = interlace.VarCorr(m).as_dataframe().to_dict("records")
        sigma2 = float(m.scale)
        mats = calls.interlace_blocks(rows, alias)
        messages = F.caught_messages(caught)
        try:
            covs = [F.pick_block(mats, t, "interlace") for t in terms]
            varcorr, theta = F.varcorr_rows(terms, covs, sigma2), F.theta_of(terms, covs, sigma2)
        except RuntimeError as exc:  # its VarCorr names other columns than lme4's: as it says
            messages.append(f"harness: {exc}; its VarCorr rows are reported as it labels them")
            varcorr = [{**r, "grp": alias.get(str(r["grp"]), str(r["grp"])),
                        "var1": None if calls.blank(r["var1"]) else str(r["var1"]),
                        "var2": None if calls.blank(r["var2"]) else str(r["var2"])}
                       for r in rows]
            theta = None
        names = F.r_powers(F.map_names([str(k) for k in m.fe_params.index], data, "patsy"))
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
            "ranef": ranef(m, terms),
            "coef_tests": self._coef_tests(m, names, fixed, data, random, offset, REML),
        }

    @staticmethod
    def _coef_tests(m: Any, names: list[str], fixed: str, data: Any, random: list[str],
                    offset: Any, REML: bool) -> list[dict[str, Any]] | None:
        """interlace's t tests: its fit's own Satterthwaite df and p (``df_method=
        "satterthwaite"``, interlace/satterthwaite.py satterthwaite_dfs), and, for REML fits
        of random intercepts only (interlace/kenward_roger.py refuses slopes), Kenward-Roger's
        adjusted SE, df and p from the same fit with ``df_method="kenward-roger"`` (kept only
        when its estimates are the first fit's)."""
        import interlace

        wanted = R.wanted_ddf(int(m.nobs), REML)
        rows: list[dict[str, Any]] = []
        if "Satterthwaite" in wanted:
            rows += R.coef_test_rows("Satterthwaite", names, m.fe_bse, m.fe_df, m.fe_pvalues)
        if "Kenward-Roger" in wanted:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kr = calls.interlace_fit(interlace, data, fixed, random, "REML", offset,
                                             [], df_method="kenward-roger")
            except NotImplementedError:
                kr = None
            if kr is not None and R.same_columns(dict(m.fe_params), dict(kr.fe_params)):
                rows += R.coef_test_rows("Kenward-Roger", names, kr.fe_bse, kr.fe_df,
                                         kr.fe_pvalues)
        return rows or None

    def _fit_glmm(self, case: Any, data: Any, fixed_rhs: str, offset: Any,
                  terms: list[F.Term], random: list[str], alias: dict[str, str]
                  ) -> dict[str, Any]:
        import interlace

        parsed = F.parse(case.formula)
        frame, resp = response_frame(case, data)
        fixed = f"glmm_y_ ~ {F.patsy_formula(fixed_rhs, data)}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = calls.interlace_glmer(interlace, frame, fixed, case.family, random,
                                      resp.weights, nagq_of(case), offset)
        blocks = calls.interlace_theta_blocks(m.theta, theta_specs(parsed, alias))
        covs = [F.pick_block(blocks, t, "interlace") for t in terms]
        names = F.r_powers(F.map_names([str(n) for n in m.fe_params.index], data, "patsy"))
        mu = np.asarray(m.fittedvalues, dtype=float)
        dev = float(np.sum(F.unit_deviance(case.family, resp.y, mu, resp.weights)))
        messages = [msg for msg in F.caught_messages(caught) if "scikit-sparse" not in msg]
        rec = glmm_record(case, terms, covs, names=names, beta=m.fe_params, se=None,
                          se_rx=m.fe_bse, loglik=float(m.llf), deviance=dev, nobs=int(m.nobs),
                          converged=bool(m.converged), messages=messages)
        rec["versions"] = self.versions()
        return rec


def ranef(m: Any, terms: list[F.Term]) -> list[dict[str, Any]] | None:
    """interlace's conditional modes (``random_effects``) and their SDs (``random_effects_se``:
    sqrt of the diagonal of sigma^2 Lambda A11^-1 Lambda', interlace/result.py, lme4's
    condVar), in lme4's names; a pasted interaction column ``a__b`` is lme4's ``a:b``."""
    modes = getattr(m, "random_effects", None) or {}
    try:
        sds = m.random_effects_se
    except Exception:  # noqa: BLE001 - the modes stand alone
        sds = {}
    blocks = []
    for grp, table in modes.items():
        frame = table.to_frame(name=_scalar_column(str(grp), terms)) if table.ndim == 1 \
            else table
        sd = sds.get(grp)
        sd_values = None if sd is None else np.asarray(sd, dtype=float).reshape(frame.shape)
        blocks.append((str(grp), list(frame.index), R.column_names(list(frame.columns), terms),
                       frame.to_numpy(dtype=float), sd_values))
    return R.ranef_of(blocks, terms)


def _scalar_column(group: str, terms: list[F.Term]) -> str:
    """The column of lme4's one-column term for interlace's group (its one-term specs are a
    Series without a column name: ``(Intercept)``, or the slope of ``(0 + x | g)``)."""
    grp = R.lme4_group(group, terms)
    cols = [t.columns[0] for t in terms if t.group == grp and len(t.columns) == 1]
    return cols[0] if len(cols) == 1 else "(Intercept)"


def interlace_inputs(parsed: F.Parsed) -> tuple[str, list[str], list[str],
                                                 list[tuple[str, str]]]:
    """What interlace's call takes for lme4's formula: the fixed right-hand side in formulaic's
    spelling (``I(x**k)``) without its offsets, the offset expressions (evaluated by the
    caller), the random-effect strings and the interaction groupings passed as columns
    (:func:`interlace_random`)."""
    fixed_rhs, offsets = F.split_offsets("y ~ " + parsed.fixed)
    random, columns = interlace_random(parsed)
    return F.python_powers(fixed_rhs.partition("~")[2].strip()), offsets, random, columns


def theta_specs(parsed: F.Parsed, alias: dict[str, str]) -> list[tuple[str, list[str], bool]]:
    """interlace's random-effects specs in its theta's order as
    :func:`calls.interlace_theta_blocks` takes them: (lme4's group, columns, ``||``)."""
    return [(alias.get(group, group), list(b.columns), b.double) for b, group in _specs(parsed)]


def interlace_random(parsed: F.Parsed) -> tuple[list[str], list[tuple[str, str]]]:
    """interlace's random-effect strings for lme4's bars (the intercept written out: its
    ``(x | g)`` has none), and the interaction groupings passed as columns of their own:
    [(column ``a__b``, grouping ``a:b``)]."""
    random, columns = [], []
    for b in parsed.bars:
        group = b.group
        if ":" in group:  # interaction grouping: a column of its own
            col = "__".join(group.split(":"))
            columns.append((col, group))
            group = col
        lhs = " + ".join((["1"] if b.intercept else ["0"]) + b.predictors)
        random.append(f"({lhs} {'||' if b.double else '|'} {group})")
    return random, columns


def _specs(parsed: F.Parsed) -> list[tuple[F.Bar, str]]:
    """interlace's random-effects specs in its order (its theta's order), each with its group
    as interlace names it: a bar per spec, ``(1 | a/b)`` expanded into ``a`` then ``a:b``
    (interlace.formula.parse_random_effects), an interaction grouping ``a:b`` as the adapter
    passes it (the pasted column ``a__b``)."""
    out = []
    for b in parsed.bars:
        if "/" in b.group:
            parts = [p.strip() for p in b.group.split("/")]
            out += [(b, ":".join(parts[:k])) for k in range(1, len(parts) + 1)]
        else:
            out.append((b, "__".join(b.group.split(":")) if ":" in b.group else b.group))
    return out

