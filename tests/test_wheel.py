"""The built wheel is the product: build it, install it in a fresh virtual environment outside
the repository, and run the gate there the way a package's CI would (recorded lme4 answers, no
R): a right implementation passes, a 1%-wrong one fails naming the quantity, a typo is a usage
error. Also: the library alone installs and fits without the harness's dependencies.

The environments are made with uv where it is installed (its cache makes a repeated install take
seconds), else with venv and pip. Marked slow: about a minute on a cold cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

#: the library's own requirements: nothing for the harness, nothing that needs a C compiler
LIBRARY_REQUIRES = {"numpy", "scipy", "pandas", "nlopt", "threadpoolctl"}

#: a right candidate, written as a user would: mixedref's estimates in the record's fields
RIGHT = """
import mixedref


def fit(formula, data, REML):
    m = mixedref.lmer(formula, data, REML=REML)
    return {"fixef": m.fixef.to_dict(), "fixef_se": m.se.to_dict(), "sigma": m.sigma,
            "varcorr": m.varcorr.to_dict("records"), "theta": list(m.theta),
            "loglik": m.loglik, "objective": m.objective}
"""

#: the same, with every fixed effect 1% too large
WRONG = """
from rightpkg import fit as right


def fit(formula, data, REML):
    rec = right(formula, data, REML)
    rec["fixef"] = {k: v * 1.01 for k, v in rec["fixef"].items()}
    return rec
"""


def _uv() -> str | None:
    here = Path(sys.executable).parent / "uv"
    return str(here) if here.exists() else shutil.which("uv")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _make_env(where: Path, wheel: Path, extra: str = "") -> Path:
    """A fresh virtual environment at ``where`` with the wheel (and ``extra``) installed from
    the registries; returns its python."""
    uv = _uv()
    python = where / "bin" / "python"
    target = f"{wheel}{extra}"
    if uv:
        steps = [[uv, "venv", "-q", "--python", sys.executable, str(where)],
                 [uv, "pip", "install", "-q", "--python", str(python), target]]
    else:
        steps = [[sys.executable, "-m", "venv", str(where)],
                 [str(python), "-m", "pip", "install", "-q", target]]
    for step in steps:
        out = _run(step, where.parent)
        assert out.returncode == 0, f"{' '.join(step)}:\n{out.stdout}\n{out.stderr}"
    return python


@contextlib.contextmanager
def _built_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A folder ``name`` shared by every pytest-xdist worker of this run (the parent of the
    workers' base temporary folders), held under an exclusive lock: the first worker to take
    it builds, the others find what it built (a ``done`` file) and reuse it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_wheel(base: Path) -> Path:
    """The wheel built from a copy of the tracked files (the repository is left as it was)."""
    src = base / "src"
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                 ROOT).stdout.split("\0")
    if not any(files):  # not a git checkout: copy the tree as it is
        shutil.copytree(ROOT, src, symlinks=True,
                        ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__"))
    else:
        for name in filter(None, files):
            dest = src / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / name).is_symlink():
                dest.symlink_to(os.readlink(ROOT / name))
            elif (ROOT / name).exists():
                shutil.copy2(ROOT / name, dest)
    out = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"),
                str(src)], base)
    assert out.returncode == 0, out.stdout + out.stderr
    (built,) = (base / "dist").glob("mixedref-*.whl")
    return built


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once per run (under pytest-xdist, by the first worker that needs it)."""
    with _built_once(tmp_path_factory, "mixedref-wheel") as base:
        if not (base / "done").exists():
            built = _build_wheel(base)
            (base / "done").write_text(built.name)
        return base / "dist" / (base / "done").read_text()


