"""The package layout's rules, checked on the source (no imports run): dependencies point one way, no circles.

Layers, bottom to top (README "Layout"):
  core        udfd/*.py and udfd/detectors/ : contracts, media path, detectors, pipeline
  rooms       udfd/feedback/, udfd/evaluation/ : use the core
  edges       udfd/bench/, udfd/cli/, udfd/ui/ (and app.py, training/) : use everything below
The library (udfd/) never imports training/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "udfd"
LAYERS = {"core": 0, "rooms": 1, "edges": 2}
ROOMS = ("feedback", "evaluation", "scan")
EDGES = ("bench", "cli", "ui")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> str:
    if module == "udfd.__main__":  # `python -m udfd`: the command line's entry point
        return "edges"
    parts = module.split(".")
    sub = parts[1] if len(parts) > 1 else ""
    return "rooms" if sub in ROOMS else "edges" if sub in EDGES else "core"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every udfd/training module this file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "training" or name in modules:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) - {module_name(f)} for f in files}


def test_dependencies_point_one_way() -> None:
    upward = [
        f"{src} ({layer(src)}) imports {dst} ({layer(dst)})"
        for src, dsts in graph().items()
        for dst in dsts
        if dst.split(".")[0] == "udfd" and LAYERS[layer(dst)] > LAYERS[layer(src)]
        # a package's __init__ may re-export its own modules
        and not dst.startswith(src + ".")
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_rooms_do_not_import_each_other() -> None:
    crossing = [f"{src} imports {dst}" for src, dsts in graph().items() for dst in dsts
                if layer(src) == layer(dst) == "rooms" and src.split(".")[1] != dst.split(".")[1]]
    assert not crossing, crossing


def test_library_never_imports_training() -> None:
    bad = [f"{src} imports {dst}" for src, dsts in graph().items() for dst in dsts if dst.startswith("training")]
    assert not bad, bad


def test_no_import_circles() -> None:
    g = graph()
    # A package imports its own __init__ implicitly; only explicit edges count here.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The walk is not vacuous: an upward import written into a file is found."""
    f = tmp_path / "probe.py"
    f.write_text("from udfd.cli.main import main\nimport training.retrain\n", encoding="utf-8")
    found = imports_of(f, {"udfd.cli.main"})
    assert found == {"udfd.cli.main", "training.retrain"}
    assert layer("udfd.cli.main") == "edges" and layer("udfd.pipeline") == "core"


@pytest.mark.parametrize("family_word", ["vit", "cnn", "ocvae", "lip_lstm", "clip", "mobilenet_v2", "mesonet",
                                         "timm", "ensemble", "spectrum"])
def test_nothing_outside_detectors_branches_on_a_family(family_word: str) -> None:
    """No `family == "vit"`-style branch outside udfd/detectors/ (configuration names are fine)."""
    offenders = []
    for f in PACKAGE.rglob("*.py"):
        if "detectors" in f.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value == family_word for c in [node.left, *node.comparators]
            ):
                left = ast.unparse(node.left)
                if "family" in left or "family" in ast.unparse(node):
                    offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders
