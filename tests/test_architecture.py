"""The package's import rules (docs/architecture.md), read from the source: the runtime never imports the research
tools, each package imports only the packages below it, and no module imports itself round a cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "openvasa"
# What each runtime package may import (besides itself). Research packages (data, eval, tools) may import the
# runtime and each other; the CLI imports whatever a command needs, lazily.
ALLOWED = {
    "units": set(),
    "errors": set(),
    "io": {"errors", "units"},
    "audio": {"errors", "units"},
    "face": {"errors", "io", "units"},
    "provenance": {"errors", "io", "units"},
    "render": {"errors", "face", "units"},
    "motion": {"audio", "errors", "face", "io", "units"},
    "pipeline": {"audio", "errors", "face", "io", "motion", "provenance", "render", "units"},
    "stream": {"audio", "errors", "face", "io", "motion", "pipeline", "provenance", "render", "units"},
    "__init__": {"errors", "motion", "pipeline"},
}
RESEARCH = {"data", "eval", "tools"}


def module_imports() -> dict[str, set[str]]:
    """Every module of the package -> the openvasa modules it imports anywhere in it (lazy imports included)."""
    imports = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "openvasa":
                # `from openvasa.face import landmarks` imports a module; `from openvasa.face.latent import X` a name.
                found.update((f"{node.module}.{alias.name}", node.module) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update((alias.name, alias.name) for alias in node.names if alias.name.split(".")[0] == "openvasa")
        imports[name] = found
    resolved = {}
    for name, found in imports.items():
        modules = {full if full in imports else module for full, module in found}
        resolved[name] = {m for m in modules if m in imports and m != name}
    return resolved


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_each_package_imports_only_what_it_may():
    broken = []
    for module, imported in module_imports().items():
        package = package_of(module)
        if package in ALLOWED:
            for other in imported:
                if package_of(other) not in ALLOWED[package] | {package}:
                    broken.append(f"{module} imports {other}")
        elif package not in RESEARCH | {"cli", "__main__"}:
            broken.append(f"{module}: package {package!r} has no rule in tests/test_architecture.py")
    assert not broken, "\n".join(sorted(broken))


def test_no_import_cycles():
    graph = module_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                cycles.append(" -> ".join(path[path.index(other) :] + [other]))
            elif other not in state:
                visit(other, path + [other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
