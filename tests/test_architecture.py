"""The import rules of docs/design.md, computed from the source (ast), so they hold without anyone remembering them.

- no import cycle between the project's modules (function-level imports count: they only hide a cycle);
- deploy/ never imports torch (the device has none), nor the workstation packages;
- packages import one way: models -> torch only; deploy -> itself; calibration -> models, deploy;
  toolkit -> everything; and inside toolkit: commands -> api -> bench -> export -> timing.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "deploy", "calibration", "toolkit")
# package -> the project packages it may import (besides itself)
MAY_IMPORT = {"models": set(), "deploy": set(), "calibration": {"models", "deploy"},
              "toolkit": {"models", "deploy", "calibration"}}
# inside toolkit, the rooms in the order they may import each other (a room imports only itself and rooms after it);
# the command line is cli.py and commands/ together
TOOLKIT_ROOMS = (("toolkit.cli", "toolkit.commands"), ("toolkit.api",), ("toolkit.bench",), ("toolkit.export",),
                 ("toolkit.timing",))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imported(node, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement asks for (relative imports resolved); `from a import b` gives a.b, which
    import_graph reads as the module a.b when there is one, else as a."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")
        anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
        base = ".".join(anchor + ([base] if base else []))
    return [f"{base}.{alias.name}" if base else alias.name for alias in node.names]


def _lazy_imported(node) -> str | None:
    """The module named by `lazy_import("name", ...)` (deploy.lazy): an import in all but timing."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "lazy_import" \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports_of(path: Path, module: str) -> set[str]:
    """Every name `path` imports, at any depth (top level, functions, lazy_import)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(_imported(node, module, path.name == "__init__.py"))
        elif (lazy := _lazy_imported(node)) is not None:
            names.add(lazy)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (`from pkg import name` counts as pkg.name when that is a module,
    else as pkg)."""
    modules = project_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imports_of(path, module):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (as a path a -> ... -> a), or None. Iterative DFS with colours."""
    colour = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the stack, 2 done
    for root in sorted(graph):
        if colour[root]:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
            elif colour.get(child) == 1:
                path = [n for n, _ in stack]
                return path[path.index(child):] + [child]
            elif colour.get(child) == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
    return None


def _room(module: str) -> int | None:
    return next((i for i, room in enumerate(TOOLKIT_ROOMS)
                 for prefix in room if module == prefix or module.startswith(prefix + ".")), None)


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_deploy_never_imports_torch():
    offenders = sorted(module for module, path in project_modules().items() if module.startswith("deploy")
                       and any(name == "torch" or name.startswith("torch.") for name in imports_of(path, module)))
    assert not offenders, f"deploy/ runs on the device, which has no torch: {offenders}"


def test_packages_import_one_way():
    wrong = []
    for module, targets in import_graph().items():
        package = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != package and other not in MAY_IMPORT[package]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the package direction (docs/design.md): " + ", ".join(sorted(wrong))


def test_toolkit_rooms_import_downwards():
    wrong = [f"{module} -> {target}" for module, targets in import_graph().items() for target in targets
             if _room(module) is not None and _room(target) is not None and _room(target) < _room(module)]
    assert not wrong, "toolkit imports run commands -> api -> bench -> export -> timing: " + ", ".join(sorted(wrong))


def test_the_architecture_page_names_every_module():
    """docs/architecture.md describes the tree as it is: a module it does not name is a module nobody will find."""
    page = (REPO / "docs" / "architecture.md").read_text()
    missing = sorted(str(path.relative_to(REPO)) for path in project_modules().values()
                     if path.stem != "__init__" and not re.search(rf"\b{re.escape(path.stem)}\b", page))
    assert not missing, f"docs/architecture.md does not mention {missing}"
