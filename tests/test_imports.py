"""The import graph of the package: no circles, `data_prep` never imports `mlm`, no private name imported across
modules. Every import counts, at the top of a module or inside a function (a lazy import still runs back up a
layer), `if TYPE_CHECKING:` ones included; the benchmarks, which import each other by file name, are checked
for circles too."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mlm", "data_prep")


def _module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the packages (a package is its __init__.py)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str, is_package: bool) -> list[tuple[str, str | None, int]]:
    """(module imported, name imported from it or None, line) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(base, alias.name, node.lineno) for alias in node.names]
    return found


def _graph(modules: dict[str, Path], root: Path = REPO) -> tuple[dict[str, set[str]], list[str]]:
    """Edges between the package's modules, and the private names imported across modules."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        for base, name, line in _imports(path, module, path.name == "__init__.py"):
            if base.split(".")[0] not in PACKAGES:
                continue
            target = f"{base}.{name}" if name and f"{base}.{name}" in modules else base
            if target not in modules:
                continue
            if target != module:
                edges[module].add(target)
            # importing a.b.c runs a/__init__.py and a/b/__init__.py first (those above `module` already ran)
            parents = [".".join(target.split(".")[:i]) for i in range(1, target.count(".") + 1)]
            edges[module].update(p for p in parents if p in modules and not _inside(module, p))
            names = [*base.split("."), *([name] if name else [])]
            if target != module and any(n.startswith("_") and not n.startswith("__") for n in names):
                imported = f"from {base} import {name}" if name else f"import {base}"
                private.append(f"{path.relative_to(root)}:{line}: {imported}")
    return edges, private


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _describe(cycle: list[str], edges: dict[str, set[str]]) -> str:
    """The component's modules and, for each, what it imports within the component."""
    inside = set(cycle)
    return "; ".join(f"{m} -> {', '.join(sorted(edges[m] & inside))}" for m in cycle)


def test_the_package_has_no_import_circles():
    edges, _ = _graph(_module_names(REPO, PACKAGES))
    cycles = _cycles(edges)
    assert not cycles, "import circles (move what both need into the lower module):\n" + "\n".join(
        _describe(c, edges) for c in cycles
    )


def test_data_prep_never_imports_mlm():
    edges, _ = _graph(_module_names(REPO, PACKAGES))
    wrong = sorted(f"{m} -> {t}" for m, ts in edges.items() if m.startswith("data_prep") for t in ts
                   if t.split(".")[0] == "mlm")  # fmt: skip
    assert not wrong, "data_prep imports mlm:\n" + "\n".join(wrong)


def test_no_private_name_is_imported_across_modules():
    _, private = _graph(_module_names(REPO, PACKAGES))
    for path in sorted([*(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]):
        for base, name, line in _imports(path, path.stem, False):  # tests and benchmarks use public names
            names = [*base.split("."), *([name] if name else [])]
            if names[0] in PACKAGES and any(n.startswith("_") and not n.startswith("__") for n in names):
                private.append(f"{path.relative_to(REPO)}:{line}: from {base} import {name}")
    assert not private, "private names imported by another module (give them a public name):\n" + "\n".join(
        private
    )


def test_the_benchmarks_have_no_import_circles():
    scripts = {p.stem: p for p in sorted((REPO / "benchmarks").glob("*.py"))}
    edges = {name: set() for name in scripts}
    for name, path in scripts.items():
        for base, _, _ in _imports(path, name, False):
            if base.split(".")[0] in scripts and base.split(".")[0] != name:
                edges[name].add(base.split(".")[0])
    cycles = _cycles(edges)
    assert not cycles, "import circles between benchmarks:\n" + "\n".join(_describe(c, edges) for c in cycles)


def test_the_checks_find_what_they_look_for(tmp_path: Path):
    """The graph builder on a made-up package: a circle through a lazy import, a private import."""
    package = tmp_path / "mlm"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .low import Low\n")
    (package / "sub" / "low.py").write_text("def f():\n    from mlm.high import _helper\n")
    (package / "high.py").write_text("from mlm.sub import low\n\ndef _helper():\n    pass\n")
    modules = _module_names(tmp_path, ("mlm",))
    assert set(modules) == {"mlm", "mlm.sub", "mlm.sub.low", "mlm.high"}
    edges, private = _graph(modules, tmp_path)
    assert edges["mlm.sub"] == {"mlm.sub.low"} and edges["mlm.high"] == {"mlm.sub", "mlm.sub.low"}
    assert _cycles(edges) == [["mlm.high", "mlm.sub", "mlm.sub.low"]]
    assert private == ["mlm/sub/low.py:2: from mlm.high import _helper"]


def test_every_function_fits_on_a_screen():
    """No function of the package is over 80 lines (a longer one has more than one job)."""
    import ast

    long = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > 80:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
