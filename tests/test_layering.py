"""The package's import graph: no circles, and no import running back up the layers (a model never
imports the metrics or the run that use it). Every import counts, the ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import vaekit

ROOT = Path(vaekit.__file__).parent
# lower layers first; a module may import its own layer and those below it
LAYERS = [
    {"errors", "config", "schedules", "files", "progress", "device", "precision", "layout", "distributions", "likelihoods", "batch",
     "importance", "viz", "__init__"},
    {"conditioning", "nn", "objectives", "data", "distributed"},
    {"models"},
    {"metrics"},
    {"train"},
    {"run"},
    {"explorer", "cli", "__main__"},
]


# The package's Python front door: `vaekit.load` imports the run layer inside the function, when called, so that
# `import vaekit` stays light; the one import from the bottom of the package to its top.
FRONT_DOOR = {("vaekit", "vaekit.run.export")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name:
                    found.add(t)
        graph[name] = found
    return graph


def layer(name: str) -> int:
    top = name.split(".")[1] if "." in name else "__init__"
    return next(i for i, group in enumerate(LAYERS) if top in group)


def test_every_module_has_a_layer():
    assert all(layer(m) >= 0 for m in imports())


def test_no_import_runs_back_up_a_layer():
    upward = sorted(f"{a} -> {b}" for a, deps in imports().items() for b in deps
                    if b != "vaekit" and layer(b) > layer(a) and (a, b) not in FRONT_DOOR)
    assert upward == []


def test_no_import_circles():
    graph = imports()
    # a package's __init__ importing its own submodules is not a circle of ideas
    graph = {a: {b for b in deps if not (a != "vaekit" and b.startswith(a + ".")) and (a, b) not in FRONT_DOOR}
             for a, deps in graph.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []
