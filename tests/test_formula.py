"""The formula grammar against R and lme4: findbars (with ``||`` and ``/`` expanded as lme4
1.1-31 does), nobars, terms() labels and intercept, R's deparse of names; malformed formulas.

References: tests/references/design/formulas.json, written by r_scripts/design_references.R.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixedref.errors import FormulaError
from mixedref.frontend.fixed import contr_poly
from mixedref.frontend.formula import deparse, expand_terms, parse_expr, parse_formula

REF = json.loads((Path(__file__).parent / "references" / "design" / "formulas.json").read_text())


@pytest.mark.parametrize("ref", REF, ids=lambda r: r["formula"])
def test_matches_r(ref: dict) -> None:
    parsed = parse_formula(ref["formula"])
    assert [b.label for b in parsed.bars] == ref["bars"]
    assert [b.group_name for b in parsed.bars] == ref["groups"]
    terms, intercept = expand_terms(parsed.fixed)
    assert [":".join(t) for t in terms] == ref["term_labels"]
    assert intercept == ref["intercept"]
    assert ("1" if parsed.fixed is None else deparse(parsed.fixed)) == ref["fixed"]


@pytest.mark.parametrize(
    "text",
    ["I(Days^2)", "log(Days + 1)", "I(x - 1)", "I(2 * x)", "I(x/2)", "exp(-x)", "c:(b:a)",
     "I(x > 2)", "a:b:c", "I((x + 1)^2)", "x^2^3", "0 + x | g", "I(-x^2)"],
)
def test_deparse_roundtrip(text: str) -> None:
    """R prints these expressions back exactly as written here."""
    assert deparse(parse_expr(text)) == text


def test_deparse_normalises_spacing() -> None:
    assert deparse(parse_expr("I(Days ^ 2)")) == "I(Days^2)"
    assert deparse(parse_expr("log( x+1 )")) == "log(x + 1)"
    assert deparse(parse_expr("`my var`")) == "`my var`"


def test_response_and_fixed_part() -> None:
    p = parse_formula("log(Reaction) ~ Days + (Days | Subject)")
    assert p.response_name == "log(Reaction)"
    assert p.fixed is not None and deparse(p.fixed) == "Days"
    assert parse_formula("y ~ (1 | g)").fixed is None


def test_contr_poly_matches_r() -> None:
    """R: contr.poly(4) (values printed by R 4.2.2)."""
    contr, names = contr_poly(4)
    expected = np.array([
        [-0.670820393249937, 0.5, -0.223606797749979],
        [-0.223606797749979, -0.5, 0.670820393249937],
        [0.223606797749979, -0.5, -0.670820393249937],
        [0.670820393249937, 0.5, 0.223606797749979],
    ])
    np.testing.assert_allclose(contr, expected, atol=1e-14)
    assert names == [".L", ".Q", ".C"]
    assert contr_poly(6)[1] == [".L", ".Q", ".C", "^4", "^5"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("y ~ x", "No random effects terms"),
        ("y ~ x + (1 | g", "unbalanced parentheses"),
        ("y ~ x + 1 | g)", "unbalanced parentheses"),
        ("y ~ x + (1 | g))", "unbalanced parentheses"),
        ("y x + (1 | g)", "missing operator"),
        ("x + (1 | g)", "no '~'"),
        ("~ x + (1 | g)", "no response"),
        ("y ~ x + ( | g)", "missing its left side"),
        ("y ~ x + (1 | )", "nothing on its right side"),
        ("y ~ x + (1 || )", "nothing on its right side"),
        ("y ~ x + ()", "empty parentheses"),
        ("y ~ x + ", "nothing on its right side"),
        ("", "non-empty string"),
        ("y ~ x $ z + (1 | g)", "unexpected character '\\$'"),
        ("y ~ x ~ z + (1 | g)", "more than one '~'"),
        ("y ~ x + (1 | g) + 2", "only 0 and 1"),
    ],
)
def test_malformed(text: str, match: str) -> None:
    with pytest.raises(FormulaError, match=match):
        mf = parse_formula(text)
        expand_terms(mf.fixed)


# -- named arguments, backquoted and Unicode names, offset() terms --------------------------------
# References: tests/references/frontend/formulas.json, written by r_scripts/frontend_references.R.

FRONTEND = json.loads((Path(__file__).parent / "references" / "frontend" / "formulas.json")
                      .read_text(encoding="utf-8"))


@pytest.mark.parametrize("ref", FRONTEND, ids=lambda r: r["formula"])
def test_frontend_formulas_match_r(ref: dict) -> None:
    """lme4's group names (names(cnms)) drop the backquotes of a bare symbol; terms() labels
    keep them; offset() terms are R's "offset" attribute, not term labels."""
    parsed = parse_formula(ref["formula"])
    assert parsed.response_name == ref["response"]
    assert [b.label for b in parsed.bars] == ref["bars"]
    assert [b.group_name for b in parsed.bars] == ref["groups"]
    terms, intercept = expand_terms(parsed.fixed)
    labels = [":".join(t) for t in terms]
    assert [t for t in labels if not t.startswith("offset(")] == ref["term_labels"]
    assert [t for t in labels if t.startswith("offset(")] == ref["offsets"]
    assert intercept == ref["intercept"]


@pytest.mark.parametrize(
    "text",
    ["poly(x, 3, raw = TRUE)", "ns(x, df = 3)", "bs(x, degree = 2, df = 4)", "énergie",
     "`my var`:`énergie 2`", "scale(x, center = FALSE)"],
)
def test_deparse_roundtrip_named_arguments(text: str) -> None:
    assert deparse(parse_expr(text)) == text


def test_named_argument_errors() -> None:
    with pytest.raises(FormulaError, match="argument 'df' = has no value"):
        parse_formula("y ~ ns(x, df = ) + (1 | g)")
    with pytest.raises(FormulaError, match="unexpected '='"):
        parse_formula("y ~ x = 2 + (1 | g)")
