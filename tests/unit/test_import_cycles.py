"""No import cycles in `app`, between modules or between its packages.

What counts as an import: every `import` and `from … import` statement of `app/**/*.py`, those
inside functions included (a cycle hidden in a function is still a cycle, it only breaks later),
those under `if TYPE_CHECKING:` excluded (they never run). `from package import name` imports the
module `package.name` when there is one, else `package`. Strings (Celery's `include`, entry points,
`importlib`) are not imports.

1. Modules: no module reaches itself through its imports.
2. Packages: no chain of imports leaves a top-level package of `app` (`app.tasks`, `app.files`, …)
   and comes back into it. `app.files.retention -> app.tasks.service -> app.files.service` is a
   cycle between files and tasks although no module imports itself. Two kinds of module do not
   count as inside their package:
   - entry points (`*.router`, `app.worker.scheduler`), where a request or a scheduler tick comes
     in: they sit above every package and may use one that uses their own (`app.events.router`
     checks access through `app.projects`, which records events). Chains *through* them count;
   - tables (`*.models`): the models are one schema (`app/models.py`) whose foreign keys and
     relationships cross packages, so each models module is a unit of its own, beneath them.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import app

Graph = dict[str, set[str]]
Chain = tuple[str, ...]

APP_DIR = Path(app.__file__).parent
ENTRY_POINT_MODULES = frozenset({"app.worker.scheduler"})

# Import edges that close a cycle today and are being removed; this list only shrinks. An edge
# here is ignored by the package check (a new edge between the same packages is not).
KNOWN_CYCLES: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(package_dir: Path) -> Graph:
    """Each module of the package in `package_dir` -> the modules of that package it imports."""
    paths = {_module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}
    graph: Graph = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in _runtime_imports(tree):
            names = _imported_names(node, module, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):
                # `from a import b`: the module a.b if there is one, else a (already the last name).
                submodules = [name for name in names[:-1] if name in paths]
                names = (
                    submodules if len(submodules) == len(names) - 1 else [*submodules, names[-1]]
                )
            for name in names:
                while name and name not in paths:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def without(graph: Graph, edges: frozenset[tuple[str, str]]) -> Graph:
    return {
        module: {t for t in targets if (module, t) not in edges}
        for module, targets in graph.items()
    }


def _way_back(graph: Graph, start: str, unit: str, unit_of: Callable[[str], str]) -> Chain | None:
    """The shortest chain from `start` into `unit`, through modules outside it."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for target in sorted(graph[current]):
            if unit_of(target) == unit:
                chain = [target]
                step: str | None = current
                while step is not None:
                    chain.append(step)
                    step = previous[step]
                return tuple(reversed(chain))
            if target not in previous:
                previous[target] = current
                queue.append(target)
    return None


def loops(
    graph: Graph,
    unit_of: Callable[[str], str] = lambda module: module,
    *,
    counts: Callable[[str], bool] = lambda _module: True,
) -> list[Chain]:
    """Chains of imports that leave a unit (by default a module) and come back into it: the
    shortest one for each import out of a unit, each cycle once."""
    found: dict[Chain, None] = {}
    for module in sorted(graph):
        if not counts(module):
            continue
        unit = unit_of(module)
        for first in sorted(graph[module]):
            if unit_of(first) == unit:
                continue
            back = _way_back(graph, first, unit, unit_of)
            if back is None:
                continue
            chain = (module, *back)
            if chain[0] == chain[-1]:  # a cycle of modules: the same one from any of them
                turn = chain.index(min(chain[:-1]))
                chain = (*chain[turn:-1], *chain[:turn], chain[turn])
            found[chain] = None
    return list(found)


def package_of(module: str) -> str:
    """`app.tasks.service` -> `app.tasks`; a models module is its own unit (see the docstring)."""
    parts = module.split(".")
    return module if parts[-1] == "models" else ".".join(parts[:2])


