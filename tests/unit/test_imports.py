"""No import cycles inside the `fastgw` package.

The imports of every module are read with `ast`, not by importing it: module-level imports
and imports inside functions both count (a function-level import is a cycle put off until
the function runs, not a cycle removed). Imports under `if TYPE_CHECKING:` are left out: they
never run, and with `from __future__ import annotations` they only name types.

An import of `a.b.c` depends on `a.b.c`, and on the packages `a.b` and `a` as well where the
importing module is not inside them already (importing a submodule runs its packages'
`__init__` first).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "fastgw"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.file}:{self.line})"


def module_names(root: Path) -> dict[str, Path]:
    """Every module under the package folder `root`, by dotted name (compiled ones by their
    .pyx source: their Python imports are not followed, they import nothing of fastgw)."""
    modules = {}
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.pyx")]):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of `tree`, at any depth, except under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported(
    node: ast.Import | ast.ImportFrom, name: str, path: Path, modules: dict[str, Path]
) -> list[str]:
    """The dotted names an import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = _package_of(name, path).split(".")
        anchor = ".".join(package[: len(package) - node.level + 1])
        base = f"{anchor}.{base}" if base else anchor
    # `from package import sub` loads the submodule `sub`; `from module import attr` reads
    # an attribute of `module` itself.
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
        for alias in node.names
    ]


def import_edges(root: Path) -> list[Edge]:
    """Module -> module dependencies inside the package at `root`."""
    modules = module_names(root)
    edges: dict[tuple[str, str], Edge] = {}
    for name, path in modules.items():
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in _imports(tree):
            for dotted in _imported(node, name, path, modules):
                parts = dotted.split(".")
                for end in range(1, len(parts) + 1):
                    target = ".".join(parts[:end])
                    if target not in modules or target == name:
                        continue
                    # A module inside `target` runs while `target` is already imported.
                    if end < len(parts) and name.startswith(target + "."):
                        continue
                    if (name, target) not in edges:
                        relative = path.relative_to(root.parent).as_posix()
                        edges[name, target] = Edge(name, target, relative, node.lineno)
    return sorted(edges.values(), key=lambda edge: (edge.source, edge.target))


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) per strongly connected group of modules, Tarjan's way."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
        graph.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph[node]:
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(sorted(group)[0], group, graph) for group in groups]


def _cycle_in(start: str, group: set[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """The shortest path from `start` back to itself inside `group` (breadth first)."""
    came_by: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target not in group:
                    continue
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_by[path[0].source])
                    return path
                if edge.target not in came_by:
                    came_by[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a group of two or more has one


def test_fastgw_has_no_import_cycle() -> None:
    cycles = find_cycles(import_edges(PACKAGE_ROOT))
    report = "\n".join(
        "import cycle:\n  " + "\n  ".join(str(edge) for edge in cycle) for cycle in cycles
    )
    assert not cycles, report


def _write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


CHECKER_CASES = [
    pytest.param(
        {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "from pkg import a\n"},
        [["pkg.a", "pkg.b"]],
        id="module-level-both-ways",
    ),
    pytest.param(
        {
            "__init__.py": "",
            "a.py": "from pkg.b import thing\n",
            "b.py": "def late():\n    from pkg.a import other\n",
        },
        [["pkg.a", "pkg.b"]],
        id="function-level-import-counts",
    ),
    pytest.param(
        {
            "__init__.py": "",
            "a.py": "from pkg.b import thing\n",
            "b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"
            ),
        },
        [],
        id="type-checking-import-left-out",
    ),
    pytest.param(
        {"__init__.py": "", "a.py": "from . import b\n", "b.py": "from .a import x\n"},
        [["pkg.a", "pkg.b"]],
        id="relative-imports",
    ),
    pytest.param(
        {
            "__init__.py": "from pkg.sub.x import X\n",
            "sub/__init__.py": "",
            "sub/x.py": "from pkg import version\n",
            "version.py": "",
        },
        [],
        id="submodule-of-own-package-is-no-cycle",
    ),
    pytest.param(
        {
            "__init__.py": "",
            "a/__init__.py": "from pkg.a.one import One\n",
            "a/one.py": "from pkg.b.two import Two\n",
            "b/__init__.py": "from pkg.b.two import Two\n",
            "b/two.py": "import pkg.a\n",
        },
        [["pkg.a", "pkg.a.one", "pkg.b.two"]],
        id="through-package-init",
    ),
    pytest.param(
        {"__init__.py": "", "a.py": "import os\nimport json.decoder\n", "b.py": "import pkg.a\n"},
        [],
        id="outside-imports-ignored",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CHECKER_CASES)
def test_cycle_checker(tmp_path: Path, files: dict[str, str], expected: list[list[str]]) -> None:
    cycles = find_cycles(import_edges(_write_package(tmp_path, files)))
    assert [sorted(edge.source for edge in cycle) for cycle in cycles] == expected
