"""mixedref's modules import one another without cycles (tools/import_cycles.py), and the tool
finds the cycles it is meant to find."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "tools" /
                                                  "import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


tool = _tool()


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


@pytest.mark.parametrize("package", ["mixedref", "harness"])
def test_no_import_cycle(package: str) -> None:
    """Every import counts, lazy ones inside functions too: a lazy import is still a
    dependency of the module, and a cycle through one is still a cycle."""
    graph = tool.graph_of(tool.edges(ROOT / package))
    found = tool.cycles(graph)
    assert not found, f"import cycles in {package}: " + "; ".join(
        " -> ".join(tool.shortest_cycle(graph, c)) for c in found)


def test_the_tool_finds_lazy_relative_and_from_package_cycles(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "a.py": "from pkg.b import f\n",
        "b.py": "def f():\n    from . import c\n",  # lazy and relative: still an edge
        "c.py": "import pkg.a\n",
        "d.py": "from pkg import a\nfrom pkg.sub import x\n",
        "sub/__init__.py": "",
        "sub/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n",
    })
    found = tool.edges(pkg)
    graph = tool.graph_of(found)
    assert tool.cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.sub.x"]]
    assert tool.shortest_cycle(graph, ["pkg.a", "pkg.b", "pkg.c"]) == [
        "pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    assert tool.cycles(tool.graph_of(found, top_level=True)) == [["pkg.d", "pkg.sub.x"]]
    assert tool.cycles(tool.graph_of(found, runtime=True)) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert tool.main([str(pkg)]) == 1


def test_the_tool_passes_an_acyclic_package(tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    pkg = _package(tmp_path, {"a.py": "import pkg.b\nimport numpy\n", "b.py": "import os\n"})
    assert tool.main([str(pkg)]) == 0
    assert "pkg: 3 modules, 1 edges, 0 cycle(s)" in capsys.readouterr().out  # not numpy, os
