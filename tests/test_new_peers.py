"""The four peers of issue 24 (kamino-lme, gpboost, edi-kernels, pymixef): what each declines
and why, and their fits in their own environments judged against lme4's recorded answers
through the harness's comparison (no number from a package's own run is copied here); and an
older peer's adapter mapping checked the same way (lme-python's interaction names, glmm's
three-factor groupings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeCase

from harness.adapters import Lme4Recorded, get_adapter
from harness.adapters.peers import PEERS, REQUIREMENTS
from harness.adapters.peers import _formula as F
from harness.adapters.peers.kamino_impl import kamino_formula
from harness.core import runner
from harness.core.catalog import load_catalog
from harness.core.compare import compare_records

CASES = {c.id: c for c in load_catalog()}
NEW = {"kamino-lme": "kamino-lme==0.0.1", "gpboost": "gpboost==1.8.0",
       "edi-kernels": "edi-kernels==1.0.2", "pymixef": "pymixef==0.1.1"}


@pytest.mark.parametrize("name", list(NEW))
def test_new_peer_is_registered_with_its_pinned_release(name: str) -> None:
    assert name in PEERS and get_adapter(name).name == name
    assert REQUIREMENTS[name][0] == NEW[name]


# (peer, case or formula, fragment of the reason)
DECLINED = [
    ("kamino-lme", "Reaction ~ I(Days - 4.5) + (1 | Subject)", "I(Days - 4.5)"),
    ("kamino-lme", "cbpp-cbind-ML", "linear mixed models only"),
    ("gpboost", "sleepstudy-slopes-ML", "independent of the group's intercept"),
    ("gpboost", "sleepstudy-intercept-REML", "no REML"),
    ("gpboost", "cbpp-agq9-ML", "nAGQ = 9"),
    ("edi-kernels", "sleepstudy-intercept-ML", "matched pairs"),
    ("edi-kernels", "cbpp_binary-binary-ML", "Gauss-Hermite quadrature on fixed"),
    ("edi-kernels", "Penicillin-crossed-ML", "one random intercept"),
    ("pymixef", "Mmmec-offset-ML", "no offset"),
    ("pymixef", "cbpp-agq9-ML", "nAGQ = 9"),
]


@pytest.mark.parametrize(("name", "what", "fragment"), DECLINED)
def test_a_new_peer_declines_what_it_cannot_express_naming_why(name: str, what: str,
                                                               fragment: str) -> None:
    case = CASES[what] if what in CASES else FakeCase("c", what)
    reason = PEERS[name]().supports(case)
    assert reason is not None and f"{name} cannot express" in reason
    assert fragment in reason


def test_kamino_formula_writes_each_bars_intercept() -> None:
    """kamino's parser refuses ``(Days | Subject)``; lme4 reads it as ``(1 + Days | Subject)``."""
    assert kamino_formula(F.parse("Reaction ~ Days + (Days | Subject)")) == \
        "Reaction ~ Days + (1 + Days | Subject)"
    assert kamino_formula(F.parse("Reaction ~ Days + (Days || Subject)")) == \
        "Reaction ~ Days + (1 + Days || Subject)"
    assert kamino_formula(F.parse("y ~ 1 + (1 | a/b)")) == "y ~ 1 + (1 | a/b)"


def test_pymixef_names_are_mapped_to_rs() -> None:
    from harness.adapters.peers.pymixef_impl import r_fixed_name

    assert [r_fixed_name(n) for n in ("Intercept", "period[2]", "f[T.b]:x", "Days")] == \
        ["(Intercept)", "period2", "fb:x", "Days"]


def test_lme_python_interaction_names_are_mapped_to_rs() -> None:
    """lme-python 0.2.7's names of a two-way interaction with a factor (as it gives them:
    ``Diet:Time2:``, ``x:f:b``, ``f:hb:v``) are R's ``Diet2:Time``, ``x:fb``, ``fb:hv``; R's
    own names (``fa:x`` without the main effect, ``x:z``) are kept."""
    from harness.adapters.peers.calls import lme_python_r_names

    levels = {"Diet": ["1", "2", "3", "4"], "f": ["a", "b", "c"], "h": ["u", "v"]}
    assert lme_python_r_names(["(Intercept)", "Diet2", "Time", "Diet:Time2:", "Diet:Time4:"],
                              ["weight", "Time", "Chick", "Diet"], levels) == \
        ["(Intercept)", "Diet2", "Time", "Diet2:Time", "Diet4:Time"]
    assert lme_python_r_names(["x:f:b", "f:hb:v", "x:z", "fa:x", "x:fb"],
                              ["y", "x", "z", "f", "h"], levels) == \
        ["x:fb", "fb:hv", "x:z", "fa:x", "x:fb"]


