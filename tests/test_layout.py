"""The layout keeps its design: the core knows nothing of the app, has no import cycle, and draws
figures in one module; the app's state package knows nothing of the pages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450
LONG_ON_PURPOSE = {"yapo_core/demo/corpus.py"}  # the demo world's text tables: data, not logic


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions; relative imports resolved."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known)
    return found


def graph(package: str) -> dict[str, set[str]]:
    mods = modules(package)
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_the_core_imports_neither_gradio_nor_the_app():
    for name, imported in graph("yapo_core").items():
        bad = {m for m in imported if m.split(".")[0] in ("gradio", "pages", "yapo_studio", "app", "spaces")}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_plotly_is_imported_by_the_figure_module_only():
    users = {name for name, imported in graph("yapo_core").items() if any(m.split(".")[0] == "plotly" for m in imported)}
    assert users == {"yapo_core.plots"}


def test_the_app_state_does_not_import_the_pages_or_gradio():
    for name, imported in graph("yapo_studio").items():
        bad = {m for m in imported if m.split(".")[0] in ("gradio", "pages", "app")}
        assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("package", ["yapo_core", "yapo_studio"])
def test_no_import_cycle(package):
    imports = graph(package)
    # A module's own parent packages are imported before it in any case (``from . import x``
    # names the parent only to reach x): such edges are not dependencies.
    edges = {name: {m for m in imported if m in imports and m != name and not name.startswith(m + ".")}
             for name, imported in imports.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_a_cycle_would_be_found(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from .b import g\n")
    (tmp_path / "pkg" / "b.py").write_text("from . import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="import cycle: pkg.a -> pkg.b -> pkg.a"):
        test_no_import_cycle("pkg")


@pytest.mark.parametrize("package", ["yapo_core", "yapo_studio", "pages"])
def test_modules_stay_small(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert rel in LONG_ON_PURPOSE or n <= MAX_LINES, f"{rel} has {n} lines (at most {MAX_LINES}); split it by idea"


def test_the_code_passes_the_projects_ruff_configuration():
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency (requirements-dev.txt)"
    result = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
