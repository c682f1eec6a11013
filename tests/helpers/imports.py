"""The project's import graph, read from the source (``ast``), lazy imports inside functions too."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "flows", "pipelines")


def module_file(name: str) -> Path | None:
    """The file of project module ``name`` (a package's ``__init__.py``), if it is one."""
    base = REPO / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@cache
def imports_of(name: str, types: bool = False) -> frozenset[str]:
    """Project modules that module ``name`` imports anywhere in its source (``types``: its
    imports for type checkers too, under ``if TYPE_CHECKING:``)."""
    path = module_file(name)
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if types else _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import module`` names a module; ``from module import name`` does not
            targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES and module_file(target) is not None:
                found.add(target)
    return frozenset(m for m in found if module_file(m) != path)


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (type-only imports never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def project_modules() -> list[str]:
    return sorted(module_name(p) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def closure(roots: list[str]) -> set[str]:
    """``roots`` and every project module they import, transitively."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports_of(name))
    return seen


def cycles(types: bool = False) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), as sorted lists
    (``types``: counting the imports made for type checkers alone too).

    A package's ``__init__`` importing nothing, edges to it are not circles of code.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in imports_of(v, types):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in project_modules():
        if module not in index:
            visit(module)
    return groups
