"""The command lines: ``python -m harness report`` (the discrepancy report's three files and
their verdicts), ``python -m harness.generate.simulate`` (its listing, and ``--write`` reproducing a
committed dataset and its truth), and the plugin's ``--recorded PATH`` (a modified recording is
the one compared against)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

# imported before pytester's in-process run (see tests/test_plugin.py)
import harness.adapters  # noqa: F401
import harness.core.catalog  # noqa: F401
import harness.pytest_plugin.plugin  # noqa: F401
from harness.core.datasets import dataset_info, load_dataset
from harness.generate import simulate

pytest_plugins = ["pytester"]

# the report's and the session's judge use lme4's devfun in one R, started once
# (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("shared_r_lane")

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "harness" / "references" / "lme4.json"
XDIST_VARS = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


def _env() -> dict[str, str]:
    """This environment without pytest-xdist's worker variables (the child is no worker)."""
    return {k: v for k, v in os.environ.items() if k not in XDIST_VARS}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=600)


# ---------------------------------------------------------------- python -m harness report


def test_report_cli_writes_the_three_files_with_the_cases_and_verdicts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the command's main in this process (its fits run in the harness's worker processes as
    # always); the ``python -m harness report`` entry itself is run as a process by
    # tests/test_report_resilience.py (its CLI tests)
    from harness.__main__ import main

    out = tmp_path / "report"
    case = "Dyestuff-intercept-ML"
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(["report", "--out", str(out), "--reference", "recorded", "--impl", "mixedref",
                 "-k", case, "--no-allfit"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr[-3000:]
    for name in ("report.json", "report.md", "index.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str(out / name) in stdout  # the CLI prints where it wrote each file
    assert f"[1/1] {case}:" in stderr and "mixedref: agreed" in stderr
    report = json.loads((out / "report.json").read_text())
    assert [c["case"]["id"] for c in report["cases"]] == [case]
    (only,) = report["cases"]
    assert only["implementations"] == ["lme4-recorded", "mixedref"]
    assert only["verdict"] == "agreed" and only["disagreement"] is False
    assert set(only["comparisons"]) == {"mixedref"}
    assert only["comparisons"]["mixedref"]["verdict"] == "agreed"
    assert report["counts"] == {"agreed": 1}
    # the recorded reference is the one in harness/references/lme4.json
    recorded = json.loads(RECORDED.read_text())["records"][case]
    assert only["records"]["lme4-recorded"]["objective"] == recorded["objective"]
    md = (out / "report.md").read_text()
    assert f"| {case} |" in md and "agreed" in md
    assert case in (out / "index.html").read_text()


def test_report_cli_refuses_an_empty_selection(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # the command's main in this process (refused before any fit; the ``python -m harness``
    # entry itself is run by tests/test_report_resilience.py's CLI tests)
    from harness.__main__ import main

    code = main(["report", "--out", str(tmp_path / "r"), "--reference", "recorded", "-k",
                 "no_such_case_anywhere"])
    assert code == 2
    assert "no case matches -k 'no_such_case_anywhere'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- python -m
# harness.generate.simulate


def test_simulate_cli_lists_every_registered_design(capsys: pytest.CaptureFixture[str]) -> None:
    # in this process (the ``python -m harness.generate.simulate`` entry is run by the --write test)
    assert simulate._main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(simulate.REGISTRY)
    for ln, d in zip(lines, simulate.REGISTRY.values(), strict=True):
        assert f"seed={d.seed}" in ln and d.formula in ln and d.description in ln


def test_simulate_cli_write_reproduces_a_committed_dataset(tmp_path: Path) -> None:
    name = "sim_singular"  # the smallest simulated file
    out = tmp_path / "data"
    proc = _run("-m", "harness.generate.simulate", "--write", "--out", str(out), name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out / f'{name}.csv.gz'}"
    committed_file = ROOT / "harness" / "data" / f"{name}.csv.gz"
    # the CSV inside, byte for byte (the gzip wrapper may differ with another zlib)
    assert gzip.decompress((out / f"{name}.csv.gz").read_bytes()) == \
        gzip.decompress(committed_file.read_bytes())
    # and read back, the same data
    pd.testing.assert_frame_equal(load_dataset(name, [out]), load_dataset(name))
    # the metadata it wrote is the committed entry, and its truth is what the generator
    # declares (the generator's own return value, not numbers copied here)
    written = yaml.safe_load((out / "datasets.yaml").read_text())["datasets"]
    assert list(written) == [name]
    committed = dataset_info(name)
    for key in ("source", "seed", "generator", "formula", "nrow", "columns", "truth",
                "description"):
        assert written[name][key] == committed[key], key
    _, declared = simulate.simulate(name)
    assert written[name]["truth"] == json.loads(json.dumps(declared))


def test_simulate_cli_refuses_an_unknown_design(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, in this process
        simulate._main(["--write", "--out", str(tmp_path), "sim_nope"])
    assert exit_.value.code == 2
    assert "unknown design(s) sim_nope" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- the plugin's --recorded


def test_recorded_option_compares_against_the_given_file(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in XDIST_VARS:
        monkeypatch.delenv(var, raising=False)
    doc = json.loads(RECORDED.read_text())
    changed = "Dyestuff-intercept-ML"
    doc["records"][changed]["sigma"] *= 1.01  # 10 x sigma's 0.1% tolerance
    path = pytester.path / "lme4_modified.json"
    path.write_text(json.dumps(doc))
    result = pytester.runpytest_inprocess(  # in this process: no interpreter start
        "--pyargs", "harness", "--reference=recorded", "--recorded", str(path),
        "-p", "no:cacheprovider", "--impl", "mixedref", "-v", "-rf",
        "-k", "Dyestuff-intercept and not test_fit")
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)
    assert "reference = recorded lme4 answers lme4_modified.json" in out
    result.stdout.fnmatch_lines([
        "*Dyestuff-intercept-REML[[]mixedref-vs-lme4-recorded[]] PASSED*",
        "*Dyestuff-intercept-ML[[]mixedref-vs-lme4-recorded[]] FAILED*",
        f"*{changed}: mixedref vs lme4-recorded: disagreed in sigma",
    ])
    # the failure's table marks sigma, and only sigma (read from the failures section alone: on
    # CI, where CI=true, pytest's short summary repeats the whole message untruncated)
    failures = out.split("= FAILURES =", 1)[1].split("mixedref harness summary", 1)[0]
    marked = [ln.split()[1] for ln in failures.splitlines() if ln.startswith("XX ")]
    assert marked == ["sigma"]
    # the nested session's answers stay its own: this process's next fit of the case reads the
    # committed recording, not the modified one the nested run cached
    from harness.adapters.lme4 import Lme4Recorded
    from harness.core import runner
    from harness.core.catalog import load_catalog

    case = next(c for c in load_catalog() if c.id == changed)
    committed = json.loads(RECORDED.read_text())["records"][changed]["sigma"]
    assert runner.fit_case(Lme4Recorded(), case)["sigma"] == committed
