"""The package's plan, measured: import layers, flat modules, and what may import what.

The graph has one node per module (a package's node is its ``__init__``) and one edge per import
of a disviz module, at any depth of the file (a function-level import is a dependency too; an
import under ``if TYPE_CHECKING:`` is not, it never runs). An import resolves to the most specific
module it names. Layered so that every import points down, the graph's level count is its longest
path in nodes.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "disviz"

MAX_LEVELS = 11
MAX_FLAT_MODULES = 12  # modules directly in disviz/, __init__ and __main__ included


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imported_names(module: str) -> set[str]:
    """Every module name ``module`` imports (absolute, relative, top-level or inside functions)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import module` imports the module
                full = f"{source}.{alias.name}"
                names.add(full if full in MODULES else source)
    return names


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets = {_resolve(n) for n in _imported_names(module) if n == "disviz" or n.startswith("disviz.")}
        edges[module] = {t for t in targets if t is not None and t != module}
    return edges


EDGES = _edges()


def _levels() -> dict[str, int]:
    """Level of each module (1 = imports no disviz module); a cycle fails the test that calls it."""
    on_path: list[str] = []

    @cache
    def level(module: str) -> int:
        if module in on_path:
            cycle = on_path[on_path.index(module) :] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        on_path.append(module)
        try:
            return 1 + max((level(t) for t in EDGES[module]), default=0)
        finally:
            on_path.pop()

    return {m: level(m) for m in MODULES}


def _longest_chain(levels: dict[str, int]) -> list[str]:
    module = max(levels, key=levels.get)
    chain = [module]
    while EDGES[module]:
        module = max(EDGES[module], key=levels.get)
        chain.append(module)
    return chain


def test_the_import_graph_has_no_cycles_and_few_levels():
    levels = _levels()
    chain = _longest_chain(levels)
    assert max(levels.values()) <= MAX_LEVELS, f"{max(levels.values())} levels: " + " -> ".join(chain)


def test_few_modules_sit_directly_in_the_package():
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(flat) <= MAX_FLAT_MODULES, flat


def test_disviz_never_imports_streamlit():
    for module in MODULES:
        imported = _imported_names(module)
        assert not any(n == "streamlit" or n.startswith("streamlit.") for n in imported), module


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("disviz.core", ("disviz.",)),  # base helpers: nothing above them
        ("disviz.engine", ("disviz.app", "disviz.sweeps", "disviz.cli", "disviz.serving")),
        ("disviz.sweeps.spec", ("disviz.app", "disviz.cli", "disviz.serving")),
        ("disviz.sweeps.results", ("disviz.app", "disviz.cli", "disviz.serving")),
        ("disviz.sweeps.runner", ("disviz.app", "disviz.cli", "disviz.serving")),
        ("disviz.models", ("disviz.engine", "disviz.app", "disviz.sweeps", "disviz.cli")),
        ("disviz.data", ("disviz.engine", "disviz.app", "disviz.sweeps", "disviz.cli", "disviz.models")),
    ],
)
def test_layers_import_only_downwards(layer, forbidden):
    for module, targets in EDGES.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        for t in targets:
            if layer == "disviz.core" and t.startswith("disviz.core"):
                continue
            assert not t.startswith(forbidden), f"{module} imports {t}"


def test_metrics_take_numbers_and_give_numbers():
    """``disviz.metrics`` imports nothing of disviz but itself and the error classes (so a metric
    never reaches for a model, a checkpoint or the data package)."""
    for module, targets in EDGES.items():
        if module == "disviz.metrics" or module.startswith("disviz.metrics."):
            outside = {t for t in targets if not t.startswith("disviz.metrics") and t != "disviz.core.errors"}
            assert not outside, f"{module} imports {sorted(outside)}"


CARD_AS_DICT = re.compile(r"\bcard\[|\bcard\.get\(|\.card\[|\.card\.get\(")


def test_few_files_read_the_card_as_a_dict():
    """The card is typed (``disviz.engine.card``): the package, the pages and app.py read its fields."""
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"]
    touching = sorted(str(f.relative_to(ROOT)) for f in files if CARD_AS_DICT.search(f.read_text(encoding="utf-8")))
    assert len(touching) <= 3, touching
