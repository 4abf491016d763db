"""The runtime path imports neither torch nor training code, and rtsep's modules import each other
without cycles.

What counts as an import. For cycles (test_no_import_cycles): every import statement, the lazy ones
inside functions too (a function-level import that closes a loop is a cycle that merely waits for the
call, as `langevin <-> mask_langevin` and `backends -> train.encoder -> distill -> backends` did),
except those under `if TYPE_CHECKING:`, which never run. For what a module loads when imported
(test_inference_modules_...): only statements at module level or in a module-level `if`/`try`/
`with`/class body; imports inside functions are the deliberate lazy ones (torch, onnxruntime or a
training module loaded only by the command that needs it). A submodule's implicit import of its
parent package is not an edge (a package's `__init__` that re-exports its submodules would
otherwise always be a cycle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rtsep"

RUNTIME = r"""
import sys
import numpy as np
import rtsep
sep = rtsep.Separator.load("toy4", backend="onnx", steps=2)
x = (0.1 * np.random.default_rng(0).standard_normal((1, 8000))).astype(np.float32)
stems = sep.separate(x, 16000)
assert stems.shape == (4, 1, 8000) and abs(stems.sum(0) - x).max() < 1e-4
import rtsep.live  # the live session and devices, as `rtsep live` loads them
from rtsep.cli import main
sys.argv = ["rtsep", "file", sys.argv[1], "-o", sys.argv[2], "--model", "toy4"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "rtsep.train")))
print("LOADED", bad)
"""


def test_onnx_runtime_path_imports_no_torch_and_no_training(tmp_path):
    proc = subprocess.run([sys.executable, "-c", RUNTIME, str(ROOT / "examples" / "music4-mix.wav"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout, proc.stdout[-2000:]
    assert sorted(p.name for p in (tmp_path / "out" / "music4-mix").iterdir()) == [
        "saw.wav", "sine.wav", "square.wav", "triangle.wav"]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run at import time (see the module doc)."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            todo += ([] if _is_type_checking(node.test) else node.body) + node.orelse
        elif isinstance(node, (ast.Try, ast.With, ast.ClassDef)):
            todo += node.body
            for extra in ("handlers", "orelse", "finalbody"):
                for item in getattr(node, extra, []):
                    todo += item.body if isinstance(item, ast.ExceptHandler) else [item]
    return out


def every_import(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions too, except under `if TYPE_CHECKING:`."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
        else:
            todo += ast.iter_child_nodes(node)
    return out


def import_graph(package: Path = PACKAGE, lazy: bool = True) -> dict[str, set[str]]:
    """Module -> the rtsep modules it imports (`lazy`: function-level imports too)."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        for node in every_import(tree) if lazy else module_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                # `from X import y` imports X, and X.y too when y is a submodule
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_walker_sees_imports_and_cycles():
    graph = import_graph()
    assert "rtsep.card" in graph["rtsep.bundle"] and "rtsep.langevin.config" in graph["rtsep.langevin.chain"]
    assert "rtsep.backends" in graph["rtsep.separator"]  # a lazy import inside Separator.load
    assert "rtsep.backends" not in import_graph(lazy=False)["rtsep.separator"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_inference_modules_do_not_import_training_or_torch_at_import_time():
    graph = import_graph(lazy=False)
    runtime = ["rtsep.separator", "rtsep.bundle", "rtsep.engine", "rtsep.onnx_backend", "rtsep.runtime",
               "rtsep.langevin", "rtsep.audio", "rtsep.bands", "rtsep.card", "rtsep.progress"]
    seen, todo = set(), list(runtime)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    assert not [m for m in seen if m.startswith(("rtsep.train", "rtsep.nn", "rtsep.backends", "rtsep.export"))], seen
    for m in seen:
        path = PACKAGE.parent / (m.replace(".", "/") + ".py")
        path = path if path.exists() else path.with_suffix("") / "__init__.py"
        names = {a.name.split(".")[0] for n in module_level_imports(ast.parse(path.read_text()))
                 for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
        assert "torch" not in names, m
