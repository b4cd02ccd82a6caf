"""The package's layers, read from its source: no import cycle among wmrl modules, and none of the
imports that FORBIDDEN names, made directly or through other wmrl modules.

Every ``import`` and ``from ... import`` counts, at the top of a module or inside a function (a
function-level import is how a cycle hides), relative ones resolved. A name imported from a package
counts as its submodule when it is one (``from wmrl import tracking`` imports wmrl.tracking).
"""

import ast
from collections import deque
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# (importers, imported, why): no module under `importers` may import one under `imported`, directly
# or through other wmrl modules. A name stands for that module or package and everything under it;
# `imported` may be an outside package ("lightning").
BELOW_THE_DAG = "the DAG layer schedules the layers below it, which do not know it"
BELOW_THE_SCHEMA = "the schema composes its components' configs; a component does not read the whole"
FORBIDDEN = [
    *[(layer, "wmrl.dag", BELOW_THE_DAG) for layer in ("wmrl.data", "wmrl.models", "wmrl.rl", "wmrl.envs",
                                                      "wmrl.peers", "wmrl.methods", "wmrl.config")],
    *[(layer, "wmrl.config", BELOW_THE_SCHEMA) for layer in ("wmrl.data", "wmrl.models", "wmrl.rl", "wmrl.envs",
                                                            "wmrl.peers", "wmrl.methods")],
    ("wmrl.train.online", "wmrl.train.module", "online DQN (stable-baselines3) needs no Lightning module"),
    ("wmrl.train.online", "lightning", "online DQN (stable-baselines3) needs no Lightning"),
    ("wmrl.train.peer", "wmrl.train.module", "the d3rlpy peers need no Lightning module"),
    ("wmrl.train.peer", "lightning", "the d3rlpy peers need no Lightning"),
    ("wmrl.tracking", "wmrl.evaluate", "tracking is MLflow I/O: callers hand it what to log"),
    ("wmrl.tracking", "wmrl.models", "tracking is MLflow I/O: callers hand it the model to register"),
]


def module_name(path: Path, source: Path) -> str:
    """The dotted name of the module in file `path` under the source root `source`."""
    parts = path.relative_to(source).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(package: Path) -> dict[str, set[str]]:
    """Each module of `package` (a directory) -> the dotted names of the modules it imports."""
    files = {module_name(path, package.parent): path for path in sorted(package.rglob("*.py"))}
    imports = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]  # the package it is in
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package `here`, or one `level - 1` steps above it
                    anchor = here.rsplit(".", node.level - 1)[0]
                    base = f"{anchor}.{base}" if base else anchor
                submodules = {f"{base}.{alias.name}" for alias in node.names} & files.keys()
                found |= submodules or {base}
        imports[name] = found
    return imports


def under(name: str, prefix: str) -> bool:
    """Whether module `name` is `prefix` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def import_chain(imports: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """The shortest chain of imports from module `start` to a module under `target`, or None."""
    came_from = {start: None}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for imported in sorted(imports[module]):
            if imported in came_from:
                continue
            came_from[imported] = module
            if under(imported, target):
                chain = [imported]
                while came_from[chain[-1]] is not None:
                    chain.append(came_from[chain[-1]])
                return chain[::-1]
            if imported in imports:  # a wmrl module: follow its imports
                queue.append(imported)
    return None


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a cycle: the strongly connected components
    of the import graph with more than one module or a module importing itself (Tarjan)."""
    order, low, stack, found = {}, {}, [], []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for imported in imports[module] & imports.keys():
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:  # `module` is the first of its component to be visited
            component = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(component) > 1 or module in imports[module]:
                found.append(sorted(component))

    for module in sorted(imports):
        if module not in order:
            visit(module)
    return sorted(found)


IMPORTS = read_imports(SOURCE / "wmrl")


def test_the_parse_sees_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import os\nfrom pkg import b\n\ndef f():\n    from pkg.sub.c import name\n")
    (package / "b.py").write_text("from . import a\nfrom .sub import c\n")
    (package / "sub" / "__init__.py").write_text("from .. import b\n")
    (package / "sub" / "c.py").write_text("from ..a import f\nfrom . import name\n")
    assert read_imports(package) == {"pkg": set(), "pkg.a": {"os", "pkg.b", "pkg.sub.c"},
                                     "pkg.b": {"pkg.a", "pkg.sub.c"}, "pkg.sub": {"pkg.b"},
                                     "pkg.sub.c": {"pkg.a", "pkg.sub"}}


def test_cycles_are_found_with_every_module_in_them():
    graph = {"a": {"b"}, "b": {"c", "os"}, "c": {"a"}, "d": {"a", "d"}, "e": {"a"}}
    assert cycles(graph) == [["a", "b", "c"], ["d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert import_chain(graph, "e", "os") == ["e", "a", "b", "os"]


def test_no_wmrl_modules_import_each_other_in_a_cycle():
    assert "wmrl.dag.specs" in IMPORTS and "wmrl.data.generate" in IMPORTS  # the source was read
    found = cycles(IMPORTS)
    edges = [f"{a} -> {b}" for component in found for a in component for b in sorted(IMPORTS[a]) if b in component]
    assert found == [], f"import cycles among {found}; their imports: {edges}"


@pytest.mark.parametrize(("importers", "imported", "why"), FORBIDDEN,
                         ids=[f"{importers} !-> {imported}" for importers, imported, _ in FORBIDDEN])
def test_no_forbidden_import(importers, imported, why):
    modules = [module for module in sorted(IMPORTS) if under(module, importers)]
    assert modules, f"no module is {importers} or under it: update FORBIDDEN"
    chains = [chain for module in modules if (chain := import_chain(IMPORTS, module, imported))]
    assert chains == [], f"{importers} must not import {imported} ({why}): " + "; ".join(
        " -> ".join(chain) for chain in chains)
