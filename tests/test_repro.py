"""``python -m harness repro`` (harness/commands/repro.py): a standalone reproducer per (case,
package).

The generated script runs in a subprocess whose imports of ``harness`` and ``mixedref`` fail
(the venv's editable install would otherwise find them: ``python -I`` alone is not enough), with
PYTHONPATH unset and the folder as its working directory, and gives the numbers the harness's
adapter gives; refusals exit 2 and write nothing; the league names each finding's reproducer."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.adapters.peers import calls
from harness.commands import repro, repro_runtime

#: runs repro.py as __main__ where importing harness or mixedref raises
LAUNCH = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('harness', 'mixedref'):
            raise ImportError('the reproducer imported ' + name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ['repro.py', *sys.argv[1:]]
runpy.run_path('repro.py', run_name='__main__')
"""
STANDALONE_IMPORTS = {"__future__", "typing", "json", "math", "re", "os", "numpy", "pandas"}


def _run(folder: Path, python: str = sys.executable, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    return subprocess.run([python, "-I", "-c", LAUNCH, *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)


def _adapter_record(case_id: str, impl: str, python: str | None = None) -> dict:
    from harness.adapters import get_adapter, set_interpreters
    from harness.core.catalog import load_catalog
    from harness.core.runner import fit_case

    case = next(c for c in load_catalog() if c.id == case_id)
    if python:
        set_interpreters({impl: python})
    try:
        return fit_case(get_adapter(impl), case, use_cache=False)
    finally:
        if python:
            set_interpreters({})


def _same_numbers(script: dict, record: dict, rtol: float) -> None:
    """The script's answer in lme4's quantities is the adapter's record's."""
    assert record.get("error") is None, record.get("error")
    for key in ("fixef", "fixef_se"):
        assert script[key].keys() == record[key].keys()
        for name, value in record[key].items():
            assert math.isclose(script[key][name], value, rel_tol=rtol), (key, name)
    if "fixef_se_rx" in script:  # a GLMM's RX-based SEs, where the script gives them
        assert script["fixef_se_rx"].keys() == record["fixef_se_rx"].keys()
        for name, value in record["fixef_se_rx"].items():
            assert math.isclose(script["fixef_se_rx"][name], value, rel_tol=rtol), name
    for key in ("sigma", "loglik", "objective"):
        assert math.isclose(script[key], record[key], rel_tol=rtol), key
    assert len(script["varcorr"]) == len(record["varcorr"])
    for a, b in zip(script["varcorr"], record["varcorr"], strict=True):
        assert (a["grp"], a["var1"], a["var2"]) == (b["grp"], b["var1"], b["var2"])
        assert math.isclose(a["vcov"], b["vcov"], rel_tol=rtol, abs_tol=1e-12), a


def _imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add((node.module or "").split(".")[0])
    return found


def test_the_copied_modules_import_nothing_of_the_harness() -> None:
    """What repro.py copies into a script imports only the standard library, numpy, pandas."""
    for module in (calls, repro_runtime):
        extra = _imports(Path(module.__file__).read_text()) - STANDALONE_IMPORTS
        assert not extra, f"{module.__name__} imports {extra}"
    # the check itself fails on a module that reaches for the harness
    assert _imports("import numpy\nfrom harness.adapters import x\n") - STANDALONE_IMPORTS


def test_statsmodels_sleepstudy_script_gives_the_adapters_numbers(tmp_path: Path) -> None:
    pytest.importorskip("statsmodels")
    out = tmp_path / "sm"
    assert repro.main("sleepstudy-slopes-REML", "statsmodels", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data.csv", "repro.py"]
    done = _run(out, sys.executable, "--json")
    assert done.returncode == 0, done.stderr
    script = json.loads(done.stdout)
    _same_numbers(script, _adapter_record("sleepstudy-slopes-REML", "statsmodels"), 1e-9)
    # and the human-readable run prints them next to lme4's recorded answer
    text = _run(out).stdout
    assert "fixef[Days]" in text and "10.46728596" in text
    assert "best known REML criterion" in text and "1743.628272" in text
    assert "nothing outside the harness's tolerance" in text


def test_a_registered_pair_names_the_quantity_and_its_size(tmp_path: Path) -> None:
    pytest.importorskip("statsmodels")
    out = tmp_path / "corr"
    assert repro.main("sim_corr_minus1-slopes-REML", "statsmodels", str(out)) == 0
    done = _run(out)
    assert done.returncode == 0, done.stderr
    assert "- objective: size 130 (higher; finding statsmodels-interior-correlation-optimum)" \
        in done.stdout
    assert "corr[g,(Intercept),x]" in done.stdout and "<-- disagrees" in done.stdout
    assert "statsmodels-interior-correlation-optimum" in (out / "README.md").read_text()


@pytest.mark.parametrize("case", ["sleepstudy-slopes-REML", "cake-interaction-REML",
                                  "Arabidopsis-intercepts-ML", "VerbAgg-crossed-ML"])
def test_the_csv_reads_back_as_the_frame_the_harness_fits(case: str, tmp_path: Path) -> None:
    from harness.core.catalog import load_catalog
    from harness.core.runner import case_data

    data = case_data(next(c for c in load_catalog() if c.id == case))
    (tmp_path / "data.csv").write_text(data.to_csv(index=False))
    back = repro_runtime.read_frame(tmp_path / "data.csv", repro._columns(data))
    pd.testing.assert_frame_equal(back, data)


def test_read_frame_keeps_integer_levels_order_and_awkward_labels(tmp_path: Path) -> None:
    data = pd.DataFrame({
        "y": [1.5, np.nan, 0.1 + 0.2, -3e-300],
        "n": np.array([1, 2, 3, 4], dtype="int64"),
        "g": pd.Categorical([30, 4, 30, 100], categories=[100, 4, 30]),
        "h": pd.Categorical(["a,b", "NA", "", "a,b"], categories=["NA", "a,b", ""],
                            ordered=True)})
    (tmp_path / "data.csv").write_text(data.to_csv(index=False))
    back = repro_runtime.read_frame(tmp_path / "data.csv", repro._columns(data))
    pd.testing.assert_frame_equal(back, data)
    # the check fails when the levels' order is not stated
    wrong = dict(repro._columns(data), g={"levels": [4, 30, 100], "ordered": False})
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(
            repro_runtime.read_frame(tmp_path / "data.csv", wrong), data)


@pytest.mark.parametrize("case, impl, message", [
    ("no-such-case", "statsmodels", "unknown case 'no-such-case'"),
    ("sleepstudy-slopes-REML", "no-such-package", "unknown implementation 'no-such-package'"),
    ("sleepstudy-slopes-REML", "mixedref", "unknown implementation 'mixedref'"),
    ("Penicillin-crossed-ML", "statsmodels",
     "statsmodels cannot express Penicillin-crossed-ML: not expressible in statsmodels.MixedLM: "
     "more than one grouping factor"),
    ("sleepstudy-slopes-ML", "pyreml", "pyreml cannot express sleepstudy-slopes-ML"),
    ("sleepstudy-intercept-ML", "edi-kernels", "no reproducer recipe for edi-kernels"),
    ("sleepstudy-slopes-ML", "gpboost", "gpboost cannot express sleepstudy-slopes-ML"),
    ("cbpp-cbind-ML", "pymixef", "no reproducer recipe for pymixef on a GLMM yet"),
])
def test_refusals_exit_2_and_write_nothing(case: str, impl: str, message: str,
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """In this process, through the command line's ``main`` (each refusal is decided before
    any process or file is made); the same through ``python -m harness``: the next test."""
    from harness.__main__ import main

    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["repro", case, impl, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_refusal_exits_2_from_the_command_line(tmp_path: Path) -> None:
    """``python -m harness repro`` turns a refusal into exit status 2 with its message on
    standard error (one refusal: the others take the same road from ``main``)."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "harness", "repro", "sleepstudy-slopes-REML",
                           "no-such-package", "--out", str(out)], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2, done.stderr
    assert "unknown implementation 'no-such-package'" in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_reproducer_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert repro.main("sleepstudy-intercept-REML", "statsmodels", str(out)) == 2
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no partial folder left


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rep = repro.Reproducer("c", "statsmodels", {"data.csv": "x\n1\n", "repro.py": object()})
    with pytest.raises(TypeError):
        repro.write(rep, tmp_path / "out")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def _peer_python(name: str) -> str:
    from harness.commands import ecosystem

    folder = ecosystem.env_folder(name, ecosystem.env_root())
    manifest = folder / ecosystem.MANIFEST
    if not manifest.is_file():
        pytest.skip(f"{name}'s environment is not built here ({folder}); "
                    "python -m harness ecosystem builds it")
    return json.loads(manifest.read_text())["python"]


@pytest.mark.parametrize("impl, case", [("pyreml", "sleepstudy-slopes-REML"),
                                        ("glmm", "sleepstudy-slopes-REML"),
                                        ("glmm", "cbpp-cloglog-ML"),
                                        ("interlace-lme", "Pastes-nested-REML"),
                                        ("mixedlm", "cake-interaction-REML"),
                                        ("lme-python", "sleepstudy-fdays-REML"),
                                        ("lme-python", "ChickWeight-diet_time-REML"),
                                        ("glmm", "sim_deep_nest-nested3-REML"),
                                        ("interlace-lme", "cbpp-cbind-ML"),
                                        ("lme-python", "cbpp-cbind-ML"),
                                        ("gpboost", "Arabidopsis-intercepts-ML"),
                                        ("kamino-lme", "sleepstudy-slopes-REML"),
                                        ("pymixef", "sleepstudy-intercept-REML")])
def test_a_peer_in_its_own_environment(impl: str, case: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The script, run by the peer's own environment's python, gives the adapter's numbers
    (the adapter fitting in that environment too, on the script's one BLAS thread: pymixef's
    SEs move in the 7th digit with the thread count). The JSON is the last line of its output
    (gpboost prints a line of its own first)."""
    python = _peer_python(impl)
    out = tmp_path / impl
    assert repro.main(case, impl, str(out)) == 0
    done = _run(out, python, "--json")
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # the worker started now inherits it
    _same_numbers(json.loads(done.stdout.splitlines()[-1]),
                  _adapter_record(case, impl, python), 1e-7)


def _registry(tmp_path: Path) -> Path:
    row = {"case": "sim_corr_minus1-slopes-*", "quantity": "objective", "size": 130.0,
           "direction": "higher"}
    doc = {"findings": [
        {"id": "sm-interior", "impl": "statsmodels", "cause": "it stops early",
         "evidence": "measured", "rows": [row]},
        {"id": "edi-kernels-x", "impl": "edi-kernels", "cause": "c", "evidence": "e",
         "rows": [dict(row, case="sleepstudy-slopes-REML")]},
        {"id": "mixedref-x", "impl": "mixedref", "cause": "c", "evidence": "e",
         "rows": [dict(row, case="sleepstudy-slopes-REML")]}]}
    path = tmp_path / "findings.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_findings_get_one_reproducer_each(tmp_path: Path) -> None:
    pytest.importorskip("statsmodels")
    path = _registry(tmp_path)
    out = tmp_path / "repro"
    result = repro.write_findings(out, path)
    assert set(result) == {"sm-interior", "edi-kernels-x"}  # mixedref: not a Python package
    assert result["sm-interior"] == str(out / "sm-interior")
    assert result["edi-kernels-x"].startswith("no reproducer: no reproducer recipe for "
                                              "edi-kernels")
    assert sorted(p.name for p in out.iterdir()) == ["sm-interior"]
    text = (out / "sm-interior" / "repro.py").read_text()
    assert "'case': 'sim_corr_minus1-slopes-REML'" in text and "'finding': 'sm-interior'" in text


def test_the_league_names_each_findings_reproducer(tmp_path: Path) -> None:
    from harness.commands import ecosystem

    path = _registry(tmp_path)
    league = {"implementations": [
        {"name": "statsmodels", "findings": [{"case": "sim_corr_minus1-slopes-REML",
                                              "registered": "finding sm-interior: ..."}]},
        {"name": "edi-kernels", "findings": []}]}
    lines = ecosystem.findings_lines(league, path)
    assert any(line.startswith("- `sm-interior` [statsmodels]") and
               line.endswith("Reproducer: `harness/references/league/repro/sm-interior/repro.py`.")
               for line in lines)
    assert not any("edi-kernels-x" in line and "Reproducer" in line for line in lines)
    page = ecosystem.findings_html(league, path)
    assert "<a href='repro/sm-interior/repro.py'>" in page
    assert "<td>it stops early</td><td>-</td>" not in page
    assert "<td>c</td><td>-</td></tr>" in page  # edi-kernels: no reproducer


def test_the_committed_league_links_only_reproducers_that_exist() -> None:
    """Each reproducer the committed league page and README name is in
    harness/references/league/repro/ (written by ``repro --findings``), and each finding
    about a package with a recipe is linked."""
    import re

    from harness.commands import ecosystem

    page = (ecosystem.LEAGUE_DIR / "index.html").read_text()
    links = re.findall(r"href='(repro/[^']+)'", page)
    assert links
    missing = [link for link in links if not (ecosystem.LEAGUE_DIR / link).is_file()]
    assert not missing, f"the league page links missing reproducers: {missing}"
    readme = ecosystem.README.read_text()
    named = re.findall(r"Reproducer: `harness/references/league/(repro/[^`]+)`", readme)
    assert sorted(named) == sorted(links)
    written = [f"repro/{d.name}/repro.py" for d in (ecosystem.LEAGUE_DIR / "repro").iterdir()]
    assert sorted(written) == sorted(links)  # and every committed one is linked


@pytest.mark.parametrize("impl, case", [
    ("statsmodels", "sleepstudy-uncorrelated-REML"), ("mixedlm-rs", "sleepstudy-slopes-ML"),
    ("glmm", "Penicillin-crossed-REML"), ("glmm", "cbpp-cbind-ML"),
    ("pyreml", "Pastes-nested-REML"), ("interlace-lme", "cake-interaction-REML"),
    ("mixedlm", "cake-interaction-REML"), ("lme-python", "sleepstudy-fdays-ML"),
    ("lme-python", "ChickWeight-diet_time-REML"), ("glmm", "sim_deep_nest-nested3-ML"),
    ("interlace-lme", "Mmmec-offset-ML"), ("interlace-lme", "sim_glmm_slopes-slopes-ML"),
    ("lme-python", "cbpp-agq9-ML"), ("gpboost", "Contraception-probit-ML"),
    ("gpboost", "Penicillin-plate-ML"), ("kamino-lme", "SmLs07-oneway-REML"),
    ("pymixef", "sim_scale_large-intercept-REML")])
def test_every_recipes_script_is_clean_python(impl: str, case: str, tmp_path: Path) -> None:
    """Each recipe's script compiles and names nothing it does not define (ruff's pyflakes
    rules: an undefined name, a constant the copied code needs but the script lacks, fails)."""
    import shutil

    out = tmp_path / impl
    repro.write(repro.build(case, impl, measure=False), out)
    source = (out / "repro.py").read_text()
    compile(source, "repro.py", "exec")
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).is_file():
        pytest.skip("ruff is not installed")
    done = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select", "F",
                           str(out / "repro.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_every_finding_about_a_package_has_its_committed_reproducer() -> None:
    """Each registered finding about a Python package has its folder in
    harness/references/league/repro/ (``python -m harness repro --findings --out
    harness/references/league/repro`` writes them; a finding added since: run it again)."""
    from harness.commands import ecosystem

    folder = ecosystem.LEAGUE_DIR / "repro"
    missing = [fid for fid, _, case in repro.finding_cases()
               if case is not None and not (folder / fid / "repro.py").is_file()]
    assert not missing, f"findings without a committed reproducer: {missing}"


def test_the_report_states_a_certified_cases_truth_and_the_quadrature_scale() -> None:
    """The rows the registry names for certified cases (``certified[q]``, ``nist[q]``: against
    the truth, not lme4) are computed by the script, and under nAGQ > 1 it states the
    package's criterion on lme4's scale (lme4's quadrature criterion leaves out the saturated
    model's -2 log-likelihood)."""
    est = {"fixef": {"(Intercept)": 10.5}, "sigma": 2.0, "objective": 110.0,
           "varcorr": [{"grp": "Treatment", "var1": "(Intercept)", "var2": None, "vcov": 3.0,
                        "sdcor": 3.0 ** 0.5},
                       {"grp": "Residual", "var1": None, "var2": None, "vcov": 4.0,
                        "sdcor": 2.0}]}
    truth = {"input": {"fixef (Intercept)": 10.0, "var Treatment": 2.5, "criterion": 109.0},
             "nist": {"var Treatment": 2.0}}
    assert repro_runtime.certified_differences(est, truth) == {
        "certified[fixef (Intercept)]": 0.5, "certified[var Treatment]": 0.5,
        "certified[criterion]": 1.0, "nist[var Treatment]": 1.0}
    info = {"impl": "pkg", "case": "c", "formula": "y ~ 1 + (1 | Treatment)", "REML": True,
            "lme4": {"fixef": {"(Intercept)": 10.0}, "objective": 100.0},
            "certified": truth, "saturated": 9.0,
            "disagrees": [{"quantity": "certified[var *]", "size": 0.5, "direction": "higher",
                           "finding": "f"}]}
    text = "\n".join(repro_runtime.report(est, info))
    assert "- certified[var *]: size 0.5 (higher; finding f); this run: " \
        "certified[var Treatment] +0.5" in text
    assert "pkg's objective minus it is 101 (minus lme4's: +1)" in text
