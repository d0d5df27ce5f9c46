"""Reports that survive interruption (harness.core.journal): SIGTERM and SIGINT mid-run leave a
report
of the finished items whose header says it is partial, and a non-zero exit; ``--resume`` completes
it; a second run into the same folder is refused naming the first; an unwritable folder is refused
before any fit; an interrupted rerun leaves no stale file of the previous report; a crashed item is
in the report as crashed.

The runs are subprocesses on the four Dyestuff items (``--reference=recorded``) with a slow fake
implementation (lme4's recorded answer after SLOW_SECONDS), so a signal can be sent after the first
item finished (the journal DIR.partial/records.jsonl has a line) and before the last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import statsmodels.regression.mixed_linear_model  # noqa: F401

# imported before the subprocesses and pytester's in-process runs (see tests/test_plugin.py)
import harness.__main__  # noqa: F401
import harness.adapters  # noqa: F401
import harness.core.catalog  # noqa: F401
import harness.pytest_plugin.plugin  # noqa: F401
from harness.core import journal as jn

pytest_plugins = ["pytester"]

XDIST_VARS = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")

SLOW = '''
import copy, os, time
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog, load_data

_CASES = [c for c in load_catalog() if c.dataset in ("Dyestuff", "Dyestuff2")]

def _case(formula, data, REML):  # Dyestuff and Dyestuff2 share their formula: tell by the data
    for c in _CASES:
        if c.formula == formula and c.REML == bool(REML) and \
                abs(load_data(c)["Yield"].mean() - data["Yield"].mean()) < 1e-9:
            return c
    raise NotImplementedError("only the Dyestuff cases")

def fit(formula, data, REML):
    marker = os.environ.get("SLOW_MARKER")
    if marker:
        with open(marker, "a") as fh:
            fh.write(formula + "\\n")
    time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    rec = copy.deepcopy(Lme4Recorded().fit(_case(formula, data, REML), None))
    for key in ("impl", "case_id"):
        rec.pop(key)
    return rec
'''

#: a resumed run is not interrupted, so its fits need not be slow (still marked in fits.txt)
QUICK = {"SLOW_SECONDS": "0"}

SELECT = "Dyestuff and not test_fit"  # Dyestuff and Dyestuff2, REML and ML: four items
PLANNED = 4
FILES = {"report.json", "report.md", "index.html"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in XDIST_VARS and k != jn.RESUME_ENV}
    env["SLOW_MARKER"] = str(tmp_path / "fits.txt")
    env.update(extra)
    return env


def _pytest_args(report: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "--pyargs", "harness", "--reference=recorded",
            "-p", "no:cacheprovider", "-p", "no:randomly", "-k", SELECT, "--impl", "slow_r:fit",
            "--report", str(report)]


def _cli_args(report: Path) -> list[str]:
    return [sys.executable, "-m", "harness", "report", "--out", str(report), "--reference",
            "recorded", "--impl", "slow_r:fit", "-k", "Dyestuff", "--no-allfit"]


def _pytest_inprocess(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                      tmp_path: Path, report: Path) -> pytest.RunResult:
    """``_pytest_args(report)`` run in this process, for the refusals at configure (before any
    collection or fit): the same plugin code without the interpreter start and imports of a
    subprocess. A fit, were one to run, would still be marked in tmp_path/fits.txt."""
    for var in (*XDIST_VARS, jn.RESUME_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLOW_MARKER", str(tmp_path / "fits.txt"))
    (tmp_path / "slow_r.py").write_text(SLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    return pytester.runpytest_inprocess(*_pytest_args(report)[3:])


def _cli_inprocess(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   tmp_path: Path, report: Path) -> tuple[int, str]:
    """``_cli_args(report)`` through ``harness.__main__.main`` in this process, for its
    refusals before any fit: (exit code, standard error)."""
    from harness.__main__ import main

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(_cli_args(report)[3:])
    return code, capsys.readouterr().err


def _default_sigint() -> None:  # the child handles SIGINT even when this process ignores it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], tmp_path: Path, **env: str) -> subprocess.Popen:
    (tmp_path / "slow_r.py").write_text(SLOW)
    return subprocess.Popen(args, cwd=tmp_path, env=_env(tmp_path, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _wait_for(predicate, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def _journal_lines(report: Path) -> int:
    try:
        return len((jn.staging(report) / jn.RECORDS).read_text().splitlines())
    except OSError:
        return 0


def _interrupt_after_first_item(proc: subprocess.Popen, report: Path,
                                sig: int) -> tuple[int, str, str]:
    _wait_for(lambda: _journal_lines(report) >= 1 or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _assert_partial(report: Path, reason: str) -> dict:
    assert {p.name for p in report.iterdir()} == FILES
    doc = json.loads((report / "report.json").read_text())
    comp = doc["completeness"]
    assert comp["interrupted"] is True and comp["complete"] is False, comp
    assert comp["planned"] == PLANNED and 1 <= comp["finished"] < PLANNED, comp
    assert comp["reason"] == reason
    # complete for the finished items: each journaled item is in the report with its verdict
    done = jn.read_records(report)
    assert len(done) == comp["finished"]
    cases = {c["case"]["id"]: c for c in doc["cases"]}
    for entry in done.values():
        assert cases[entry["case"]]["comparisons"]["slow_r:fit"]["verdict"] == "agreed"
    header = f"interrupted after {comp['finished']} of {PLANNED} items"
    assert header in comp["text"]
    md = (report / "report.md").read_text()
    assert md.splitlines()[2].startswith(f"**PARTIAL REPORT: {header}")
    page = (report / "index.html").read_text()
    assert 'id="completeness"' in page and header in page
    assert page.index('id="completeness"') < page.index('id="summary"')
    return doc


def _assert_complete(report: Path) -> dict:
    assert {p.name for p in report.iterdir()} == FILES
    doc = json.loads((report / "report.json").read_text())
    comp = doc["completeness"]
    assert comp["complete"] is True and comp["finished"] == comp["planned"] == PLANNED, comp
    assert len(doc["cases"]) == PLANNED
    assert doc["counts"] == {"agreed": PLANNED}
    assert "PARTIAL" not in (report / "report.md").read_text()
    assert "PARTIAL" not in (report / "index.html").read_text()
    assert not jn.staging(report).exists()  # the journal is gone after a complete report
    return doc


# ----------------------------------------------------------------------------- pytest --report


def test_sigterm_mid_run_leaves_a_partial_report_and_resume_completes_it(
        tmp_path: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Also: while the run holds its folder, a second run into it is refused naming the first
    (pytest's and the command's, at configure: in this process), before the SIGTERM; formerly
    test_a_second_run_into_the_same_folder_is_refused_naming_the_first, with a run of its own."""
    report = tmp_path / "rep"
    proc = _start(_pytest_args(report), tmp_path)
    try:
        _wait_for(lambda: (jn.staging(report) / jn.LOCK).exists() or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        second = _pytest_inprocess(pytester, monkeypatch, tmp_path, report)
        assert second.ret == pytest.ExitCode.USAGE_ERROR, second.stdout.str()[-2000:]
        err = [ln for ln in second.stderr.lines if ln.strip()]
        assert len(err) == 1, err
        assert f"report folder {report} is in use by pid {proc.pid} (pytest " in err[0]
        assert "started " in err[0]
        code, cli_err = _cli_inprocess(capsys, monkeypatch, tmp_path, report)
        assert code == 2 and f"in use by pid {proc.pid}" in cli_err
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    rc, out, err = _interrupt_after_first_item(proc, report, signal.SIGTERM)
    assert rc == pytest.ExitCode.INTERRUPTED, (out[-3000:], err[-3000:])
    assert "PARTIAL report written to" in out, out[-3000:]
    assert "INTERNALERROR" not in out
    finished = _assert_partial(report, "signal SIGTERM")["completeness"]["finished"]
    state = jn.read_state(report)
    assert state["status"] == "interrupted" and state["planned"] == PLANNED
    assert not (jn.staging(report) / jn.LOCK).exists()
    fitted = (tmp_path / "fits.txt").read_text().splitlines()
    # a stale lock (a pid that is no more) does not stop the resumed run: it is taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (jn.staging(report) / jn.LOCK).write_text(json.dumps(
        {"pid": dead.pid, "host": os.uname().nodename, "started": time.time(),
         "command": "pytest (gone)"}))
    resumed = subprocess.run([sys.executable, "-m", "harness", "report", "--resume",
                              str(report)], cwd=tmp_path, env=_env(tmp_path, **QUICK),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, (resumed.stdout[-3000:], resumed.stderr[-3000:])
    assert f"took over the stale lock of pid {dead.pid}" in resumed.stderr
    _assert_complete(report)
    # only the unfinished items ran again
    refit = (tmp_path / "fits.txt").read_text().splitlines()[len(fitted):]
    assert len(refit) == PLANNED - finished, (fitted, refit)


def test_sigint_mid_rerun_replaces_the_old_report_whole(tmp_path: Path) -> None:
    report = tmp_path / "rep"
    report.mkdir()  # a previous run's report, and a file of an even older one
    (report / "index.html").write_text("<html>OLD REPORT</html>")
    (report / "stale.txt").write_text("old")
    proc = _start(_pytest_args(report), tmp_path)
    rc, out, err = _interrupt_after_first_item(proc, report, signal.SIGINT)
    assert rc == pytest.ExitCode.INTERRUPTED, (out[-3000:], err[-3000:])
    _assert_partial(report, "signal SIGINT")  # exactly the three new files
    assert "OLD REPORT" not in (report / "index.html").read_text()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".rep.")]
    assert not leftovers  # no temporary or backup folder stays beside it


