"""The structure a newcomer can rely on: one-way dependencies, no cycles, small modules, one kind table."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"lsdebm": ROOT / "src" / "lsdebm", "napari_lsdebm": ROOT / "plugin" / "napari_lsdebm"}
MAX_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in PACKAGES.items():
        for f in root.rglob("*.py"):
            parts = f.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports, at module level or inside functions."""
    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            r = resolve(t)
            if r is not None and r != name and not name.startswith(r + "."):  # a package's own __init__
                found.add(r)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_even_inside_functions():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("import-linter is not installed (scripts/setup.sh installs it)")
    proc = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_contracts_catch_a_wrong_way_import(tmp_path):
    """The layers contract is live: a data module importing the CLI is reported."""
    from importlinter.contracts.layers import LayersContract  # noqa: F401 - the contract type used above

    bad = PACKAGES["lsdebm"] / "data" / "_architecture_probe.py"
    bad.write_text("from lsdebm.cli import main  # deliberately wrong-way\n")
    try:
        lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
        proc = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], capture_output=True,
                              text=True, cwd=ROOT)
    finally:
        bad.unlink()
    assert proc.returncode != 0 and "lsdebm.data._architecture_probe" in proc.stdout


def test_no_module_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_function_over_60_lines():
    """Every function and method in src/ and plugin/ (docstring included, decorators not) fits one screen."""
    offenders = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({n} lines)")
    assert offenders == [], f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(sorted(offenders))


KINDS = r"(lsdebm|vae|lebm|reconnet|ebm|pixel_ebm)"
KIND_BRANCH = re.compile(rf"""kind\s*(==|!=)\s*["']{KINDS}["']|["']{KINDS}["']\s*(==|!=)\s*[\w.]*kind\b"""
                         rf"""|(?<!for )kind\s+(not\s+)?in\s*[(\[{{]\s*["']{KINDS}["']""")


def test_kind_is_compared_only_in_the_registry_and_methods():
    allowed = ("lsdebm.nn.registry", "lsdebm.methods")
    offenders = []
    for name, path in modules().items():
        if name.startswith(allowed):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if KIND_BRANCH.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed (scripts/setup.sh installs it)")
    proc = subprocess.run([ruff, "check", "src", "plugin", "tests", "benchmarks", "examples", "scripts"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:]