def is_inside_its_package(module: str) -> bool:
    return module.rpartition(".")[2] != "router" and module not in ENTRY_POINT_MODULES


def package_loops(graph: Graph) -> list[Chain]:
    return loops(graph, package_of, counts=is_inside_its_package)


def _report(chains: list[Chain]) -> str:
    return "\n".join(" -> ".join(chain) for chain in chains)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for directory in [root / "pkg", *(root / "pkg").rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").touch()
    return root / "pkg"


class TestLoops:
    def test_a_cycle_through_an_import_in_a_function_is_found(self, tmp_path: Path) -> None:
        package = _write(
            tmp_path,
            {
                "pkg/b.py": "def later():\n    from pkg.a import name\n",
                "pkg/a.py": "from pkg import b\nname = 1\n",
            },
        )

        assert loops(import_graph(package)) == [("pkg.a", "pkg.b", "pkg.a")]

    def test_a_longer_cycle_is_reported_once_with_its_path(self, tmp_path: Path) -> None:
        package = _write(
            tmp_path,
            {
                "pkg/a.py": "import pkg.b\n",
                "pkg/b.py": "from pkg.c import thing\n",
                "pkg/c.py": "from . import a\nthing = 1\n",
            },
        )

        assert loops(import_graph(package)) == [("pkg.a", "pkg.b", "pkg.c", "pkg.a")]

    def test_imports_for_type_checking_only_are_not_counted(self, tmp_path: Path) -> None:
        package = _write(
            tmp_path,
            {
                "pkg/a.py": "from pkg import b\n",
                "pkg/b.py": (
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
                ),
            },
        )

        assert loops(import_graph(package)) == []

    def test_a_chain_that_leaves_a_package_and_comes_back_is_found(self, tmp_path: Path) -> None:
        package = _write(
            tmp_path,
            {
                "pkg/x/one.py": "from pkg.y import two\n",
                "pkg/y/two.py": "from pkg.x.three import thing\n",
                "pkg/x/three.py": "thing = 1\n",
            },
        )
        graph = import_graph(package)

        assert loops(graph) == []
        assert package_loops(graph) == [("pkg.x.one", "pkg.y.two", "pkg.x.three")]

    def test_chains_from_a_router_or_into_tables_are_not_package_cycles(
        self, tmp_path: Path
    ) -> None:
        package = _write(
            tmp_path,
            {
                "pkg/x/router.py": "from pkg.y import service\n",
                "pkg/y/service.py": "from pkg.x import models, service\n",
                "pkg/x/service.py": "from pkg.y import models\n",
                "pkg/x/models.py": "",
                "pkg/y/models.py": "from pkg.x import models\n",
            },
        )

        assert package_loops(import_graph(package)) == []

    def test_an_ignored_edge_breaks_the_cycle_it_closes(self, tmp_path: Path) -> None:
        package = _write(
            tmp_path,
            {"pkg/x/one.py": "from pkg.y import two\n", "pkg/y/two.py": "from pkg.x import one\n"},
        )
        graph = import_graph(package)

        assert package_loops(without(graph, frozenset({("pkg.y.two", "pkg.x.one")}))) == []
        assert package_loops(graph) == [("pkg.x.one", "pkg.y.two", "pkg.x.one")]


class TestAppImports:
    def test_no_module_reaches_itself(self) -> None:
        found = loops(import_graph(APP_DIR))

        assert not found, f"import cycles between modules:\n{_report(found)}"

    def test_no_import_chain_leaves_a_package_and_comes_back(self) -> None:
        found = package_loops(without(import_graph(APP_DIR), KNOWN_CYCLES))

        assert not found, f"import cycles between packages:\n{_report(found)}"

    def test_every_known_cycle_is_still_an_import(self) -> None:
        graph = import_graph(APP_DIR)

        gone = sorted(
            (module, target)
            for module, target in KNOWN_CYCLES
            if target not in graph.get(module, set())
        )

        assert not gone, f"no longer imported, remove from KNOWN_CYCLES: {gone}"
