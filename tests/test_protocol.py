"""The implementation protocol (harness.core.protocol) and the gate rules
(harness.pytest_plugin.gate): what the call carries, which cases a callable is handed, what
its record must say it fitted, and that a typo or an empty gate is never green."""

from __future__ import annotations

import textwrap
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from harness.adapters import CallableAdapter, get_adapter
from harness.core import protocol, runner
from harness.core.catalog import load_catalog
from harness.core.compare import FAILED, compare_records
from harness.pytest_plugin import gate

CASES = {c.id: c for c in load_catalog()}
LMM = CASES["sleepstudy-intercept-REML"]
GLMM = CASES["cbpp-prop-ML"]  # binomial proportions with the trials as prior weights
AGQ = CASES["cbpp-agq9-ML"]


def lmm_only(formula: str, data: Any, REML: bool) -> dict[str, Any]:
    return {}


def glmm_capable(formula: str, data: Any, REML: bool, family: str | None = None,
                 link: str | None = None, nAGQ: int = 1, weights: str | None = None
                 ) -> dict[str, Any]:
    return {}


def takes_anything(formula: str, data: Any, REML: bool, **model: Any) -> dict[str, Any]:
    return {}


def test_an_lmm_case_carries_nothing_beyond_formula_data_and_REML() -> None:
    assert protocol.model_arguments(LMM) == {}


def test_a_glmm_case_carries_family_link_nagq_and_weights_as_the_catalog_states_them() -> None:
    assert GLMM.family == "binomial" and GLMM.link is None and GLMM.weights == "size"
    assert protocol.model_arguments(GLMM) == {"family": "binomial", "link": "logit", "nAGQ": 1,
                                              "weights": "size"}
    assert protocol.model_arguments(AGQ)["nAGQ"] == 9


def test_an_lmm_only_callable_is_handed_every_lmm_case_and_no_glmm_case() -> None:
    caps = protocol.capabilities_of(lmm_only)
    for case in CASES.values():
        why = protocol.refusal(caps, case)
        if case.family is None:
            assert why is None, case.id
        else:
            assert why is not None and f"a {case.family} GLMM" in why, case.id
            assert "takes no family argument" in why


@pytest.mark.parametrize("func", [glmm_capable, takes_anything])
def test_a_callable_taking_family_or_kwargs_is_handed_glmms(func: Any) -> None:
    caps = protocol.capabilities_of(func)
    assert protocol.refusal(caps, GLMM) is None and protocol.refusal(caps, AGQ) is None


def test_a_declaration_narrows_what_the_signature_allows() -> None:
    def fit(formula: str, data: Any, REML: bool, **model: Any) -> dict[str, Any]:
        return {}

    fit.harness_capabilities = {"protocol": 2, "families": {"poisson": ["log"]}, "nAGQ": 1}
    caps = protocol.capabilities_of(fit)
    assert "declared families are ['poisson']" in protocol.refusal(caps, GLMM)
    fit.harness_capabilities = {"families": {"binomial": ["probit"]}}
    assert "declared binomial links are ['probit']" in protocol.refusal(
        protocol.capabilities_of(fit), GLMM)
    fit.harness_capabilities = {"families": ["binomial"], "nAGQ": 1}
    caps = protocol.capabilities_of(fit)
    assert protocol.refusal(caps, GLMM) is None
    assert "nAGQ up to 1" in protocol.refusal(caps, AGQ)


def test_a_glmm_callable_without_weights_is_not_handed_a_weighted_case() -> None:
    def fit(formula: str, data: Any, REML: bool, family: str = "", link: str = "",
            nAGQ: int = 1) -> dict[str, Any]:
        return {}

    why = protocol.refusal(protocol.capabilities_of(fit), GLMM)
    assert why == "the case needs weights='size', which the callable does not take"


@pytest.mark.parametrize("bad, message", [
    (lambda formula: None, "cannot be called as fit(formula, data, REML)"),
    (lambda formula, data, REML, extra: None, "missing a required argument: 'extra'"),
])
def test_a_signature_that_cannot_take_the_call_is_named(bad: Any, message: str) -> None:
    with pytest.raises(protocol.ProtocolError, match="cannot be called") as info:
        protocol.capabilities_of(bad, "mypkg:fit")
    assert message in str(info.value) and "mypkg:fit(" in str(info.value)


@pytest.mark.parametrize("declared, message", [
    ("binomial", "must be a mapping"),
    ({"famlies": ["binomial"]}, "unknown keys ['famlies']"),
    ({"protocol": 99}, "declares protocol 99"),
    ({"keywords": ["weigths"]}, "['weigths'] are not protocol keywords"),
])
def test_a_malformed_declaration_is_named(declared: Any, message: str) -> None:
    def fit(formula: str, data: Any, REML: bool, **model: Any) -> None:
        return None

    fit.harness_capabilities = declared
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.capabilities_of(fit, "mypkg:fit")
    assert message in str(info.value)


def test_the_record_must_say_it_fitted_the_case_s_model() -> None:
    assert protocol.model_mismatch(GLMM, {"family": "binomial", "link": "logit"}) is None
    assert protocol.model_mismatch(LMM, {"family": None}) is None
    assert protocol.model_mismatch(LMM, {"family": "gaussian", "link": "identity"}) is None
    assert protocol.model_mismatch(GLMM, {}) == (
        "fitted a different model: the case is a binomial GLMM with link logit; the record "
        "names no family")
    assert "record says binomial with link probit" in protocol.model_mismatch(
        GLMM, {"family": "binomial", "link": "probit"})
    assert "record says binomial with link none" in protocol.model_mismatch(
        GLMM, {"family": "binomial"})
    assert "the case is a linear mixed model, the record says family poisson" in \
        protocol.model_mismatch(LMM, {"family": "poisson", "link": "log"})


