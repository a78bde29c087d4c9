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


# ------------------------------------------------------------------ what ships to the device

DEVICE_ROOTS = ("deploy.daemon", "deploy.__main__", "deploy.engines")   # the daemon and every engine
DEVICE_BLOCK = re.compile(r"<!-- device-modules -->\n(.*?)<!-- /device-modules -->", re.S)


def import_closure(roots, graph) -> set[str]:
    """`roots` (a package stands for all its modules) and every project module they import, at any depth."""
    todo = [m for m in graph if any(m == r or m.startswith(r + ".") for r in roots)]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph[module]
    return seen


def _files(modules) -> str:
    """`deploy/`: `daemon`, ...; `deploy/engines/`: ... (each module's file, grouped by folder)."""
    paths, folders = project_modules(), {}
    for module in sorted(modules):
        path = paths[module].relative_to(REPO)
        folders.setdefault(f"{path.parent}/", []).append(f"`{path.stem}`")
    return "; ".join(f"`{folder}` {', '.join(stems)}" for folder, stems in folders.items())


def device_block() -> str:
    """docs/architecture.md's list of what ships, rendered from deploy.DEVICE_MODULES and WORKSTATION_MODULES."""
    import textwrap

    import deploy
    paragraphs = (f"**Ships to the device** (`deploy.DEVICE_MODULES`, the import closure of the daemon and the "
                  f"engines: {len(deploy.DEVICE_MODULES)} modules): {_files(deploy.DEVICE_MODULES)}.",
                  f"**Workstation-only numpy code in deploy/** (`deploy.WORKSTATION_MODULES`: shared without torch, "
                  f"never imported by the daemon): {_files(deploy.WORKSTATION_MODULES)}.")
    return "\n\n".join(textwrap.fill(p, 118, break_long_words=False, break_on_hyphens=False)
                       for p in paragraphs) + "\n"


def test_the_device_modules_are_the_daemons_import_closure():
    """deploy.DEVICE_MODULES is exactly what the daemon and the engines import: a module added to their path, or one
    that left it, must be written down (and the page regenerated)."""
    import deploy
    graph = import_graph()
    closure = import_closure(DEVICE_ROOTS, graph) | {"deploy"}   # every import of deploy.x runs deploy/__init__
    listed = set(deploy.DEVICE_MODULES)
    assert len(listed) == len(deploy.DEVICE_MODULES), "a module is listed twice in deploy.DEVICE_MODULES"
    assert listed == closure, (f"deploy.DEVICE_MODULES lists {sorted(listed - closure)} which the daemon does not "
                               f"import, and misses {sorted(closure - listed)} which it does")
    everything = {m for m in graph if m == "deploy" or m.startswith("deploy.")}
    workstation = set(deploy.WORKSTATION_MODULES)
    assert not workstation & listed and workstation | listed == everything, (
        f"every module of deploy/ is either shipped or workstation-only: unlisted {sorted(everything - listed - workstation)}"
        f", both {sorted(workstation & listed)}")


def test_the_architecture_page_shows_what_ships():
    page = (REPO / "docs" / "architecture.md").read_text()
    found = DEVICE_BLOCK.search(page)
    assert found, "docs/architecture.md has no <!-- device-modules --> block"
    assert found.group(1) == device_block(), "docs/architecture.md's device-modules block is stale; it should " \
                                             "read:\n" + device_block()


def test_the_closure_follows_lazy_and_function_level_imports():
    graph = {"deploy.daemon": {"deploy.a"}, "deploy.a": {"deploy.b"}, "deploy.b": set(), "deploy.c": set(),
             "deploy.engines": set(), "deploy.engines.x": {"deploy.c"}}
    assert import_closure(DEVICE_ROOTS, graph) == {"deploy.daemon", "deploy.a", "deploy.b", "deploy.engines",
                                                   "deploy.engines.x", "deploy.c"}
