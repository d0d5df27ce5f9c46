"""Reproducer recipes (harness/commands/repro_recipes.py's :class:`Recipe`) for the GLMM calls of
interlace-lme and lme-python, and for gpboost, kamino-lme and pymixef: the literals come from the
adapters' own helpers (``interlace_inputs``, ``gpboost_inputs``, ``kamino_formula``) and the
calls from harness/adapters/peers/calls.py, so the script and the adapter make one call.

A frame the call needs besides the case's data (glmer's response, its prior weights, an
evaluated offset) is written beside the script as extra columns, taken out again before the
call (``WEIGHTS``, ``OFFSET``: their column names, or None)."""

from __future__ import annotations

from typing import Any

from harness.adapters.peers import _formula as F
from harness.adapters.peers import calls
from harness.commands.repro_recipe import Recipe

WEIGHTS_COLUMN = "glmm_weights_"
OFFSET_COLUMN = "offset_"


def _terms(case: Any, data: Any) -> list[tuple[str, str, list[str]]]:
    """lme4's terms as the script's ``TERMS``: (VarCorr name, group, columns)."""
    return [(t.name, t.group, list(t.columns))
            for t in F.lme4_terms(F.parse(case.formula), data)]


def _with_extras(frame: Any, weights: Any, offset: Any) -> tuple[Any, str | None, str | None]:
    """``frame`` with the prior weights and the evaluated offset as columns of their own (when
    there are any), and their names."""
    w = o = None
    if weights is not None:
        w = WEIGHTS_COLUMN
        frame[w] = weights
    if offset is not None:
        o = OFFSET_COLUMN
        frame[o] = offset
    return frame, w, o


_INTERLACE_GLMM_BODY = '''
def estimates(data):
    """interlace's GLMM call (glmer), the response as glmer reads it, in lme4's quantities."""
    import interlace

    weights = data.pop(WEIGHTS).to_numpy(dtype=float) if WEIGHTS else None
    offset = data.pop(OFFSET).to_numpy(dtype=float) if OFFSET else None
    data = with_groups(data, COLUMNS)
    m = interlace_glmer(interlace, data, FIXED, FAMILY, RANDOM, weights, NAGQ, offset)
    blocks = interlace_theta_blocks(m.theta, SPECS)
    terms = [(name, cols, pick_block(blocks, group, cols)) for name, group, cols in TERMS]
    names = r_powers([r_name(str(n)) for n in m.fe_params.index])
    loglik = float(m.llf)
    return {"fixef": dict(zip(names, map(float, m.fe_params), strict=True)),
            "fixef_se": {}, "fixef_se_rx": dict(zip(names, map(float, m.fe_bse), strict=True)),
            "sigma": 1.0, "varcorr": varcorr_rows(terms, None),
            "loglik": loglik, "objective": -2.0 * loglik, "converged": bool(m.converged),
            "theta": [float(t) for t in m.theta], "nagq": NAGQ}
'''


def interlace_glmm(case: Any, data: Any) -> Recipe:
    """interlace's ``glmer`` on a binomial (logit) or Poisson (log) GLMM, as its adapter calls
    it (harness/adapters/peers/interlace_impl.py)."""
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers._base import nagq_of, response_frame
    from harness.adapters.peers.interlace_impl import interlace_inputs, theta_specs

    parsed = F.parse(case.formula)
    fixed_rhs, offsets, random, columns = interlace_inputs(parsed)
    frame, resp = response_frame(case, data)
    frame, weights, offset = _with_extras(frame, resp.weights, F.offset_vector(offsets, data))
    return Recipe(literals={"FIXED": f"glmm_y_ ~ {F.patsy_formula(fixed_rhs, data)}",
                            "FAMILY": case.family, "RANDOM": random, "COLUMNS": columns,
                            "NAGQ": nagq_of(case), "WEIGHTS": weights, "OFFSET": offset,
                            "SPECS": theta_specs(parsed, dict(columns)),
                            "TERMS": _terms(case, data), "POLY_SUFFIX": calls.POLY_SUFFIX},
                  calls=[calls.group_labels, calls.with_groups, calls.interlace_glmer,
                         calls.interlace_theta_blocks, calls.r_name, calls.r_powers],
                  body=_INTERLACE_GLMM_BODY,
                  requirements=list(REQUIREMENTS["interlace-lme"]), frame=frame)