def test_a_gaussian_fit_of_a_glmm_case_fails_before_any_parameter_is_compared() -> None:
    ref = {"impl": "lme4", "case_id": GLMM.id, "family": "binomial", "link": "logit",
           "fixef": {"(Intercept)": -2.0}, "sigma": 1.0, "varcorr": []}
    cand = {"impl": "mypkg:fit", "case_id": GLMM.id, "fixef": {"(Intercept)": -2.0},
            "sigma": 1.0, "varcorr": []}
    comp = compare_records(ref, cand, GLMM)
    assert comp.verdict == FAILED and comp.rows == []
    assert comp.error.startswith("fitted a different model: the case is a binomial GLMM")


RECORDING = '''
import json


def fit(formula, data, REML, family=None, link=None, nAGQ=1, weights=None):
    given = {"formula": formula, "REML": REML, "family": family, "link": link, "nAGQ": nAGQ,
             "weights": weights, "columns": sorted(data.columns)}
    return {"family": family, "link": link, "messages": [json.dumps(given)]}
'''


@pytest.mark.parametrize("case, expected", [
    (GLMM, {"family": "binomial", "link": "logit", "nAGQ": 1, "weights": "size"}),
    (AGQ, {"family": "binomial", "link": "logit", "nAGQ": 9, "weights": None}),
    (CASES["cbpp-probit-ML"], {"family": "binomial", "link": "probit", "nAGQ": 1,
                               "weights": None}),
])
def test_a_glmm_capable_callable_receives_the_case_in_its_own_worker(
        case: Any, expected: dict[str, Any], tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    (tmp_path / "recording_impl.py").write_text(textwrap.dedent(RECORDING))
    monkeypatch.syspath_prepend(str(tmp_path))
    adapter = CallableAdapter("recording_impl:fit")
    assert adapter.unavailable() is None and adapter.supports(case) is None
    rec = runner.fit_case(adapter, case, use_cache=False)
    given = json.loads(rec["messages"][0])
    assert given == {"formula": case.formula, "REML": False, **expected,
                     "columns": sorted(runner.case_data(case).columns)}
    assert protocol.model_mismatch(case, rec) is None


def test_an_unloadable_implementation_is_named_before_any_fit(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "raising_impl.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "fine_impl.py").write_text("def fit(formula, data, REML):\n    return {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec, cause in [("nosuchmodule_xyz:fit", "No module named 'nosuchmodule_xyz'"),
                        ("raising_impl:fit", "RuntimeError: broken at import"),
                        ("harness.core.protocol:nothere", "has no attribute 'nothere'"),
                        ("harness.core.protocol:PROTOCOL_VERSION", "int, not callable"),
                        ("harness.core.protocol:model_mismatch", "cannot be called as fit("),
                        ("no-such-impl", "unknown implementation 'no-such-impl'")]:
        with pytest.raises(gate.GateError) as info:
            gate.check_requested([spec])
        assert str(info.value).startswith(f"--impl {spec}: ") and cause in str(info.value)
        assert "\n" not in str(info.value)
    gate.check_requested(["mixedref", "fine_impl:fit"])  # loadable: no error
    get_adapter("mixedref")


def test_the_gate_counts_compared_cases_per_candidate() -> None:
    entries = {f"n{i}": {"impl": "mypkg:fit", "outcome": o} for i, o in enumerate(
        ["agreed", "disagreed", "xfail", "skipped", "skipped", "no-verdict"])}
    entries["live"] = {"impl": "lme4", "outcome": "agreed"}
    entries["s"] = {"impl": "other:fit", "outcome": "skipped"}
    per = gate.counts(entries)
    assert set(per) == {"mypkg:fit", "other:fit"}
    assert gate.line("mypkg:fit", per["mypkg:fit"]) == (
        "mypkg:fit compared 3 of 6 (2 not supported, 1 without a reference answer)")
    assert gate.empty(entries, ["mypkg:fit", "other:fit", "absent:fit"]) == [
        "nothing gated: other:fit compared 0 of 1 (1 not supported)",
        "nothing gated: absent:fit compared 0 of 0"]
    assert gate.empty(entries) == []  # the default candidates are not gates
    assert gate.line("x", Counter()) == "x compared 0 of 0"


def test_the_protocol_module_imports_only_the_standard_library() -> None:
    import ast
    import sys

    tree = ast.parse(open(protocol.__file__).read())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}


def test_model_arguments_of_an_object_without_glmm_fields() -> None:
    case = SimpleNamespace(formula="y ~ 1 + (1 | g)", REML=True)
    assert protocol.model_arguments(case) == {}


def test_the_schema_states_the_protocol_and_compare_requires_what_it_says() -> None:
    from harness.core import compare, record

    stated = record.json_schema()["x-implementation-protocol"]
    assert stated["version"] == protocol.PROTOCOL_VERSION
    assert set(stated["keywords"]) == set(protocol.KEYWORDS)
    assert tuple(compare.REQUIRED) == protocol.REPORTED["lmm"]
    assert set(protocol.REPORTED["glmm"]) - set(protocol.REPORTED["lmm"]) == {"family", "link"}
