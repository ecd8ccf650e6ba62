"""The package's shape: no import cycles (imports inside functions count), a config package that
does no host I/O, and a proxy with no upward imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "stackctl"
# Modules that probe the host or build on the probe: the config package must import none.
HOST_PROBING = ("stackctl.probe", "stackctl.catalog", "stackctl.stack", "stackctl.setup",
                "stackctl.services", "stackctl.doctor", "stackctl.proc")  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The stackctl modules a file imports, at any depth (functions included), except under
    `if TYPE_CHECKING:`, which never runs."""
    found: set[str] = set()
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            for alias in node.names:  # `from stackctl import proc` imports a module
                found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    result = set()
    for name in found:
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != this:
                result.add(prefix)
    return result


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) for name, path in files.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = []
    for module, targets in graph.items():
        for target in targets:
            # a package importing its own submodules is not a cycle (`import a.b` runs a first)
            if target.startswith(module + "."):
                continue
            if module in _reachable(graph, target) and not module.startswith(target + "."):
                cycles.append(f"{module} -> {target} -> ... -> {module}")
    assert cycles == []


def test_the_config_package_does_no_host_io() -> None:
    graph = import_graph()
    config_modules = [
        m for m in graph if m == "stackctl.config" or m.startswith("stackctl.config.")
    ]
    reached = set().union(*(_reachable(graph, m) for m in config_modules))
    assert sorted(m for m in reached if m.startswith(HOST_PROBING)) == []


def test_the_proxy_has_no_upward_imports() -> None:
    graph = import_graph()
    allowed = ("stackctl.proxy", "stackctl.config.model", "stackctl.secret_names",
               "stackctl.types", "stackctl.errors", "stackctl.ollama_options",
               "stackctl.keystore")  # fmt: skip
    upward = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("stackctl.proxy")
        for target in targets
        if not (target in ("stackctl", "stackctl.config") or target.startswith(allowed))
    }
    assert upward == set()


def test_the_typed_service_names_are_the_registry_s() -> None:
    """`--help` lists services from types.SERVICE_NAMES (cheap to import); the registry's
    entries must be exactly those, in that (start) order."""
    from stackctl import registry, types

    assert registry.NAMES == types.SERVICE_NAMES
