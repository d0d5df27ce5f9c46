"""The plugin is inert unless asked: a project that merely has mixedref installed (so its
``pytest11`` entry point loads) gets the same pytest output, environment and scheduling with
the plugin as without it (``-p no:mixedref-harness``), also under pytest-xdist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

THROWAWAY_TEST = '''
import json, os

def test_one():
    assert 1 + 1 == 2

def test_two():
    from threadpoolctl import threadpool_info
    seen = {"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "blas_threads": sorted({i["num_threads"] for i in threadpool_info()
                                    if i.get("user_api") == "blas"})}
    path = os.environ["INERT_OUT"] + "." + os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(path, "w") as fh:
        json.dump(seen, fh)
'''


def _normalize(text: str) -> str:
    """Timings aside: durations, and the header line that lists the loaded plugins."""
    text = re.sub(r"\b\d+(\.\d+)?s\b", "<t>", text)
    text = re.sub(r"\(\d+:\d\d:\d\d\)", "", text)
    text = re.sub(r"={3,}", "===", text)  # the rule's width follows the timing's length
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("plugins:"))


def _run(project: Path, out: Path, *extra: str) -> tuple[str, list[dict]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "OPENBLAS_NUM")) and k != "INERT_OUT"}
    env["INERT_OUT"] = str(out)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *extra],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = sorted(p.read_text() for p in out.parent.glob(out.name + ".*"))
    return _normalize(proc.stdout + proc.stderr), [json.loads(s) for s in seen]


@pytest.mark.parametrize("mode", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_an_unrelated_project_sees_no_difference(tmp_path: Path, mode: tuple[str, ...]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_throwaway.py").write_text(THROWAWAY_TEST)
    with_out, with_env = _run(project, tmp_path / "with", *mode)
    without_out, without_env = _run(project, tmp_path / "without", *mode,
                                    "-p", "no:mixedref-harness")
    assert "mixedref" not in with_out
    assert with_out == without_out
    assert with_env == without_env
