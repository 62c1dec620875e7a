"""The house's shape, checked on every run: no import cycles between modules, no module or function past its size
budget unless `OVERSIZE` says why. Imports are read from the source (every `import` statement, inside functions and
`if TYPE_CHECKING:` too: a type-only import is still a dependency), nothing is imported or run."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("voco", "store", "ingest", "app", "evaluation", "bench", "scripts")
MODULE_LINES, FUNCTION_LINES = 400, 60

# (path, function or None for the module) -> why it is larger than the budget
OVERSIZE: dict[tuple[str, str | None], str] = {
    ("scripts/derive_concepts.py", None): "mostly the hand-written word tables the concept asset is derived from",
    ("ingest/__main__.py", "build_parser"): "declarations only: one add_argument per option, each with its help",
    ("evaluation/cli.py", "build_parser"): "declarations only: one add_argument per option, each with its help",
    ("voco/train/card.py", "model_card"): "one Markdown template (an f-string of ~55 lines); the values come from "
                                          "the helpers beside it",
}


def _sources() -> dict[str, Path]:
    """module name -> file, for every module of the packages (migrations are alembic's, not imported)."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project's modules that `path` (module `name`) imports, resolved to the deepest existing module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from voco import model` imports voco.model (Python runs voco/__init__ first whatever is imported, so
            # that is not an edge); `from voco.model import X` imports voco.model
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v: str) -> None:
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
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def test_the_import_graph_has_no_cycles():
    modules = _sources()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert sum(len(v) for v in graph.values()) > 300, "the import reader found almost no imports: it is broken"
    cycles = _cycles(graph)
    assert not cycles, "import cycles (each a set of modules that import each other): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _oversize() -> dict[tuple[str, str | None], int]:
    found = {}
    for path in _sources().values():
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        if text.count("\n") > MODULE_LINES:
            found[(rel, None)] = text.count("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_LINES:
                    found[(rel, node.name)] = lines
    return found


def test_modules_and_functions_keep_to_their_size_budget():
    found = _oversize()
    unexplained = {key: lines for key, lines in found.items() if key not in OVERSIZE}
    assert not unexplained, (f"over {MODULE_LINES} lines a module or {FUNCTION_LINES} a function, without a note in "
                             f"OVERSIZE saying why (split it, or say why not): {unexplained}")
    stale = sorted(set(OVERSIZE) - set(found), key=str)
    assert not stale, f"OVERSIZE names what is now within budget: remove {stale}"
