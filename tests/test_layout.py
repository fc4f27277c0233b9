"""The package's structure: every import inside basam, module-level or inside a function, read from
the source. Library modules never import the command line, no module imports another's private
name, and the import graph has no cycle."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in (SRC / "basam").rglob("*.py")}


def _imports(name: str) -> list[tuple[str, str]]:
    """(imported basam module, imported name or '') for every import statement of `name`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.split(".")[0] == "basam"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "basam":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, "") if sub in MODULES else (base, alias.name))
    return found


def test_the_scan_sees_the_package():
    assert "basam.modeling.attention" in MODULES and "basam.cli" in MODULES
    assert ("basam.modeling.attention", "attend") in _imports("basam.modeling.image_encoder")


def test_library_modules_never_import_the_command_line():
    offenders = [
        (m, target)
        for m in MODULES
        if not m.startswith("basam.cli")
        for target, _ in _imports(m)
        if target == "basam.cli" or target.startswith("basam.cli.")
    ]
    assert offenders == []


def test_no_module_imports_a_private_name_of_another():
    offenders = [
        (m, target, n)
        for m in MODULES
        for target, n in _imports(m)
        if n.startswith("_") and not n.startswith("__") and target != m
    ]
    assert offenders == []


def test_the_import_graph_has_no_cycle():
    graph = {m: sorted({t for t, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for t in graph[m]:
            if state.get(t) == "open":
                pytest.fail("import cycle: " + " → ".join(path[path.index(t) :] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
