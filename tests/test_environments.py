"""A candidate run with another interpreter sees that interpreter's environment alone.

The harness's own environment holds scikit-sparse (mixedref's sparse engine); a package that
takes another code path when it can import sksparse (interlace-lme 0.3.2 does) must be gated as
its users install it, without it. Here a small virtual environment (numpy, pandas, pyyaml: what
the harness's worker needs there, see harness.core.isolation) holds a candidate module that reports
what it can import and where it runs; it is fitted through harness.core.runner.fit_case with an
adapter whose ``python`` is that environment's interpreter. An interpreter that lacks what the
worker needs gives an error naming what is missing and the interpreter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import HOME
from harness.core import isolation, runner
from harness.core.catalog import load_catalog

pytestmark = pytest.mark.slow

CANDIDATE = "envprobe_candidate"
SOURCE = textwrap.dedent('''
    """A candidate that reports its environment (installed in the test's virtual environment)."""
    import sys


    class EnvProbe:
        """An adapter by duck typing (it imports nothing of the harness's adapters)."""

        name = "envprobe"
        lane = "test-environments"
        runs_code = True
        handles_timeout = False

        def __init__(self, python=None):
            self.python = python

        def fit(self, case, data):
            try:
                import sksparse  # noqa: F401
                seen = "sksparse: importable"
            except ImportError:
                seen = "sksparse: not importable"
            import harness
            y = data[case.formula.split("~")[0].strip()]
            return {"fixef": {"(Intercept)": float(y.mean())}, "sigma": float(y.std()),
                    "messages": [seen, "prefix=" + sys.prefix, "harness=" + harness.__file__,
                                 "data rows=%d" % len(data)]}


    def numbers():
        import numpy as np
        return {"x": np.float64(1.5), "a": np.arange(3), "n": np.int64(7), "t": (np.True_,)}
''')


def _uv() -> str:
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.is_file() else shutil.which("uv")
    if not found:
        pytest.skip("uv is not installed (the .venv's uv or one on PATH)")
    return found


def _venv(root: Path, *packages: str) -> str:
    """A virtual environment at ``root`` holding ``packages`` and the candidate module."""
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(root)], check=True)
    python = str(root / "bin" / "python")
    if packages:
        subprocess.run([uv, "pip", "install", "-q", "--python", python, *packages], check=True)
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True,
                             text=True).stdout.strip()
    (Path(purelib) / f"{CANDIDATE}.py").write_text(SOURCE)
    return python


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("envs")
    return {"full": _venv(root / "full", "numpy", "pandas", "pyyaml"),
            "no-yaml": _venv(root / "no-yaml", "numpy", "pandas")}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The candidate module, importable here too (the adapter is pickled by reference)."""
    folder = tmp_path_factory.mktemp("candidate")
    (folder / f"{CANDIDATE}.py").write_text(SOURCE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        sys.modules.pop(CANDIDATE, None)
        import envprobe_candidate

        yield envprobe_candidate
        sys.modules.pop(CANDIDATE, None)
    isolation.shutdown()


CASE = {c.id: c for c in load_catalog(None)}["sleepstudy-intercept-REML"]


def test_the_harness_itself_can_import_sksparse() -> None:
    """The premise: the harness's environment holds scikit-sparse."""
    pytest.importorskip("sksparse")


def test_a_candidate_with_its_own_python_sees_only_its_environment(envs, probe) -> None:
    python = envs["full"]
    rec = runner.fit_case(probe.EnvProbe(python), CASE, use_cache=False)
    assert rec["error"] is None, rec["error"]
    messages = rec["messages"]
    assert "sksparse: not importable" in messages
    prefix = Path(python).parent.parent
    assert f"prefix={prefix}" in messages
    harness_file = next(m for m in messages if m.startswith("harness="))
    assert Path(harness_file.partition("=")[2]).resolve() == \
        HOME / "__init__.py"  # this process's harness
    assert "data rows=180" in messages  # the worker loaded the case's data itself
    # and the same adapter without an interpreter of its own runs in the harness's environment
    here = runner.fit_case(probe.EnvProbe(None), CASE, use_cache=False)
    assert f"prefix={sys.prefix}" in here["messages"]


def test_the_data_given_are_the_cases_own_or_refused(envs, probe) -> None:
    """A DataFrame does not cross interpreters (pandas versions differ); the worker loads the
    case's data itself, so data other than the case's are refused, not silently replaced."""
    data = runner.case_data(CASE)
    rec = runner.fit_case(probe.EnvProbe(envs["full"]), CASE, data, use_cache=False)
    assert rec["error"] is None and "data rows=180" in rec["messages"]
    rec = runner.fit_case(probe.EnvProbe(envs["full"]), CASE, data.iloc[:10],
                          use_cache=False)
    assert rec["error"] and "not the case's own" in rec["error"]


def test_values_come_back_from_another_interpreter_as_plain_python(envs, probe) -> None:
    out = isolation.call("test-environments", f"{CANDIDATE}:numbers", python=envs["full"])
    assert out.kind == "ok", out.error
    assert out.value == {"x": 1.5, "a": [0, 1, 2], "n": 7, "t": (True,)}
    assert type(out.value["x"]) is float and type(out.value["n"]) is int
    assert type(out.value["t"][0]) is bool


def test_a_missing_requirement_is_named_with_the_interpreter(envs, probe) -> None:
    python = envs["no-yaml"]
    rec = runner.fit_case(probe.EnvProbe(python), CASE, use_cache=False)
    assert rec["error"] is not None
    assert "pyyaml" in rec["error"] and python in rec["error"]
    assert "Traceback" not in rec["error"]


def test_an_interpreter_that_does_not_exist_is_named(probe, tmp_path: Path) -> None:
    python = str(tmp_path / "no" / "bin" / "python")
    out = isolation.call("test-environments", f"{CANDIDATE}:numbers", python=python)
    assert out.kind == "crashed" and python in str(out.error)


def test_a_module_missing_in_a_call_is_named_with_the_interpreter(envs, probe) -> None:
    """Past the worker's start: a module the target imports (here scipy, which the harness's
    peer adapters need through mixedref) is named with the interpreter and its environment."""
    python = envs["full"]
    out = isolation.call("test-environments", "scipy.special:expit", 0.0, python=python)
    assert out.kind == "exception"
    assert "'scipy'" in out.error and python in out.error and "pip install scipy" in out.error


def test_the_folder_of_links_goes_with_its_process_or_after_it(tmp_path: Path) -> None:
    """shutdown() removes this process's folder of links; one left by a process that ended
    without its exit handlers (killed) is removed when the next is made."""
    import os
    import tempfile

    isolation.shutdown()
    stale = Path(tempfile.gettempdir()) / f"{isolation._LINKS_PREFIX}999999999-test"
    stale.mkdir(exist_ok=True)
    (stale / "harness").symlink_to(tmp_path, target_is_directory=True)
    folder = Path(isolation.harness_path())
    assert not stale.exists() and tmp_path.is_dir()  # the link went, not what it points to
    assert sorted(p.name for p in folder.iterdir()) == ["harness", "mixedref"]
    assert (folder / "harness").resolve() == HOME
    assert folder.name.startswith(f"{isolation._LINKS_PREFIX}{os.getpid()}-")
    isolation.shutdown()
    assert not folder.exists()