_LME_PYTHON_GLMM_BODY = '''
def estimates(data):
    """lme-python's glmer_weighted, the response as glmer reads it, in lme4's quantities."""
    import lme_python
    import polars as pl

    weights = data.pop(WEIGHTS).to_numpy(dtype=float) if WEIGHTS else None
    m = lme_python_glmer(lme_python, pl, data, FORMULA, FAMILY, NAGQ, weights, LINK)
    used = dict(m.diagnostics or {}).get("effective_n_agq")
    if used not in (None, NAGQ):
        print(f"note: it fell back to n_agq = {used}", file=sys.stderr)
    blocks = lme_python_blocks(m.var_corr)
    terms = [(name, cols, pick_block(blocks, group, cols)) for name, group, cols in TERMS]
    names = list(m.fixed_names or [])
    loglik = float(m.log_likelihood)
    return {"fixef": dict(zip(names, map(float, m.coefficients), strict=True)),
            "fixef_se": {},
            "fixef_se_rx": dict(zip(names, map(float, m.beta_se or []), strict=True)),
            "sigma": 1.0, "varcorr": varcorr_rows(terms, None),
            "loglik": loglik, "objective": -2.0 * loglik, "converged": bool(m.converged),
            "nagq": NAGQ}
'''


def lme_python_glmm(case: Any, data: Any) -> Recipe:
    """lme-python's ``glmer_weighted`` on a binomial or Poisson GLMM, as its adapter calls it
    (harness/adapters/peers/lme_python_impl.py)."""
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers._base import nagq_of, response_formula, response_frame

    frame, resp = response_frame(case, data)
    frame, weights, _ = _with_extras(frame, resp.weights, None)
    return Recipe(literals={"FORMULA": response_formula(case.formula), "FAMILY": case.family,
                            "LINK": case.link_name, "NAGQ": nagq_of(case), "WEIGHTS": weights,
                            "TERMS": _terms(case, data)},
                  calls=[calls.lme_python_glmer, calls.lme_python_blocks],
                  body=_LME_PYTHON_GLMM_BODY,
                  requirements=list(REQUIREMENTS["lme-python"]), frame=frame)


_GPBOOST_BODY = '''
def estimates(data):
    """gpboost's GPModel on the fixed design patsy builds, in lme4's quantities (it reports no
    convergence flag; a GLMM's coefficient SEs are not lme4's kind and are left out)."""
    import gpboost as gpb
    import patsy

    offset = data.pop(OFFSET).to_numpy(dtype=float) if OFFSET else None
    y, X = patsy_fixed(patsy, data, FIXED)
    names = r_powers([r_name(c) for c in X.columns])
    group_data = np.column_stack([group_labels(data, g) for g in GROUPS])
    slopes = [tuple(s) for s in SLOPES]
    rand_coef, ind_effect, drop_intercept = gpboost_coefficients(patsy, data, GROUPS,
                                                                 INTERCEPTS, slopes)
    m, cov_pars, coef, loglik = gpboost_fit(gpb, y, np.asarray(X, dtype=float), group_data,
                                            LIKELIHOOD, offset, rand_coef, ind_effect,
                                            drop_intercept)
    gaussian = LIKELIHOOD == "gaussian"
    sigma2, by_term = gpboost_variances(cov_pars, INTERCEPTS, slopes, gaussian)
    terms = [(name, cols, [[by_term[(group, cols[0])]]]) for name, group, cols in TERMS]
    return {"fixef": dict(zip(names, map(float, coef[0]), strict=True)),
            "fixef_se": (dict(zip(names, map(float, coef[1]), strict=True)) if gaussian
                         else {}),
            "sigma": math.sqrt(sigma2),
            "varcorr": varcorr_rows(terms, math.sqrt(sigma2) if gaussian else None),
            "loglik": loglik, "objective": -2.0 * loglik}
'''


def gpboost(case: Any, data: Any) -> Recipe:
    """gpboost's ``GPModel(...).fit(y, X, offset=)`` as its adapter calls it
    (harness/adapters/peers/gpboost_impl.py: the Gaussian likelihood, or a Bernoulli or Poisson
    one with the Laplace approximation)."""
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers.gpboost_impl import gpboost_inputs

    terms = F.lme4_terms(F.parse(case.formula), data)
    call = gpboost_inputs(case, data, terms)
    frame, _, offset = _with_extras(call.frame, None, call.offset)
    return Recipe(literals={"FIXED": call.fixed, "GROUPS": call.groups,
                            "INTERCEPTS": call.intercepts, "SLOPES": call.slopes,
                            "LIKELIHOOD": call.likelihood, "OFFSET": offset,
                            "TERMS": _terms(case, data), "POLY_SUFFIX": calls.POLY_SUFFIX},
                  calls=[calls.group_labels, calls.patsy_fixed, calls.re_columns,
                         calls.gpboost_coefficients, calls.gpboost_fit,
                         calls.gpboost_variances, calls.r_name, calls.r_powers],
                  body=_GPBOOST_BODY,
                  requirements=list(REQUIREMENTS["gpboost"]) + ["patsy"], frame=frame)


