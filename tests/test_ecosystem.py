"""harness/commands/ecosystem.py's environments: one virtual environment per PyPI peer.

The peers' requirements live in one place (harness.adapters.peers.REQUIREMENTS), which
pyproject.toml's ``peers`` extra repeats; the environment of a peer is that alone plus what the
harness's worker needs there; it is cached by a hash of both; the run passes each peer's
interpreter to the harness (``--impl-python``) and states each environment in the league.
The real build (uv, PyPI) is the one slow test at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.adapters.peers import HARNESS_REQUIREMENTS, PEERS, REQUIREMENTS
from harness.commands import ecosystem
from harness.core import isolation, runner

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    import re

    return re.split(r"[=<>!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_peer_has_its_requirements_and_pyproject_repeats_them() -> None:
    assert set(REQUIREMENTS) == set(PEERS)
    listed = [r for reqs in REQUIREMENTS.values() for r in reqs]
    assert sorted(_pyproject()["project"]["optional-dependencies"]["peers"]) == sorted(listed)
    for name, reqs in REQUIREMENTS.items():
        assert ecosystem._pinned(reqs[0]), f"{name}'s release is pinned first"


def test_the_harness_requirements_cover_the_worker_and_mixedref() -> None:
    names = {_name(r) for r in HARNESS_REQUIREMENTS}
    assert set(isolation.WORKER_REQUIREMENTS.values()) <= names
    assert {_name(r) for r in _pyproject()["project"]["dependencies"]} <= names


def test_an_environment_folder_is_named_by_peer_version_and_a_hash(tmp_path: Path,
                                                                   monkeypatch) -> None:
    folder = ecosystem.env_folder("glmm", tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("glmm-0.6.2-")
    assert ecosystem.env_folder("glmm", tmp_path) == folder  # stable
    monkeypatch.setitem(REQUIREMENTS, "glmm", ("glmm==0.6.3",))
    assert ecosystem.env_folder("glmm", tmp_path) != folder
    assert ecosystem.env_root(None).parts[-2:] == ("mixedref-harness", "envs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ecosystem.env_root(None) == tmp_path / "mixedref-harness" / "envs"
    assert ecosystem.env_root(tmp_path / "x") == tmp_path / "x"


def test_pips_configuration_becomes_uvs_options() -> None:
    config = ("global.cert='/etc/ssl/certs/ca.crt'\n"
              "global.constraint='/etc/xdg/pip/constraints.txt'\n"
              "global.extra-index-url='file:///a/simple file:///b/simple'\n"
              "global.find-links='/opt/wheels'\n"
              ":env:.find-links='/opt/wheels'\n"
              ":env:.default-timeout='180'\n")
    assert ecosystem.uv_options_from_pip(config) == [
        "--constraint", "/etc/xdg/pip/constraints.txt", "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple", "--find-links", "/opt/wheels",
        "--index-strategy", "unsafe-best-match"]
    assert ecosystem.uv_options_from_pip("") == []


class FakeInstaller:
    """Creates a folder with an executable bin/python; "installs" into a list."""

    built: list[str] = []

    def __init__(self) -> None:
        self.installed: list[str] = []

    def describe(self) -> str:
        return "fake 1.0"

    def create(self, folder: Path) -> str:
        (folder / "bin").mkdir(parents=True)
        python = folder / "bin" / "python"
        python.symlink_to(sys.executable)
        FakeInstaller.built.append(str(folder))
        return str(python)

    def install(self, python: str, requirements, what: str) -> None:
        for r in requirements:
            if r.startswith("glmm"):
                self.installed += ["glmm==0.6.2", "numpy==2.0.0"]
            else:
                self.installed.append(_name(r) + "==1.0")

    def freeze(self, python: str) -> list[str]:
        return sorted(set(self.installed))


def test_a_peers_environment_is_built_once_and_says_what_it_holds(tmp_path: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(ecosystem, "_Installer", FakeInstaller)
    FakeInstaller.built = []
    manifest = ecosystem.peer_environment("glmm", tmp_path)
    assert manifest["requirements"] == ["glmm==0.6.2"]
    assert manifest["peer_installed"] == ["glmm==0.6.2", "numpy==2.0.0"]
    assert "glmm==0.6.2" in manifest["installed"] and "pyyaml==1.0" in manifest["installed"]
    assert "numpy==2.0.0" in manifest["installed"]  # what the peer pulled in is kept
    assert "pyyaml==1.0" in manifest["added_for_harness"]
    assert "glmm==0.6.2" not in manifest["added_for_harness"]
    assert ecosystem.peer_environment("glmm", tmp_path) == manifest  # cached
    assert len(FakeInstaller.built) == 1
    ecosystem.peer_environment("glmm", tmp_path, rebuild=True)
    assert len(FakeInstaller.built) == 2
    summary = ecosystem.environment_summary(manifest)
    assert str(tmp_path) not in json.dumps(summary)  # no machine's paths in the league


def test_a_failed_build_leaves_no_folder_and_is_a_reason(tmp_path: Path, monkeypatch) -> None:
    class Failing(FakeInstaller):
        def install(self, python, requirements, what):
            raise ecosystem.EnvBuildError(f"{what} failed: no such release")

    monkeypatch.setattr(ecosystem, "_Installer", Failing)
    envs, failed = ecosystem.environments(["glmm", "mixedref"], tmp_path)
    assert envs == {} and "no such release" in failed["glmm"]
    assert not ecosystem.env_folder("glmm", tmp_path).exists()


def test_the_run_gives_each_peer_its_interpreter_and_states_the_environments(
        tmp_path: Path, monkeypatch) -> None:
    manifest = {"python": "/envs/glmm/bin/python", "requirements": ["glmm==0.6.2"],
                "installed": ["glmm==0.6.2", "numpy==2.0.0", "pyyaml==6.0"],
                "added_for_harness": ["pyyaml==6.0"], "changed_for_harness": [],
                "harness_requirements": list(HARNESS_REQUIREMENTS), "python_version": "3.11.7",
                "installer": "uv 0.13"}
    monkeypatch.setattr(ecosystem, "environments",
                        lambda names, root, rebuild: ({"glmm": manifest}, {}))
    monkeypatch.setattr(ecosystem, "installed", lambda names: (list(names), {}))
    seen = {}

    def fake_run(cmd, env, check):
        seen["cmd"] = cmd
        results = Path(cmd[cmd.index("--ecosystem-results") + 1])
        results.write_text(json.dumps([
            {"case": "a-x-REML", "impl": "glmm", "outcome": "agreed", "headline": "",
             "versions": {"glmm": "0.6.2"}},
            {"case": "a-x-REML", "impl": "mixedref", "outcome": "agreed", "headline": ""}]))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(ecosystem.subprocess, "run", fake_run)
    league = ecosystem.run(tmp_path, impls=["mixedref", "glmm"])
    cmd = seen["cmd"]
    assert cmd[cmd.index("--impl-python") + 1] == "glmm=/envs/glmm/bin/python"
    assert cmd.count("--impl-python") == 1  # mixedref runs in the harness's environment
    assert league["environments"]["mixedref"] == ecosystem.HARNESS_ENV
    assert league["environments"]["glmm"]["installed"] == manifest["installed"]
    assert "/envs/glmm" not in json.dumps(league)
    assert "mixedref" in league["harness_environment"]["implementations"]
    page = (tmp_path / "index.html").read_text()
    assert "Environments" in page and "numpy==2.0.0" in page
    assert "the harness&#x27;s own environment" in page
    text = ecosystem.readme_block(league)
    assert "glmm ran in a virtual environment of its own" in text and "patsy" in text
    assert "mixedref ran in the harness's own environment" in text


@pytest.mark.slow
def test_a_real_peer_environment_fits_without_the_harness_packages(tmp_path: Path) -> None:
    """glmm's environment built for real (uv or pip: PyPI) fits a case there, and sees neither
    scikit-sparse nor statsmodels of the harness's environment."""
    from harness.adapters import get_adapter
    from harness.core.catalog import load_catalog

    manifest = ecosystem.peer_environment("glmm", tmp_path)
    names = {_name(line) for line in manifest["installed"]}
    assert "glmm" in names and "scikit-sparse" not in names and "statsmodels" not in names
    out = isolation.call("test-ecosystem", "importlib.util:find_spec", "sksparse",
                         python=manifest["python"])
    assert out.kind == "ok" and out.value is None
    adapter = get_adapter("glmm")
    case = {c.id: c for c in load_catalog()}["Dyestuff-intercept-REML"]
    try:
        adapter.python = manifest["python"]
        rec = runner.fit_case(adapter, case, use_cache=False)
    finally:
        adapter.python = None
        isolation.shutdown()
    assert rec["error"] is None, rec["error"]
    assert rec["versions"].get("glmm") == "0.6.2"


def test_a_peer_that_fitted_nothing_is_listed_with_its_pinned_release() -> None:
    """edi-kernels declines every case, so no record carries its version: the league takes the
    release its environment pins (the first requirement) instead of printing '?'."""
    from harness.commands import ecosystem

    league = {"implementations": [{"name": "edi-kernels", "version": None},
                                  {"name": "mixedref", "version": "0.1.0"}],
              "environments": {"edi-kernels": {"requirements": ["edi-kernels==1.0.2"]},
                               "mixedref": "harness"}}
    ecosystem._versions_from_pins(league)
    assert [r["version"] for r in league["implementations"]] == ["1.0.2", "0.1.0"]
