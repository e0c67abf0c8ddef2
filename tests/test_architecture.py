"""The house reads one way (docs/architecture.md, "Floors"): every import inside `repro/` points
to the same floor or one below, nothing imports in a circle, paper packages use the core's lower
floors and never each other, and imports sit at the top of their module, so the graph read here
is the whole graph. The floors are parsed from the document, so the page and the test cannot
drift apart."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Heavy, optional or slow to import: these alone may be imported inside a function.
LAZY_OK = ("ray", "submitit", "matplotlib", "mlflow", "scipy")


def floors() -> list[list[str]]:
    """The module patterns of each floor, bottom first, from docs/architecture.md's table."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| ([^|]+) \|$", text, flags=re.M)
    assert rows, "docs/architecture.md has no floor table"
    assert [int(n) for n, _ in rows] == list(range(len(rows))), "floors are numbered 0, 1, 2, ..."
    return [re.findall(r"`([\w.*]+)`", cells) for _, cells in rows]


def paper_ceiling() -> int:
    text = (ROOT / "docs" / "architecture.md").read_text()
    found = re.search(r"Paper packages import floors 0 to (\d+)", text)
    assert found, "docs/architecture.md does not say which floors paper packages may import"
    return int(found.group(1))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for top in ("repro", "papers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _targets(name: str, path: Path, node: ast.AST, known: dict[str, Path]) -> list[str]:
    """The known modules an import statement reaches (`from a.b import c` reaches `a.b.c` when
    that is a module, else `a.b`)."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([node.module] if node.module else []))
        candidates = [f"{base}.{alias.name}" for alias in node.names]
        candidates = [c if c in known else base for c in candidates]
    out = []
    for candidate in candidates:
        while candidate and candidate not in known:
            candidate = candidate.rpartition(".")[0]
        if candidate and candidate != name:
            out.append(candidate)
    return out


def import_graph(known: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Edges between known modules, and every function-local import outside `LAZY_OK`."""
    edges: dict[str, set[str]] = {name: set() for name in known}
    local = []
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[name].update(_targets(name, path, node, known))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    root = (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if root.split(".")[0] not in LAZY_OK:
                        local.append(f"{name}.{func.name}: {ast.unparse(node)}")
    return edges, local


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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


def floor_of(name: str, table: list[list[str]]) -> int | None:
    for level, patterns in enumerate(table):
        for pattern in patterns:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return level
    return None


def upward_imports(edges: dict[str, set[str]], table: list[list[str]], ceiling: int) -> list[str]:
    """Every import that points up a floor, or out of the floors a paper package may use, or
    from one paper package into another."""
    wrong = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            if source.startswith("papers"):
                if target.startswith("papers"):
                    if target.split(".")[:2] != source.split(".")[:2]:
                        wrong.append(f"{source} -> {target} (one paper package into another)")
                elif (floor_of(target, table) or 0) > ceiling:
                    wrong.append(f"{source} -> {target} (a paper above floor {ceiling})")
            elif target.startswith("papers"):
                wrong.append(f"{source} -> {target} (the core imports a paper)")
            elif None in (floor_of(target, table), floor_of(source, table)):
                continue     # a module without a floor: test_every_core_module_has_a_floor says so
            elif floor_of(target, table) > floor_of(source, table):
                wrong.append(f"{source} (floor {floor_of(source, table)}) -> {target} "
                             f"(floor {floor_of(target, table)})")
    return wrong


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return known, *import_graph(known)


def test_every_core_module_has_a_floor(graph):
    known, _, _ = graph
    table = floors()
    homeless = [name for name in known if name.startswith("repro") and floor_of(name, table) is None]
    assert not homeless, f"add these modules to the floor table in docs/architecture.md: {homeless}"


def test_no_import_cycle(graph):
    _, edges, _ = graph
    assert cycles(edges) == []


def test_imports_point_down_the_floors(graph):
    _, edges, _ = graph
    assert upward_imports(edges, floors(), paper_ceiling()) == []


def test_imports_sit_at_the_top_of_their_module(graph):
    _, _, local = graph
    assert local == [], "hoist these imports to module level (docs/architecture.md, Floors)"


def test_registration_happens_in_each_package_init():
    """A paper registers itself in its `__init__.py` and nowhere else, so a reader finds every
    package's table in the same place."""
    for path in (ROOT / "papers").rglob("*.py"):
        calls = "register_paper(" in path.read_text()
        assert calls == (path.name == "__init__.py" and path.parent != ROOT / "papers"), path


def test_the_checks_find_the_cycle_and_the_upward_imports_of_december_2026():
    """The graph before issue 46: the registry (lowest of these) imported the demo and the
    benchmark, which import the trainer and the registry again. The same checks, fed that graph,
    report the cycle and the upward arrows."""
    table = floors()
    old = {"repro.registry": {"repro.demo", "repro.benchmark", "repro.config"},
           "repro.demo": {"repro.registry", "repro.train"},
           "repro.benchmark": {"repro.registry", "repro.sweep", "repro.tables"},
           "repro.tables": {"repro.benchmark", "repro.registry"},
           "repro.sweep": {"repro.train", "repro.registry"},
           "repro.train": {"repro.registry"},
           "repro.config": set()}
    assert ["repro.benchmark", "repro.demo", "repro.registry", "repro.sweep", "repro.tables",
            "repro.train"] == sorted(sum(cycles(old), []))
    wrong = upward_imports(old, table, paper_ceiling())
    assert any(w.startswith("repro.registry") and "repro.demo" in w for w in wrong)
    assert any(w.startswith("repro.benchmark") and "repro.tables" in w for w in wrong)
