"""The import structure of cotscale: no import circles among its modules, and the pure parts of cotscale.lm import
without lm-eval.

The graph is built from the source with ``ast`` (every ``import`` statement, function-level ones included), not by
importing anything, so a circle hidden in a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """{module: the cotscale modules it imports} for every module under src/cotscale. ``from a import b`` imports
    ``a.b`` when that is a module, else ``a``; importing ``a.b.c`` also runs the packages ``a`` and ``a.b`` (those
    that are not already the importer's own packages)."""
    files = {module_name(p, src): p for p in (src / "cotscale").rglob("*.py")}
    packages = {name for name, p in files.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        own = name if name in packages else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x / from .m import y
                    base = ".".join([*own.split(".")[:len(own.split(".")) - node.level + 1], *filter(None, [base])])
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        edges = set()
        for target in targets:
            if target not in files:
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                step = ".".join(parts[:i])
                if step in files and step != name and not (own == step or own.startswith(step + ".")):
                    edges.add(step)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_planted_circle(tmp_path):
    # a hand-made package: a -> b (function-level import) -> a is a circle; c imports a and is not in it
    pkg = tmp_path / "cotscale"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cotscale import b\n")
    (pkg / "b.py").write_text("def f():\n    from cotscale.a import x\n")
    (pkg / "c.py").write_text("import cotscale.a\n")
    graph = import_graph(tmp_path)
    assert graph == {"cotscale": set(), "cotscale.a": {"cotscale.b"}, "cotscale.b": {"cotscale.a"},
                     "cotscale.c": {"cotscale.a"}}
    assert cycles(graph) == [["cotscale.a", "cotscale.b"]]


def test_no_import_circles():
    graph = import_graph()
    assert "cotscale.lm.model" in graph and len(graph) > 30  # the whole package was read
    assert cycles(graph) == []


def test_lm_modules_take_the_exception_from_the_errors_module():
    """No cotscale.lm module imports the config loader just for CotscaleError."""
    graph = import_graph()
    users = sorted(name for name, edges in graph.items() if name.startswith("cotscale.lm") and "cotscale.config" in
                   edges)
    assert users == ["cotscale.lm.model"]  # the adapter: strategy names of the configuration (resolve_strategy)


def test_pure_lm_modules_import_without_lm_eval():
    pure = ["cotscale.lm", "cotscale.lm.hybrid", "cotscale.lm.thinking", "cotscale.lm.tokens", "cotscale.lm.beam",
            "cotscale.lm.prompts", "cotscale.lm.records", "cotscale.lm.capture", "cotscale.compat", "cotscale.scaling"]
    code = (f"import sys\nfor m in {pure!r}:\n    __import__(m)\n"
            "heavy = sorted(m for m in ('lm_eval', 'torch', 'transformers', 'vllm') if m in sys.modules)\n"
            "print(','.join(heavy))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""


MAX_LINES = 500  # a module above this says why in its docstring, on a line that starts with "Length:"


def long_modules_without_a_reason(src: Path = SRC) -> list[str]:
    found = []
    for path in sorted((src / "cotscale").rglob("*.py")):
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if len(text.splitlines()) > MAX_LINES and not any(line.startswith("Length:") for line in doc.splitlines()):
            found.append(module_name(path, src))
    return found


def test_the_length_check_finds_a_long_module(tmp_path):
    (tmp_path / "cotscale").mkdir()
    (tmp_path / "cotscale/short.py").write_text('"""Short."""\n')
    (tmp_path / "cotscale/long.py").write_text('"""Long, no reason."""\n' + "x = 1\n" * MAX_LINES)
    said = '"""Long.\n\nLength: one table per function."""\n'
    (tmp_path / "cotscale/said.py").write_text(said + "x = 1\n" * MAX_LINES)
    assert long_modules_without_a_reason(tmp_path) == ["cotscale.long"]


def test_modules_above_the_length_limit_say_why():
    assert long_modules_without_a_reason() == []