def test_glmm_formula_writes_out_a_grouping_of_three_factors() -> None:
    """glmm's parser takes ``a/b`` and ``a:b`` but not ``a/b/c`` or ``a:b:c`` ("formula syntax
    error"): written out as lme4 expands it, the grouping of three as a pasted column."""
    from harness.adapters.peers.glmm_impl import glmm_formula

    assert glmm_formula(F.parse("y ~ x + (1 | a/b/c)")) == \
        ("y ~ x + (1 | a) + (1 | a:b) + (1 | a__b__c)", [("a__b__c", "a:b:c")])
    assert glmm_formula(F.parse("y ~ 1 + (x | a:b:c) + (1 | d)")) == \
        ("y ~ 1 + (x | a__b__c) + (1 | d)", [("a__b__c", "a:b:c")])
    assert glmm_formula(F.parse("y ~ x + (1 | a/b)")) == (None, [])


def test_glmm_without_estimates_names_its_severe_warning_first(monkeypatch) -> None:
    """glmm 0.6.2 on an uncentred response (SmLs05-08, sim_huge_offset) warns "Satterthwaite
    df uncertain" and then "Severe: Fit failed", returning NaN: the failure names the cause
    first. (A stand-in module: the failure itself is glmm's, seen in its own environment.)"""
    import sys
    import types
    import warnings

    import numpy as np

    from harness.adapters.peers.glmm_impl import GlmmPeer

    class SatterthwaiteCurvatureWarning(UserWarning):
        pass

    class FitFailedWarning(UserWarning):
        pass

    def fit(*args: object, **kwargs: object) -> types.SimpleNamespace:
        warnings.warn("Caution: Satterthwaite df uncertain.", SatterthwaiteCurvatureWarning,
                      stacklevel=2)
        warnings.warn("Severe: Fit failed.", FitFailedWarning, stacklevel=2)
        return types.SimpleNamespace(varcorr=[], beta=np.array([np.nan]), warnings=[])

    monkeypatch.setitem(sys.modules, "glmm", types.SimpleNamespace(fit=fit))
    case = CASES["SmLs05-oneway-REML"]
    with pytest.raises(RuntimeError) as err:
        GlmmPeer().fit(case, runner.case_data(case))
    assert str(err.value).startswith("glmm returned no estimates: FitFailedWarning: Severe")
    assert "SatterthwaiteCurvatureWarning" in str(err.value)


def _adapter_in_its_environment(name: str):
    """The adapter, run in the peer's environment built by ``python -m harness ecosystem`` when
    that exists, else in this one; skipped naming why when the package is in neither."""
    from harness.commands.ecosystem import env_folder, env_root

    adapter = get_adapter(name)
    python = env_folder(name, env_root()) / "bin" / "python"
    if Path(python).exists():
        adapter.python = str(python)
    why = adapter.unavailable()
    if why:
        pytest.skip(why)
    return adapter


@pytest.mark.parametrize(("name", "case_id", "verdicts"), [
    ("kamino-lme", "sleepstudy-slopes-REML", {"agreed"}),
    ("kamino-lme", "Pastes-nested-REML", {"agreed"}),
    ("gpboost", "sleepstudy-intercept-ML", {"agreed"}),
    ("pymixef", "Pastes-nested-REML", {"agreed"}),
    # crossed: agrees with its exact (Cholesky) likelihood, which the adapter asks for
    ("gpboost", "Penicillin-crossed-ML", {"agreed"}),
    # its optimizer stops with batch's variance outside the tolerance of lme4's ML optimum
    ("gpboost", "Pastes-nested-ML", {"disagreed"}),
    # a factor x numeric interaction: lme4's estimates and df under lme-python's own names
    ("lme-python", "ChickWeight-diet_time-REML", {"agreed"}),
    # (1 | a/b/c), which glmm's parser refuses, written out as lme4 expands it
    ("glmm", "sim_deep_nest-nested3-REML", {"agreed"}),
])
def test_a_new_peer_fits_in_its_environment_as_it_really_does(name: str, case_id: str,
                                                              verdicts: set[str]) -> None:
    adapter = _adapter_in_its_environment(name)
    case = CASES[case_id]
    rec = runner.fit_case(adapter, case, use_cache=False, timeout=300)
    assert rec["error"] is None, rec["error"]
    ref = Lme4Recorded().fit(case, None)
    comparison = compare_records(ref, rec, case)
    assert comparison.verdict in verdicts, comparison.format_table(only_failures=True)
