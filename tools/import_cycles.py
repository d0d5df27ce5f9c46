"""List the import edges between a package's own modules and the cycles they form.

    python tools/import_cycles.py [mixedref] [harness] [--edges] [--top-level] [--runtime]

Reads the source with :mod:`ast` (nothing is imported). Every ``import`` and ``from ... import``
counts, at module level or inside a function (a lazy import is still a dependency: the issue's
``fit <-> modular <-> profile`` runs through lazy ones); ``--top-level`` keeps only module-level
imports and ``--runtime`` drops those under ``if TYPE_CHECKING:``. ``from pkg import name`` is an
edge to ``pkg.name`` where that is a module, else to ``pkg`` (its ``__init__``). A cycle is a
strongly connected component of more than one module (or a module importing itself); for each,
one shortest cycle through its members is printed as an example. Exit status 1 when there is one.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` (both dotted module names) at ``line``."""

    source: str
    target: str
    line: int
    lazy: bool  # inside a function or class body
    type_checking: bool  # under ``if TYPE_CHECKING:``


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (``__init__`` as the package)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if all(p.isidentifier() for p in parts):
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, bool, bool]]:
    """(import statement, lazy, under TYPE_CHECKING) for every import in the tree."""
    def walk(node: ast.AST, lazy: bool, tc: bool) -> Iterator[tuple[ast.stmt, bool, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, lazy, tc
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                            | ast.Lambda):
                yield from walk(child, True, tc)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), lazy, True)
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), lazy, tc)
            else:
                yield from walk(child, lazy, tc)
    yield from walk(tree, False, False)


def edges(package: Path) -> list[Edge]:
    """The import edges between the package's own modules."""
    mods = modules(package)
    out = []
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for stmt, lazy, tc in _imports(tree):
            for target in _targets(stmt, name, is_pkg, mods):
                out.append(Edge(name, target, stmt.lineno, lazy, tc))
    return out


def _targets(stmt: ast.stmt, name: str, is_pkg: bool, mods: dict[str, Path]) -> Iterable[str]:
    """The package's modules an import statement in module ``name`` refers to."""
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            found = _longest_module(alias.name, mods)
            if found:
                yield found
        return
    assert isinstance(stmt, ast.ImportFrom)
    if stmt.level:
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        base = base[:len(base) - (stmt.level - 1)]
        origin = ".".join(base + ([stmt.module] if stmt.module else []))
    else:
        origin = stmt.module or ""
    for alias in stmt.names:
        sub = f"{origin}.{alias.name}"
        if sub in mods:
            yield sub
            continue
        found = _longest_module(origin, mods)
        if found:
            yield found


def _longest_module(dotted: str, mods: dict[str, Path]) -> str | None:
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in mods:
            return cand
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:  # recursion depth is bounded by the number of modules
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(out, key=lambda c: (-len(c), c))


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth-first), closed."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if w not in seen:
                    seen.add(w)
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start, start]


def graph_of(found: Iterable[Edge], top_level: bool = False, runtime: bool = False
             ) -> dict[str, set[str]]:
    """Adjacency sets of the edges kept by the filters."""
    graph: dict[str, set[str]] = {}
    for e in found:
        if (top_level and e.lazy) or (runtime and e.type_checking) or e.source == e.target:
            continue
        graph.setdefault(e.source, set()).add(e.target)
    return graph


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("packages", nargs="*", default=["mixedref"],
                    help="package folders (relative to the repository root): mixedref, harness")
    ap.add_argument("--edges", action="store_true", help="print every edge too")
    ap.add_argument("--top-level", action="store_true", help="ignore imports inside functions")
    ap.add_argument("--runtime", action="store_true", help="ignore imports under TYPE_CHECKING")
    args = ap.parse_args(argv)
    status = 0
    for pkg in args.packages:
        folder = Path(pkg) if Path(pkg).is_absolute() else ROOT / pkg
        if not (folder / "__init__.py").is_file():
            ap.error(f"{folder} is not a package (no __init__.py)")
        found = edges(folder)
        graph = graph_of(found, args.top_level, args.runtime)
        if args.edges:
            for e in sorted(found, key=lambda e: (e.source, e.target, e.line)):
                tag = " (lazy)" if e.lazy else ""
                tag += " (TYPE_CHECKING)" if e.type_checking else ""
                print(f"{e.source} -> {e.target}  line {e.line}{tag}")
        comps = cycles(graph)
        nedges = sum(len(v) for v in graph.values())
        print(f"{pkg}: {len(modules(folder))} modules, {nedges} edges, "
              f"{len(comps)} cycle(s)")
        for comp in comps:
            print(f"  {len(comp)} modules: {', '.join(comp)}")
            print(f"    e.g. {' -> '.join(shortest_cycle(graph, comp))}")
        status |= bool(comps)
    return status


if __name__ == "__main__":
    sys.exit(main())