_KAMINO_BODY = '''
def estimates(data):
    """kamino's lmer on lme4's formula (each bar's intercept written), in lme4's quantities."""
    import kamino

    m = kamino_lmer(kamino, data, FORMULA, REML, GROUP_COLUMNS)
    sigma2 = float(m.sigma2)
    blocks = kamino_blocks(m)
    terms = [(name, cols, pick_block(blocks, group, cols)) for name, group, cols in TERMS]
    names = list(m.fixed_names)
    se = np.sqrt(np.diag(np.asarray(m.beta_covariance, dtype=float)))
    if not m.diagnostics.converged:
        print(f"note: kamino: {m.diagnostics.message}", file=sys.stderr)
    return {"fixef": dict(zip(names, map(float, m.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, se), strict=True)),
            "sigma": math.sqrt(sigma2), "varcorr": varcorr_rows(terms, math.sqrt(sigma2)),
            "loglik": float(m.log_likelihood), "objective": float(m.objective),
            "converged": bool(m.diagnostics.converged)}
'''


def kamino(case: Any, data: Any) -> Recipe:
    """kamino's ``lmer(formula, frame, reml=)`` as its adapter calls it
    (harness/adapters/peers/kamino_impl.py)."""
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers.kamino_impl import group_columns, kamino_formula

    if getattr(case, "is_glmm", False):
        raise NotImplementedError("kamino-lme fits linear mixed models only")
    parsed = F.parse(case.formula)
    return Recipe(literals={"FORMULA": kamino_formula(parsed), "REML": bool(case.REML),
                            "GROUP_COLUMNS": group_columns(F.lme4_terms(parsed, data)),
                            "TERMS": _terms(case, data)},
                  calls=[calls.kamino_lmer, calls.kamino_blocks], body=_KAMINO_BODY,
                  requirements=list(REQUIREMENTS["kamino-lme"]))


_PYMIXEF_BODY = '''
def estimates(data):
    """pymixef's fit on lme4's formula (its Gaussian engine), in lme4's quantities."""
    import pymixef

    r = pymixef_fit(pymixef, data, FORMULA, METHOD)
    params = dict(r.parameters)
    names = list(r.extra["fixed_effect_names"])
    blocks = pymixef_blocks(params)
    terms = [(name, cols, pick_block(blocks, group, cols)) for name, group, cols in TERMS]
    sigma = float(params["residual_sd"])
    se = np.sqrt(np.diag(np.asarray(r.extra["fixed_effect_covariance"], dtype=float)))
    r_names = [pymixef_name(n) for n in names]
    for w in r.warnings or ():
        print(f"note: pymixef: {w.code}: {w.message}", file=sys.stderr)
    loglik = float(r.log_likelihood)
    return {"fixef": {n: float(params[k]) for n, k in zip(r_names, names, strict=True)},
            "fixef_se": dict(zip(r_names, map(float, se), strict=True)),
            "sigma": sigma, "varcorr": varcorr_rows(terms, sigma),
            "loglik": loglik, "objective": -2.0 * loglik,
            "converged": r.convergence.status == "converged"}
'''


def pymixef(case: Any, data: Any) -> Recipe:
    """pymixef's ``fit(formula, data=, method=)`` on a linear mixed model, as its adapter calls
    it (harness/adapters/peers/pymixef_impl.py)."""
    from harness.adapters.peers import REQUIREMENTS

    if getattr(case, "is_glmm", False):
        raise NotImplementedError("no reproducer recipe for pymixef on a GLMM yet (the recipe "
                                  "covers its linear mixed model call)")
    return Recipe(literals={"FORMULA": case.formula,
                            "METHOD": "reml" if case.REML else "ml",
                            "TERMS": _terms(case, data)},
                  calls=[calls.pymixef_fit, calls.pymixef_name, calls.pymixef_blocks],
                  body=_PYMIXEF_BODY, requirements=list(REQUIREMENTS["pymixef"]))
