"""The documentation (docs/*.md, mkdocs.yml): the site builds strictly, and the examples run.

A ```python block whose first line is ``# runs as a test`` (optionally ``# runs as a test:
KIND``) is executed here in a fresh namespace. The implementation protocol's examples (KIND
lmm-only, glmm, declaration) are then held to what docs/protocol.md says of them: the cases
they are handed and refused, with the page's refusal messages, and records that follow the
JSON Schema, name the model they fitted and agree with lme4's recorded answers."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.adapters.lme4 import Lme4Recorded
from harness.core import protocol, runner
from harness.core.catalog import load_catalog
from harness.core.compare import AGREED, compare_records
from harness.core.record import FIELDS, normalize_record, validate

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARK = re.compile(r"# runs as a test(?:: (?P<kind>[\w-]+))?")
FENCE = re.compile(r"^```python\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

CASES = {c.id: c for c in load_catalog()}
LMM = CASES["sleepstudy-intercept-REML"]
GLMM = CASES["cbpp-prop-ML"]  # binomial proportions, the trials as prior weights
AGQ = CASES["cbpp-agq9-ML"]
CLOGLOG = CASES["cbpp-cloglog-ML"]
POISSON = CASES["grouseticks-location-ML"]


def runnable_blocks() -> list[tuple[str, int, str | None, str]]:
    """(page, line of the code's first line, kind, code) of every block marked to run."""
    out = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            code = m.group("code")
            mark = MARK.fullmatch(code.split("\n", 1)[0].strip())
            if mark:
                line = text.count("\n", 0, m.start("code")) + 1
                out.append((page.name, line, mark.group("kind"), code))
    return out


BLOCKS = runnable_blocks()


def run_block(page: str, line: int, code: str) -> dict[str, Any]:
    """Execute ``code`` as a module of its own; tracebacks name the page and its line."""
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem}_{line}"}
    exec(compile("\n" * (line - 1) + code, str(DOCS / page), "exec"), namespace)  # noqa: S102
    return namespace


def protocol_block(kind: str) -> dict[str, Any]:
    found = [(p, n, c) for p, n, k, c in BLOCKS if p == "protocol.md" and k == kind]
    assert len(found) == 1, f"docs/protocol.md should have one block marked '{kind}'"
    return run_block(*found[0])


def fitted_record(func: Any, case: Any) -> dict[str, Any]:
    """The record ``func`` gives for ``case`` as the harness sees it (called in-process)."""
    raw = protocol.call(func, case, runner.case_data(case))
    return normalize_record(raw, "docs-example", case.id)


def assert_agrees_with_lme4(func: Any, case: Any) -> None:
    rec = fitted_record(func, case)
    assert rec["error"] is None, rec["error"]
    assert validate(rec) == [], validate(rec)
    assert protocol.model_mismatch(case, rec) is None
    reference = Lme4Recorded().fit(case, None)
    comp = compare_records(reference, rec, case)
    assert comp.verdict == AGREED, (comp.verdict, comp.error, [r.name for r in comp.failures])


PAGE = (DOCS / "protocol.md").read_text(encoding="utf-8")


def test_the_pages_have_runnable_examples() -> None:
    kinds = {(p, k) for p, _, k, _ in BLOCKS}
    assert {("protocol.md", "lmm-only"), ("protocol.md", "glmm"),
            ("protocol.md", "declaration"), ("mixedref.md", None)} <= kinds


@pytest.mark.parametrize("page, line, code", [(p, n, c) for p, n, _, c in BLOCKS],
                         ids=[f"{p}:{n}" for p, n, _, _ in BLOCKS])
def test_a_marked_block_runs(page: str, line: int, code: str) -> None:
    run_block(page, line, code)


def test_the_lmm_only_example_is_handed_lmms_and_agrees_with_lme4() -> None:
    fit = protocol_block("lmm-only")["fit"]
    caps = protocol.capabilities_of(fit)
    assert protocol.refusal(caps, LMM) is None
    why = protocol.refusal(caps, GLMM)
    assert why is not None and "takes no family argument" in why
    assert f"not supported: {why}" in PAGE  # the page quotes the message as it is
    assert_agrees_with_lme4(fit, LMM)


def test_the_glmm_example_is_handed_both_kinds_and_agrees_with_lme4() -> None:
    fit = protocol_block("glmm")["fit"]
    caps = protocol.capabilities_of(fit)
    for case in (LMM, GLMM, AGQ, CLOGLOG, POISSON):
        assert protocol.refusal(caps, case) is None, case.id
    assert protocol.model_arguments(GLMM) == {"family": "binomial", "link": "logit",
                                              "nAGQ": 1, "weights": "size"}
    assert_agrees_with_lme4(fit, GLMM)
    assert_agrees_with_lme4(fit, LMM)


def test_the_declaration_narrows_as_the_page_says() -> None:
    fit = protocol_block("declaration")["fit"]
    caps = protocol.capabilities_of(fit)
    assert protocol.refusal(caps, LMM) is None and protocol.refusal(caps, GLMM) is None
    for case, quoted in [(AGQ, "it declares nAGQ up to 1"),
                         (CLOGLOG, "its declared binomial links are ['logit', 'probit']"),
                         (POISSON, "its declared families are ['binomial']")]:
        why = protocol.refusal(caps, case)
        assert why is not None and why.endswith(quoted), (case.id, why)
        assert f"`{case.id}`" in PAGE and quoted in PAGE
    assert f"not supported: {protocol.refusal(caps, AGQ)}" in PAGE
    with pytest.raises(NotImplementedError):
        fit("y ~ x", None, True)
    rec = fitted_record(fit, GLMM)
    assert rec["error"] is None and protocol.model_mismatch(GLMM, rec) is None
    assert compare_records(Lme4Recorded().fit(GLMM, None), rec, GLMM).verdict == AGREED


def test_the_page_quotes_the_refusal_of_a_callable_without_weights() -> None:
    def fit(formula: str, data: Any, REML: bool, family: str = "", link: str = "",
            nAGQ: int = 1) -> dict[str, Any]:
        return {}

    why = protocol.refusal(protocol.capabilities_of(fit), GLMM)
    assert f"not supported: {why}" in PAGE


def test_the_protocol_page_lists_every_keyword_and_every_record_field() -> None:
    assert f"(version {protocol.PROTOCOL_VERSION})" in PAGE.splitlines()[0]
    for keyword in protocol.KEYWORDS:
        assert f"| `{keyword}` |" in PAGE, keyword
    for field in FIELDS:
        if field not in ("impl", "case_id", "error"):  # the harness's own
            assert f"`{field}`" in PAGE, field
    for key in protocol.CAPABILITY_KEYS:
        assert f'"{key}"' in PAGE, key


def test_the_readme_is_a_front_page_pointing_at_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("<!-- ecosystem:start -->") == 1
    assert readme.count("<!-- ecosystem:end -->") == 1
    head = readme.split("<!-- ecosystem:start -->")[0]
    assert len(head.splitlines()) < 90
    assert "./dev harness" in head and "./dev test" in head
    assert 'pip install "mixedref[harness]"' in head
    assert "python -m pytest --pyargs harness --impl mypkg.fit:fit -n 2" in head
    links = re.findall(r"\]\((docs/[^)#]+)", head)
    assert links and all((ROOT / link).is_file() for link in links)


def test_mkdocs_nav_lists_every_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = {next(iter(entry.values())) for entry in config["nav"]}
    assert listed == {p.name for p in DOCS.glob("*.md")}


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[dev]')")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                          "--config-file", str(ROOT / "mkdocs.yml"),
                          "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "protocol" / "index.html").is_file()
