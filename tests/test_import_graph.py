"""The project's own import graph: no circles, and one narrow seam between queue_app and realtime.

Read with ``ast``, not by importing anything: every ``import`` statement in a file is an edge,
wherever it stands (module level, inside a function, under ``if TYPE_CHECKING:``). A
function-level or type-only import hides a circle from the interpreter, not from a reader.

Edges go to the most specific project module named: ``import a.b.c`` and ``from a.b.c import x``
are edges to ``a.b.c`` only, ``from a.b import c`` to ``a.b.c`` when that is a module and to
``a.b`` (the package's ``__init__``) when ``c`` is a name defined there. So a package
``__init__`` importing its submodules is fine, and a submodule importing its own package
``__init__`` closes a circle, as it should: that is how a package's modules end up importing
each other through a re-export.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The project's code; tests/ and .venv/ are not part of the graph.
PROJECT_DIRS = (
    "fathomloom",
    "queue_app",
    "realtime",
    "fathom_sandbox",
    "devtools",
    "scripts",
    "bench",
)

# The seam between the queue and the live updates, one module wide on each side, so that
# either side can change its insides without the other noticing:
# - realtime reads the queue only through the feed that turns queue rows into what sockets see;
REALTIME_MODULES_ALLOWED_TO_IMPORT_QUEUE_APP = frozenset({"realtime.queue_feed"})
# - the queue tells realtime about changes only through broadcast, and only via the publisher
#   (never realtime's consumers, hub or events), so queue code never depends on socket code.
QUEUE_APP_MODULES_ALLOWED_TO_IMPORT_REALTIME = frozenset({"queue_app.broadcast"})
REALTIME_MODULES_QUEUE_APP_MAY_IMPORT = frozenset({"realtime.publisher"})

# An edge: (importing module, imported module) -> "path:line" of the first such import.
Graph = dict[str, dict[str, str]]


# --- Building the graph ----------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files(root: Path, dirs: Iterable[str]) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file under ``dirs``."""
    files: dict[str, Path] = {}
    for top in dirs:
        for path in sorted((root / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files.setdefault(module_name(path, root), path)
    return files


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """``from ..x import y`` in ``module`` -> the absolute name of ``..x``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: max(0, len(package) - (level - 1))]
    return ".".join([*package, *([name] if name else [])])


def _known(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is a project module, if any."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: set[str]) -> list[tuple[str, int]]:
    """Every project module ``path`` imports, anywhere in the file, with the line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name, modules)
                if target:
                    found.append((target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the module pkg.sub; `from pkg import name`
                # (or *) runs pkg's __init__.
                full = f"{base}.{alias.name}"
                target = full if full in modules else _known(base, modules)
                if target:
                    found.append((target, node.lineno))
    return found


def project_graph(root: Path = ROOT, dirs: Iterable[str] = PROJECT_DIRS) -> Graph:
    files = project_files(root, dirs)
    modules = set(files)
    graph: Graph = {name: {} for name in files}
    for name, path in files.items():
        where = path.relative_to(root)
        for target, line in imports_of(name, path, modules):
            if target != name:
                graph[name].setdefault(target, f"{where}:{line}")
    return graph


# --- Finding circles -------------------------------------------------------------------------


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the groups of modules that all reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    groups.append(sorted(group))
    return groups


def shortest_cycle(graph: Mapping[str, Iterable[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start using only modules in ``within``."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child not in within:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    return []


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One shortest circle per group of modules that import each other, round and round."""
    return [
        shortest_cycle(graph, group[0], set(group))
        for group in strongly_connected(graph)
        if len(group) > 1 or group[0] in graph.get(group[0], ())
    ]


def describe(graph: Graph, cycle: list[str]) -> str:
    """The circle, then every other import among the same modules (all that holds it)."""
    group = set(strongly_connected_group(graph, cycle[0]))
    shown = set(itertools.pairwise(cycle))
    lines = [f"  {len(group)} modules import each other; the shortest circle:"]
    lines += [f"    {a} -> {b}  ({graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    others = [
        f"    {a} -> {b}  ({where})"
        for a in sorted(group)
        for b, where in sorted(graph[a].items())
        if b in group and (a, b) not in shown
    ]
    if others:
        lines += ["  and the other imports among them:", *others]
    return "\n".join(lines)


def strongly_connected_group(graph: Mapping[str, Iterable[str]], module: str) -> list[str]:
    return next(group for group in strongly_connected(graph) if module in group)


# --- The checks ------------------------------------------------------------------------------


def test_no_import_cycles():
    graph = project_graph()
    found = cycles(graph)
    assert not found, f"{len(found)} import circle(s) among the project's modules:\n" + (
        "\n\n".join(describe(graph, cycle) for cycle in found)
    )


def _in(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def crosses_the_seam_elsewhere(source: str, target: str) -> bool:
    """Whether ``source`` importing ``target`` goes between queue_app and realtime other
    than through the allowed modules."""
    if _in("realtime", source) and _in("queue_app", target):
        return source not in REALTIME_MODULES_ALLOWED_TO_IMPORT_QUEUE_APP
    if _in("queue_app", source) and _in("realtime", target):
        return (
            source not in QUEUE_APP_MODULES_ALLOWED_TO_IMPORT_REALTIME
            or target not in REALTIME_MODULES_QUEUE_APP_MAY_IMPORT
        )
    return False


def test_queue_app_and_realtime_meet_only_at_the_seam():
    graph = project_graph()
    wrong = [
        f"    {source} -> {target}  ({where})"
        for source, targets in sorted(graph.items())
        for target, where in sorted(targets.items())
        if crosses_the_seam_elsewhere(source, target)
    ]
    assert not wrong, (
        "imports across the queue_app/realtime seam outside "
        f"{sorted(REALTIME_MODULES_ALLOWED_TO_IMPORT_QUEUE_APP)} -> queue_app and "
        f"{sorted(QUEUE_APP_MODULES_ALLOWED_TO_IMPORT_REALTIME)} -> "
        f"{sorted(REALTIME_MODULES_QUEUE_APP_MAY_IMPORT)}:\n" + "\n".join(wrong)
    )


# --- The checker, checked: it has to be able to fail -----------------------------------------


def test_cycle_finder_finds_a_made_up_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}, "f": {"f"}}
    assert sorted(cycles(graph)) == [["a", "b", "c", "a"], ["f", "f"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_graph_counts_type_checking_function_level_and_relative_imports(tmp_path):
    files = {
        # The package __init__ re-exporting its submodules: fine on its own.
        "pkg/__init__.py": "from pkg.client import Client\nfrom . import errors\n",
        "pkg/errors.py": "class Error(Exception): ...\n",
        # A type-only import back into the package __init__: a circle through it.
        "pkg/client.py": (
            "from typing import TYPE_CHECKING\n"
            "from .errors import Error\n"
            "if TYPE_CHECKING:\n"
            "    from pkg import Limiter\n"
        ),
        # A function-level import: still an edge.
        "pkg/limits.py": "def make():\n    import pkg.errors\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = project_graph(tmp_path, ["pkg"])
    assert graph == {
        "pkg": {"pkg.client": "pkg/__init__.py:1", "pkg.errors": "pkg/__init__.py:2"},
        "pkg.client": {"pkg.errors": "pkg/client.py:2", "pkg": "pkg/client.py:4"},
        "pkg.errors": {},
        "pkg.limits": {"pkg.errors": "pkg/limits.py:2"},
    }
    assert cycles(graph) == [["pkg", "pkg.client", "pkg"]]
