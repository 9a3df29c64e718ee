"""The shape of the package: no import cycle among cecheck's modules, and small modules.

The import graph is read from the source with :mod:`ast` (nothing is imported): an edge for
every ``import`` statement that runs when its module is imported, that is at module level,
inside ``if``/``try`` blocks too, but not under ``if TYPE_CHECKING:`` (annotations only) and
not inside a function (an import deferred to the call).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cecheck"

# Modules allowed above MAX_LINES, each with the reason (none today). Remove an entry when
# its module is split (the test below fails on a stale entry).
MAX_LINES = 500
TOO_LONG: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``body`` that run with it (not in functions or classes)."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += _run_time_imports(node.body)
            out += _run_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                out += _run_time_imports(block)
            for handler in node.handlers:
                out += _run_time_imports(handler.body)
        elif isinstance(node, ast.With):
            out += _run_time_imports(node.body)
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The cecheck modules that importing ``name`` imports directly."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _run_time_imports(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from a import b``: the module a.b if there is one, else a name of a
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        out |= {t for t in targets if t in known and t != name}
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported_modules(name, path, known) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_finds_a_cycle() -> None:
    """The cycle finder itself, on a graph with a cycle and one without."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_reads_every_form_of_import() -> None:
    graph = import_graph()
    assert "cecheck.pipeline" in graph["cecheck.engine"]  # from cecheck import pipeline
    assert "cecheck.settings" in graph["cecheck.engine"]  # from cecheck.settings import ...
    assert "cecheck.frameworks.probs" in graph["cecheck.frameworks"]  # a package's own modules
    assert "cecheck.engine" not in graph["cecheck.rows"]  # under TYPE_CHECKING only


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_even_for_annotations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stricter: the imports under ``if TYPE_CHECKING:`` make no cycle either."""
    monkeypatch.setattr(sys.modules[__name__], "_is_type_checking", lambda test: False)
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_settings_are_at_the_bottom() -> None:
    """Everything takes Settings from cecheck.settings, which imports only precision and the
    import-free names of cecheck.choices."""
    graph = import_graph()
    assert graph["cecheck.settings"] <= {"cecheck.precision", "cecheck.errors", "cecheck.choices"}
    assert not graph["cecheck.choices"]


def test_renderers_do_not_import_the_engine() -> None:
    graph = import_graph()
    below: set[str] = set()
    todo = [m for m in graph if m.startswith(("cecheck.output", "cecheck.trace_render"))]
    while todo:
        m = todo.pop()
        if m not in below:
            below.add(m)
            todo += graph[m]
    assert not below & {"cecheck.engine", "cecheck.pipeline", "cecheck.pathsets", "cecheck.fast"}


def test_modules_are_short() -> None:
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()
    }
    long = {name for name, n in lengths.items() if n > MAX_LINES}
    assert long <= set(TOO_LONG), {name: lengths[name] for name in long - set(TOO_LONG)}
    stale = {name for name in TOO_LONG if lengths.get(name, 0) <= MAX_LINES}
    assert not stale, f"{sorted(stale)} are short now: remove them from TOO_LONG"