def test_a_folder_that_is_not_a_report_is_refused_not_replaced(
        tmp_path: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    for folder in (project, project / "src"):
        (folder / "keep.txt").write_text("keep")
        result = _pytest_inprocess(pytester, monkeypatch, tmp_path, folder)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
        assert "give a new folder or a previous report's" in result.stderr.str()
        assert (folder / "keep.txt").read_text() == "keep"
    assert not (tmp_path / "fits.txt").exists()


@pytest.mark.parametrize("kind", ["parent-is-a-file", "dir-is-a-file"])
def test_an_unwritable_report_folder_is_refused_before_any_fit(
        tmp_path: Path, kind: str, pytester: pytest.Pytester,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    report = blocker / "rep" if kind == "parent-is-a-file" else blocker
    result = _pytest_inprocess(pytester, monkeypatch, tmp_path, report)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    err = [ln for ln in result.stderr.lines if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"ERROR: --report {report}: "), err
    code, cli_err = _cli_inprocess(capsys, monkeypatch, tmp_path, report)
    assert code == 2 and f"--out {report}: " in cli_err, cli_err
    assert not (tmp_path / "fits.txt").exists()  # nothing was fitted


# ----------------------------------------------------------------------------- python -m harness


def test_cli_sigterm_leaves_a_partial_report_and_resume_completes_it(tmp_path: Path) -> None:
    report = tmp_path / "rep"
    proc = _start(_cli_args(report), tmp_path)
    rc, out, err = _interrupt_after_first_item(proc, report, signal.SIGTERM)
    assert rc != 0, err[-3000:]
    assert "PARTIAL report" in err
    _assert_partial(report, "signal SIGTERM")
    before = len(jn.read_records(report))
    resumed = subprocess.run([sys.executable, "-m", "harness", "report", "--resume",
                              str(report)], cwd=tmp_path, env=_env(tmp_path, **QUICK),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after {before} finished item(s)" in resumed.stderr
    _assert_complete(report)


# ----------------------------------------------------------------------------- crashed, incomplete

CRASH_PLUGIN = """
import os

def pytest_runtest_call(item):
    if os.environ.get("PYTEST_XDIST_WORKER") and "Dyestuff-intercept-ML[" in item.nodeid:
        os._exit(3)  # the xdist worker dies while running this item
"""


def test_a_crashed_xdist_worker_item_is_in_the_report_as_crashed(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    report = tmp_path / "rep"
    (tmp_path / "crash_plugin.py").write_text(CRASH_PLUGIN)
    args = [sys.executable, "-m", "pytest", "--pyargs", "harness", "--reference=recorded",
            "-p", "no:cacheprovider", "-p", "crash_plugin", "-k", SELECT, "--impl", "mixedref",
            "-n", "2", "--report", str(report)]
    proc = subprocess.run(args, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout[-3000:]
    assert "crashed while running" in proc.stdout
    doc = json.loads((report / "report.json").read_text())
    comp = doc["completeness"]
    assert comp["crashed"] == 1 and comp["planned"] == PLANNED and not comp["complete"], comp
    assert comp["text"] == f"incomplete: {PLANNED} of {PLANNED} items finished; 1 item crashed"
    cases = {c["case"]["id"]: c for c in doc["cases"]}
    assert set(cases) == {"Dyestuff-intercept-REML", "Dyestuff-intercept-ML",
                          "Dyestuff2-intercept-REML", "Dyestuff2-intercept-ML"}
    crashed = cases["Dyestuff-intercept-ML"]
    assert crashed["verdict"] == "failed" and crashed["errors"]["mixedref"]["crashed"] is True
    md = (report / "report.md").read_text()
    assert "1 item crashed" in md.splitlines()[2] and "mixedref (crashed)" in md
    assert "1 item crashed" in (report / "index.html").read_text()


def _entry(case: str, outcome: str, **kw: object) -> dict:
    return {"case": case, "impl": "mine", "reference": "lme4-recorded", "outcome": outcome,
            "verdict": None, "headline": kw.pop("headline", ""), "data": None, **kw}


def test_a_crashed_item_is_in_the_report_as_crashed_and_the_header_says_so(
        tmp_path: Path) -> None:
    from harness.commands.report import write_report
    from harness.core.catalog import load_catalog
    from harness.pytest_plugin.summary import results_for_report

    cases = {c.id: c for c in load_catalog()}
    entries = {"a": _entry("Dyestuff-intercept-ML", "error", crashed=True,
                           headline="worker 'gw0' crashed while running 'a'"),
               "b": _entry("Dyestuff-intercept-REML", "skipped", headline="not supported")}
    comp = jn.completeness(entries, 3, False, None)
    assert comp["text"] == "incomplete: 1 of 3 items have no result; 1 item crashed"
    results = results_for_report(entries, cases)
    assert [r["case"].id for r in results] == ["Dyestuff-intercept-ML"]
    paths = write_report(results, tmp_path / "rep", completeness=comp, allfit=False,
                         environment={})
    doc = json.loads(paths["json"].read_text())
    (case,) = doc["cases"]
    assert case["verdict"] == "failed" and case["errors"]["mine"]["crashed"] is True
    assert "mine (crashed)" in paths["md"].read_text()
    assert "PARTIAL REPORT: incomplete: 1 of 3 items have no result; 1 item crashed" in \
        paths["md"].read_text()
    assert "mine (crashed)" in paths["html"].read_text()


def test_the_journal_keeps_finished_items_and_ignores_a_torn_line(tmp_path: Path) -> None:
    report = tmp_path / "rep"
    j = jn.Journal(report, command="test", argv=["x"])
    j.set_planned(2)
    j.append("n1", _entry("c1", "agreed"))
    j.close()
    with open(jn.staging(report) / jn.RECORDS, "a") as fh:
        fh.write('{"nodeid": "n2", "case": ')  # killed mid-write
    assert list(jn.read_records(report)) == ["n1"]
    again = jn.Journal(report, command="test", resume=True)
    assert list(again.previous) == ["n1"] and again.state["argv"] == ["x"]
    again.append("n3", _entry("c3", "agreed"))  # on a line of its own, after the torn one
    again.close()
    assert list(jn.read_records(report)) == ["n1", "n3"]
    fresh = jn.Journal(report, command="test", argv=["y"])  # a new run starts a new journal
    assert fresh.previous == {} and jn.read_records(report) == {}
    fresh.discard()
