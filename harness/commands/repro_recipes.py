"""How a reproducer makes one package's call: per implementation, the literals the call needs
(computed here from the case, as its adapter computes them), the functions of
harness/adapters/peers/calls.py it runs (the adapter's own call, copied as source text), and the
script's ``estimates(data)``, which states the package's answer in lme4's quantities.

An implementation without a recipe here gets no reproducer (harness/commands/repro.py refuses with
the
reason); :data:`RECIPES` is the list of those that have one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.adapters.peers import _formula as F
from harness.adapters.peers import calls
from harness.commands.repro_recipe import Recipe

SCRIPT_FILE = "repro.py"


def _fixef_names(data: Any, fixed: str) -> dict[str, str]:
    """patsy's column names of the fixed part -> R's (the adapters' F.r_name)."""
    import patsy

    cols = patsy.dmatrix(fixed, data, NA_action="raise").design_info.column_names
    return {c: F.r_name(c) for c in cols}


def uncovered(impl: str, case: Any) -> str | None:
    """Why the recipe of ``impl`` does not cover ``case`` (known from the case alone), or
    None: every recipe makes the package's linear mixed model call; glmm's, interlace-lme's,
    lme-python's and gpboost's also their GLMM calls (binomial and Poisson); mixedlm's takes no
    offset yet."""
    if impl not in RECIPES:
        return (f"no reproducer recipe for {impl} yet (harness/commands/repro_recipes.py has "
                f"{', '.join(RECIPES)})")
    if getattr(case, "is_glmm", False) and not (impl in GLMM_RECIPES
                                                and case.family in ("binomial", "poisson")):
        return (f"no reproducer recipe for {impl} on a GLMM yet (the recipe covers its linear "
                "mixed model call" + (", and its binomial and Poisson GLMMs"
                                      if impl in GLMM_RECIPES else "") + ")")
    if impl == "mixedlm" and "offset(" in case.formula:
        return f"no reproducer recipe for {impl} with an offset yet"
    return None


def _lmm_only(impl: str, case: Any) -> None:
    why = uncovered(impl, case)
    if why:
        raise NotImplementedError(why)


_MIXEDLM_BODY = '''
def estimates(data):
    """{package}'s MixedLM on the harness's design, in lme4's quantities."""
    import patsy
    from {module} import MixedLM, MixedLMParams

    y, X, groups, exog_re = mixedlm_design(patsy, data, RESPONSE, FIXED, RE_TERMS, GROUP)
    res = mixedlm_fit(MixedLM, MixedLMParams, y, X, groups, exog_re, REML, DIAGONAL)
    names = [FIXEF_NAMES.get(c, c) for c in X.columns]
    scale = float(res.scale)
    q = exog_re.shape[1]
    cov = np.asarray(res.cov_re, dtype=float).reshape(q, q)
    blocks, start = [], 0
    for name, cols in TERMS:
        blocks.append((name, cols, cov[start:start + len(cols), start:start + len(cols)]))
        start += len(cols)
    return {{"fixef": dict(zip(names, map(float, res.fe_params), strict=True)),
            "fixef_se": dict(zip(names, map(float, np.asarray(res.bse_fe)), strict=True)),
            "sigma": math.sqrt(scale), "varcorr": varcorr_rows(blocks, math.sqrt(scale)),
            "loglik": float(res.llf), "objective": -2.0 * float(res.llf),
            "converged": bool(res.converged)}}
'''


def _mixedlm_api(impl: str, module: str, requirement: str) -> Callable[[Any, Any], Recipe]:
    def recipe(case: Any, data: Any) -> Recipe:
        from harness.adapters.peers._base import mixedlm_re_terms

        _lmm_only(impl, case)
        parsed = F.parse(case.formula)
        terms = F.lme4_terms(parsed, data)
        fixed = F.patsy_formula(parsed.fixed, data)
        return Recipe(
            literals={"RESPONSE": parsed.response, "FIXED": fixed,
                      "RE_TERMS": mixedlm_re_terms(terms), "GROUP": terms[0].group,
                      "REML": bool(case.REML), "DIAGONAL": len(terms) > 1,
                      "TERMS": [(t.name, list(t.columns)) for t in terms],
                      "FIXEF_NAMES": _fixef_names(data, fixed)},
            calls=[calls.group_labels, calls.mixedlm_design, calls.mixedlm_fit],
            body=_MIXEDLM_BODY.format(package=impl, module=module),
            requirements=[requirement, "patsy"])
    return recipe


_GLMM_BODY = '''
def estimates(data):
    """glmm's own call on lme4's formula, in lme4's quantities."""
    import glmm

    m = glmm_fit(glmm, data, FORMULA, REML, COLUMNS)
    sigma2 = float(m.dispersion)
    alias = dict(COLUMNS)  # a pasted grouping column a__b__c is a:b:c
    blocks = {alias.get(grp, grp): (list(cols), unpack_vech(packed, len(cols)))
              for (grp, cols), packed in zip(m.re_groups, m.varcorr, strict=True)}
    terms = [(name, cols, pick_block(blocks, group, cols)) for name, group, cols in TERMS]
    names = list(m.names)
    tests = []
    if m.df_method == "satterthwaite" and "Satterthwaite" in DDF:  # its kernel's own df
        tests = [{"ddf": "Satterthwaite", "term": t, "se": float(se), "df": float(df)}
                 for t, se, df in zip(names, m.se, m.coef_df, strict=True)]
    return {"fixef": dict(zip(names, map(float, m.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.se), strict=True)),
            "sigma": math.sqrt(sigma2), "varcorr": varcorr_rows(terms, math.sqrt(sigma2)),
            "loglik": float(m.loglik), "objective": -2.0 * float(m.loglik),
            "converged": bool(m.converged), "coef_tests": tests}
'''


_GLMM_GLMM_BODY = '''
def estimates(data):
    """glmm's GLMM call, the response as glmer reads it, in lme4's quantities."""
    import glmm

    weights = data.pop(WEIGHTS).to_numpy(dtype=float) if WEIGHTS else None
    m = glmm_fit_glmm(glmm, data, FORMULA, FAMILY, LINK, NAGQ, weights)
    blocks = {grp: (list(cols), unpack_vech(packed, len(cols)))
              for (grp, cols), packed in zip(m.re_groups, m.varcorr, strict=True)}
    terms = [(name, cols, pick_block(blocks, group, cols)) for name, group, cols in TERMS]
    names = list(m.names)
    return {"fixef": dict(zip(names, map(float, m.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.se), strict=True)),
            "sigma": 1.0, "varcorr": varcorr_rows(terms, None),
            "loglik": float(m.loglik), "objective": -2.0 * float(m.loglik),
            "converged": bool(m.converged), "nagq": int(m.nagq)}
'''


def _glmm_glmm(case: Any, data: Any) -> Recipe:
    """glmm on a binomial or Poisson GLMM: the frame gets glmer's response (``glmm_y_``) and,
    when there are any, its prior weights (``glmm_weights_``, taken out again before the
    call), as the adapter builds them."""
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers._base import nagq_of, response_formula, response_frame
    from harness.adapters.peers.glmm_impl import GLMM_FAMILY

    if case.family not in GLMM_FAMILY:
        raise NotImplementedError(f"no reproducer recipe for glmm's {case.family} family")
    terms = F.lme4_terms(F.parse(case.formula), data)
    frame, resp = response_frame(case, data)
    weights = None
    if resp.weights is not None:
        weights = "glmm_weights_"
        frame[weights] = resp.weights
    return Recipe(literals={"FORMULA": response_formula(case.formula),
                            "FAMILY": GLMM_FAMILY[case.family], "LINK": case.link_name,
                            "NAGQ": nagq_of(case), "WEIGHTS": weights,
                            "TERMS": [(t.name, t.group, list(t.columns)) for t in terms]},
                  calls=[calls.glmm_fit_glmm], body=_GLMM_GLMM_BODY,
                  requirements=list(REQUIREMENTS["glmm"]), frame=frame)


def _glmm(case: Any, data: Any) -> Recipe:
    from harness.adapters.peers import REQUIREMENTS

    if getattr(case, "is_glmm", False):
        return _glmm_glmm(case, data)
    from harness.adapters.peers.glmm_impl import glmm_formula
    from harness.core.comparators.coef_tests import wanted_ddf

    parsed = F.parse(case.formula)
    terms = F.lme4_terms(parsed, data)
    formula, columns = glmm_formula(parsed)  # a/b/c written out, as the adapter does
    return Recipe(literals={"FORMULA": formula or case.formula, "REML": bool(case.REML),
                            "COLUMNS": columns,
                            "DDF": wanted_ddf(len(data), bool(case.REML)),
                            "TERMS": [(t.name, t.group, list(t.columns)) for t in terms]},
                  calls=[calls.glmm_fit, calls.with_groups, calls.group_labels],
                  body=_GLMM_BODY,
                  requirements=list(REQUIREMENTS["glmm"]))


_PYREML_BODY = '''
def estimates(data):
    """pyreml's MixedModel (REML), in lme4's quantities."""
    import torch
    from pyreml import MixedModel, Random

    torch_threads(torch)
    mm = pyreml_fit(MixedModel, Random, data, RESPONSE, FIXED, RANDOMS)
    sigma2 = float(mm.residual.variance["sigma"])
    blocks = {}
    for (group, cols), r in zip(UNITS, mm.random, strict=True):
        key = group if group not in blocks else f"{group}#{len(blocks)}"
        blocks[key] = (cols, np.atleast_2d(np.asarray(r.variance["sigma"], dtype=float)))
    terms = [(name, cols, pick_block({k: v for k, v in blocks.items()
                                      if k.split("#")[0] == group}, group, cols))
             for name, group, cols in TERMS]
    est = mm.estimates
    names = [FIXEF_NAMES.get(str(n), str(n)) for n in est["term"]]
    objective = float(mm.neg2loglik)
    return {"fixef": dict(zip(names, map(float, est["estimate"]), strict=True)),
            "fixef_se": dict(zip(names, map(float, est["SE"]), strict=True)),
            "sigma": math.sqrt(sigma2), "varcorr": varcorr_rows(terms, math.sqrt(sigma2)),
            "loglik": -0.5 * objective, "objective": objective,
            "converged": bool(mm.opti_REML.converged)}
'''


def _pyreml(case: Any, data: Any) -> Recipe:
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers.pyreml_impl import pyreml_randoms

    _lmm_only("pyreml", case)
    parsed = F.parse(case.formula)
    terms = F.lme4_terms(parsed, data)
    fixed = F.patsy_formula(parsed.fixed, data)
    return Recipe(literals={"RESPONSE": parsed.response, "FIXED": fixed,
                            "RANDOMS": pyreml_randoms(parsed),
                            "UNITS": [(g, list(b.columns)) for b in parsed.bars
                                      for g in b.groups],
                            "TERMS": [(t.name, t.group, list(t.columns)) for t in terms],
                            "FIXEF_NAMES": _fixef_names(data, fixed)},
                  calls=[calls.group_labels, calls.torch_threads, calls.pyreml_fit],
                  body=_PYREML_BODY, requirements=list(REQUIREMENTS["pyreml"]))


_INTERLACE_BODY = '''
def estimates(data):
    """interlace's own call (profiled REML/ML), in lme4's quantities, with its t tests."""
    import interlace

    offset = data.pop(OFFSET).to_numpy(dtype=float) if OFFSET else None
    m = interlace_fit(interlace, data, FIXED, RANDOM, METHOD, offset, COLUMNS)
    rows = interlace.VarCorr(m).as_dataframe().to_dict("records")
    alias = dict(COLUMNS)
    sigma2 = float(m.scale)
    mats = interlace_blocks(rows, alias)
    try:
        terms = [(name, cols, pick_block(mats, group, cols)) for name, group, cols in TERMS]
        varcorr = varcorr_rows(terms, math.sqrt(sigma2))
    except RuntimeError as exc:  # its VarCorr names other columns than lme4's: as it says
        print(f"note: {exc}; its VarCorr rows are shown as it labels them", file=sys.stderr)
        varcorr = [{**r, "grp": alias.get(str(r["grp"]), str(r["grp"])),
                    "var1": None if blank(r["var1"]) else str(r["var1"]),
                    "var2": None if blank(r["var2"]) else str(r["var2"])} for r in rows]
    names = r_powers([r_name(str(k)) for k in m.fe_params.index])
    tests = []
    if "Satterthwaite" in DDF:
        tests += [{"ddf": "Satterthwaite", "term": t, "se": float(se), "df": float(df)}
                  for t, se, df in zip(names, m.fe_bse, m.fe_df, strict=True)]
    if "Kenward-Roger" in DDF:
        try:  # random intercepts only (its own NotImplementedError for slopes)
            kr = interlace_fit(interlace, data, FIXED, RANDOM, "REML", offset, COLUMNS,
                               df_method="kenward-roger")
        except NotImplementedError as exc:
            print(f"note: no Kenward-Roger df: {exc}", file=sys.stderr)
            kr = None
        if kr is not None and np.allclose(kr.fe_params, m.fe_params, rtol=1e-8, atol=0):
            tests += [{"ddf": "Kenward-Roger", "term": t, "se": float(se), "df": float(df)}
                      for t, se, df in zip(names, kr.fe_bse, kr.fe_df, strict=True)]
    return {"fixef": dict(zip(names, map(float, m.fe_params), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.fe_bse), strict=True)),
            "sigma": math.sqrt(sigma2), "varcorr": varcorr,
            "loglik": float(m.llf), "objective": -2.0 * float(m.llf),
            "converged": bool(m.converged), "coef_tests": tests}
'''


def _interlace(case: Any, data: Any) -> Recipe:
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers.interlace_impl import interlace_inputs
    from harness.commands import repro_peer_recipes
    from harness.core.comparators.coef_tests import wanted_ddf

    if getattr(case, "is_glmm", False):
        _lmm_only("interlace-lme", case)  # the families its recipe covers
        return repro_peer_recipes.interlace_glmm(case, data)
    parsed = F.parse(case.formula)
    fixed_rhs, offsets, random, columns = interlace_inputs(parsed)
    offset = F.offset_vector(offsets, data)
    frame = None
    if offset is not None:
        frame = data.copy()
        frame[repro_peer_recipes.OFFSET_COLUMN] = offset
    terms = F.lme4_terms(parsed, data)
    return Recipe(literals={"FIXED": f"{parsed.response} ~ {F.patsy_formula(fixed_rhs, data)}",
                            "RANDOM": random, "COLUMNS": columns,
                            "METHOD": "REML" if case.REML else "ML",
                            "OFFSET": None if offset is None else repro_peer_recipes.OFFSET_COLUMN,
                            "DDF": wanted_ddf(len(data), bool(case.REML)),
                            "TERMS": [(t.name, t.group, list(t.columns)) for t in terms],
                            "POLY_SUFFIX": calls.POLY_SUFFIX},
                  calls=[calls.group_labels, calls.with_groups, calls.interlace_fit,
                         calls.blank, calls.interlace_blocks, calls.r_name, calls.r_powers],
                  body=_INTERLACE_BODY, requirements=list(REQUIREMENTS["interlace-lme"]),
                  frame=frame)


_MIXEDLM_LMER_BODY = '''
def estimates(data):
    """mixedlm's lmer on lme4's formula, in lme4's quantities, with its t tests."""
    import mixedlm

    m = mixedlm_lmer(mixedlm, data, FORMULA, REML, CONTRASTS, None)
    vc = m.VarCorr()
    se = np.sqrt(np.diag(np.asarray(m.vcov(), dtype=float)))
    fixef = m.fixef()
    names = r_powers(index_names(list(fixef), LEVELS, ORDERED))
    sigma2 = float(vc.residual)
    blocks = {g: (list(v.term_names), np.asarray(v.cov, dtype=float))
              for g, v in vc.groups.items()}
    terms = [(name, cols, pick_block(blocks, group, cols)) for name, group, cols in TERMS]
    tests = []
    for ddf in DDF:
        try:
            table = m.tidy(effects="fixed", ddf_method=ddf)
        except (ValueError, np.linalg.LinAlgError, RuntimeError) as exc:
            print(f"note: no {ddf} df: {exc}", file=sys.stderr)
            continue
        if len(table) == len(names):
            tests += [{"ddf": ddf, "term": t, "se": float(s), "df": float(df)} for t, s, df
                      in zip(names, table["std.error"], table["df"], strict=True)]
    return {"fixef": dict(zip(names, map(float, fixef.values()), strict=True)),
            "fixef_se": dict(zip(names, map(float, se), strict=True)),
            "sigma": math.sqrt(sigma2), "varcorr": varcorr_rows(terms, math.sqrt(sigma2)),
            "loglik": float(m.logLik()), "objective": float(m.REMLcrit()),
            "converged": bool(m.converged), "coef_tests": tests}
'''


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def _mixedlm(case: Any, data: Any) -> Recipe:
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers._base import ordered_in_fixed
    from harness.core.comparators.coef_tests import wanted_ddf

    _lmm_only("mixedlm", case)
    parsed = F.parse(case.formula)
    formula, _ = F.split_offsets(case.formula)
    terms = F.lme4_terms(parsed, data)
    contrasts = {v: "poly" for v in ordered_in_fixed(parsed, data)}
    return Recipe(literals={"FORMULA": F.python_powers(formula), "REML": bool(case.REML),
                            "CONTRASTS": contrasts or None,
                            "LEVELS": {k: [_plain(v) for v in levels]
                                       for k, levels in F.factor_levels(data).items()},
                            "ORDERED": F.ordered_factors(data),
                            "DDF": wanted_ddf(len(data), bool(case.REML)),
                            "TERMS": [(t.name, t.group, list(t.columns)) for t in terms]},
                  calls=[calls.mixedlm_lmer, calls.index_names, calls.r_powers],
                  body=_MIXEDLM_LMER_BODY, requirements=list(REQUIREMENTS["mixedlm"]))


_LME_PYTHON_BODY = '''
def estimates(data):
    """lme-python's lmer on lme4's formula, in lme4's quantities, with its t tests."""
    import lme_python
    import polars as pl

    m, frame = lme_python_lmer(lme_python, pl, data, FORMULA, REML, FACTORS)
    sigma2 = float(m.sigma2)
    mats = lme_python_blocks(m.var_corr)
    terms = [(name, cols, pick_block(mats, group, cols)) for name, group, cols in TERMS]
    names = lme_python_r_names(list(m.fixed_names or []), COLUMNS, LEVELS)  # R's names
    tests = []
    for ddf, method, field in (("Satterthwaite", "with_satterthwaite", "satterthwaite"),
                               ("Kenward-Roger", "with_kenward_roger", "kenward_roger")):
        if ddf not in DDF:
            continue
        try:
            getattr(m, method)(frame)
        except (RuntimeError, ValueError) as exc:
            print(f"note: no {ddf} df: {exc}", file=sys.stderr)
            continue
        df = getattr(m, f"{field}_dfs")
        if df is not None and len(df) == len(names):  # no Kenward-Roger SE: not given
            se = m.beta_se if ddf == "Satterthwaite" else [None] * len(names)
            tests += [{"ddf": ddf, "term": t, "se": None if s is None else float(s),
                       "df": float(d)} for t, s, d in zip(names, se, df, strict=True)]
    objective = m.reml_criterion if REML else m.deviance
    return {"fixef": dict(zip(names, map(float, m.coefficients), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.beta_se or []), strict=True)),
            "sigma": math.sqrt(sigma2), "varcorr": varcorr_rows(terms, math.sqrt(sigma2)),
            "loglik": float(m.log_likelihood),
            "objective": None if objective is None else float(objective),
            "converged": bool(m.converged), "coef_tests": tests}
'''


def _lme_python(case: Any, data: Any) -> Recipe:
    from harness.adapters.peers import REQUIREMENTS
    from harness.adapters.peers.lme_python_impl import fixed_factors
    from harness.core.comparators.coef_tests import wanted_ddf

    _lmm_only("lme-python", case)
    if getattr(case, "is_glmm", False):
        from harness.commands import repro_peer_recipes

        return repro_peer_recipes.lme_python_glmm(case, data)
    parsed = F.parse(case.formula)
    terms = F.lme4_terms(parsed, data)
    return Recipe(literals={"FORMULA": case.formula, "REML": bool(case.REML),
                            "FACTORS": fixed_factors(parsed, data),
                            "DDF": wanted_ddf(len(data), bool(case.REML)),
                            "TERMS": [(t.name, t.group, list(t.columns)) for t in terms],
                            "COLUMNS": [str(c) for c in data.columns],
                            "LEVELS": {str(c): [str(v) for v in data[c].cat.categories]
                                       for c in data.columns
                                       if str(data[c].dtype) == "category"}},
                  calls=[calls.lme_python_lmer, calls.lme_python_blocks,
                         calls.lme_python_r_names],
                  body=_LME_PYTHON_BODY,
                  requirements=list(REQUIREMENTS["lme-python"]))


def _statsmodels_requirement() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"statsmodels=={version('statsmodels')}"
    except PackageNotFoundError:
        return "statsmodels"


def _peer_requirement(name: str) -> str:
    from harness.adapters.peers import REQUIREMENTS

    return REQUIREMENTS[name][0]


def _peer(name: str) -> Callable[[Any, Any], Recipe]:
    """The recipe ``name`` of harness/commands/repro_peer_recipes.py (imported when used: it
    imports this module's :class:`Recipe`)."""
    def recipe(case: Any, data: Any) -> Recipe:
        from harness.commands import repro_peer_recipes

        _lmm_only(impl, case)
        return getattr(repro_peer_recipes, name)(case, data)

    impl = {"kamino": "kamino-lme"}.get(name, name)
    return recipe


#: implementation -> recipe(case, data); raises NotImplementedError for what it does not cover
RECIPES: dict[str, Callable[[Any, Any], Recipe]] = {
    "statsmodels": lambda case, data: _mixedlm_api(
        "statsmodels", "statsmodels.regression.mixed_linear_model",
        _statsmodels_requirement())(case, data),
    "mixedlm-rs": lambda case, data: _mixedlm_api(
        "mixedlm-rs", "mixedlm_rs", _peer_requirement("mixedlm-rs"))(case, data),
    "glmm": _glmm,
    "pyreml": _pyreml,
    "interlace-lme": _interlace,
    "mixedlm": _mixedlm,
    "lme-python": _lme_python,
    "gpboost": _peer("gpboost"),
    "kamino-lme": _peer("kamino"),
    "pymixef": _peer("pymixef"),
}

#: the implementations whose recipe also makes their binomial and Poisson GLMM calls
GLMM_RECIPES = ("glmm", "interlace-lme", "lme-python", "gpboost")


def packages() -> tuple[str, ...]:
    """The implementations a reproducer is about: statsmodels and the PyPI peers
    (harness.adapters.PYTHON_CANDIDATES without mixedref, whose own code a reproducer for
    upstream cannot leave out)."""
    from harness.adapters import PYTHON_CANDIDATES

    return tuple(n for n in PYTHON_CANDIDATES if n != "mixedref")


def folder_of(finding_id: str, impl: str, case: Any) -> str | None:
    """Where ``python -m harness repro --findings --out repro`` puts the reproducer of a
    finding about ``impl`` whose first case is ``case`` (``repro/<id>/repro.py``), or None
    when there is none: not a Python package, no case, or a case its recipe does not cover
    (the adapter's own refusals, which need the data, are not checked here)."""
    if impl not in packages() or case is None or uncovered(impl, case) is not None:
        return None
    if (getattr(case, "skip", None) or {}).get(impl):
        return None
    return f"repro/{finding_id}/{SCRIPT_FILE}"