@pytest.fixture(scope="session")
def gate_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a fresh environment with mixedref[harness], a folder outside the repository
    holding a right and a wrong candidate), made once per run like the wheel."""
    with _built_once(tmp_path_factory, "mixedref-gate") as base:
        work = base / "ci"
        if not (base / "done").exists():
            _make_env(base / "venv", wheel, "[harness]")
            work.mkdir(exist_ok=True)
            (work / "rightpkg.py").write_text(textwrap.dedent(RIGHT))
            (work / "wrongpkg.py").write_text(textwrap.dedent(WRONG))
            (base / "done").write_text("")
        return base / "venv" / "bin" / "python", work


def _gate(python: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest --pyargs harness ARGS`` from ``work``, as a package's CI runs it:
    no R (no rpy2 in that environment), the candidate importable from the folder."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "PYTHON", "MIXEDREF", "VIRTUAL_ENV", "COV_"))}
    env["PYTHONPATH"] = str(work)
    return _run([str(python), "-m", "pytest", "--pyargs", "harness", "-p", "no:cacheprovider",
                 *args], work, env)


def test_wheel_holds_every_package_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(ROOT)) for p in ROOT.glob("harness/**/__init__.py")}
    packages |= {str(p.parent.relative_to(ROOT)) for p in ROOT.glob("mixedref/**/__init__.py")}
    for pkg in packages:
        assert f"{pkg}/__init__.py" in names, f"package {pkg} is not in the wheel"
    tracked = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "harness",
                      "r_scripts"], ROOT).stdout.split()
    for name in tracked:
        if name.endswith(".py") or (ROOT / name).is_symlink():
            continue
        shipped = name if name.startswith("harness/") else "harness/" + name
        assert shipped in names, f"{name} is not in the wheel"


def test_wheel_requires_only_the_library_s_dependencies(wheel: Path) -> None:
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))).decode()
    required = set()
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            name = line.split(":", 1)[1].strip()
            required.add(name.split(";")[0].split("[")[0].split("<")[0].split(">")[0]
                         .split("=")[0].split("!")[0].strip().lower())
    assert required == LIBRARY_REQUIRES


def test_library_alone_fits_without_pytest(wheel: Path, tmp_path: Path) -> None:
    python = _make_env(tmp_path / "venv", wheel)
    code = ("import sys, numpy as np, pandas as pd, mixedref\n"
            "assert 'pytest' not in sys.modules and 'yaml' not in sys.modules\n"
            "rng = np.random.default_rng(1)\n"
            "g = np.repeat(np.arange(20), 5)\n"
            "y = rng.normal(size=20)[g] + rng.normal(size=100)\n"
            "m = mixedref.lmer('y ~ 1 + (1 | g)', pd.DataFrame({'y': y, 'g': g.astype(str)}))\n"
            "print('sigma', m.sigma)\n"
            "i = np.arange(16200)\n"  # two crossed factors of ~8,100 levels: beyond dense
            "big = pd.DataFrame({'y': rng.normal(size=16200), 'a': (i % 8100).astype(str), "
            "'b': (i * 37 % 8099).astype(str)})\n"
            "try:\n"
            "    mixedref.lmer('y ~ 1 + (1 | a) + (1 | b)', big)\n"
            "except mixedref.MixedrefError as exc:\n"
            "    print('refused:', exc)\n")
    out = _run([str(python), "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("sigma ")
    refused = out.stdout.split("refused: ", 1)[1]
    assert "pip install 'mixedref[sparse]'" in refused and "8099 effects" in refused
    assert "GiB" in refused


def test_installed_gate_passes_a_right_implementation(gate_env: tuple[Path, Path]) -> None:
    python, work = gate_env
    out = _gate(python, work, "--impl", "rightpkg:fit", "-k", "sleepstudy")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "recorded lme4 answers" in out.stdout
    assert "rightpkg:fit compared 12 of 12" in out.stdout, out.stdout[-3000:]


def test_installed_gate_fails_a_wrong_implementation_naming_the_quantity(
        gate_env: tuple[Path, Path]) -> None:
    python, work = gate_env
    out = _gate(python, work, "--impl", "wrongpkg:fit", "-k", "sleepstudy-intercept")
    assert out.returncode == 1, out.stdout[-4000:] + out.stderr[-2000:]
    assert "fixef[(Intercept)]" in out.stdout
    assert "sleepstudy-intercept-REML [wrongpkg:fit]: disagreed" in out.stdout


def test_installed_gate_refuses_a_typo(gate_env: tuple[Path, Path]) -> None:
    python, work = gate_env
    out = _gate(python, work, "--impl", "rigthpkg:fit", "-k", "sleepstudy")
    assert out.returncode == 4, out.stdout[-3000:] + out.stderr[-2000:]
    assert "rigthpkg:fit" in out.stderr and "No module named 'rigthpkg'" in out.stderr
