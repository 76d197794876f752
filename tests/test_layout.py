"""The layout of kft/ (issue 21): no import circle, a few top-level modules, each subpackage importing only what its
``__init__`` docstring's "May import:" line allows, gradio only in kft/ui. Read from the source with ``ast``: every
import counts, those inside functions and under TYPE_CHECKING included."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

KFT = Path(__file__).resolve().parents[1] / "kft"
MAX_TOP_LEVEL_MODULES = 6
GUI = "kft.ui"  # the one subpackage that may import gradio


def _name(path: Path) -> str:
    """The dotted module name of a file under kft/ (a package by its own name)."""
    parts = path.relative_to(KFT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(KFT.rglob("*.py")) if "__pycache__" not in p.parts}


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The package a ``from ... import`` names, relative levels resolved against ``module``."""
    if not node.level:
        return node.module or ""
    is_package = modules()[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(module: str) -> list[str]:
    """Every module name ``module`` imports, anywhere in its file (kft and the rest)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(modules()[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = _absolute(module, node)
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg (its __init__)
            out += [f"{package}.{a.name}" if f"{package}.{a.name}" in modules() else package for a in node.names]
    return out


def kft_imports(module: str) -> set[str]:
    """The kft modules ``module`` imports, each resolved to the module (or package __init__) it names."""
    out = set()
    for name in imported_names(module):
        while name and name not in modules():  # ``import kft.x.y`` of a name inside a module: that module
            name = name.rpartition(".")[0]
        if name.startswith("kft"):
            out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    return {m: kft_imports(m) for m in modules()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, and modules that import themselves (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def subpackages() -> list[str]:
    """kft's direct subpackages (kft.config, kft.ui, ...): whatever holds an __init__.py, none named here."""
    return sorted(_name(p.parent) for p in KFT.glob("*/__init__.py"))


def layer_of(module: str) -> str | None:
    """The direct subpackage of kft that ``module`` lies in (None for kft's top-level modules)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in subpackages() else None


def may_import(package: str) -> set[str]:
    """The subpackages the "May import:" line of ``package``'s docstring names ("nothing" for none)."""
    doc = ast.get_docstring(ast.parse(modules()[package].read_text(encoding="utf-8"))) or ""
    lines = [line for line in doc.splitlines() if line.startswith("May import:")]
    assert len(lines) == 1, f"{package}/__init__.py: its docstring needs one line 'May import: kft.x, kft.y.'"
    listed = lines[0].removeprefix("May import:").strip().removesuffix(".")
    if listed == "nothing":
        return set()
    names = {name.strip() for name in listed.split(",")}
    unknown = sorted(n for n in names if n not in subpackages())
    assert not unknown, f"{package}: 'May import:' names {unknown}, not subpackages of kft ({subpackages()})"
    return names


# ---- the resolver itself, on the cases the layout relies on ----------------------------------------------------
def test_relative_imports_resolve_to_the_module_or_package_they_name():
    assert "kft.services" in kft_imports("kft.ui.tab")  # from ..services import Workspace: the package __init__
    assert "kft.ui.plots" in kft_imports("kft.ui.train_tab")  # from . import plots: the module
    assert "kft.config.args" in kft_imports("kft.ui.train_form")  # from ..config.args import ...
    assert "kft.training.watch" in kft_imports("kft.training.job")  # an import inside a method counts
    assert "kft.services.limits" in kft_imports("kft.services")  # a package's __init__: from .limits import Limits
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"c"}, "d": {"a"}}) == [["a", "b"], ["c"]]


# ---- the layout ------------------------------------------------------------------------------------------------
def test_no_import_circle_anywhere_in_kft():
    edges = graph()
    assert sum(map(len, edges.values())) > 100  # the graph was read (a resolver that found nothing would pass)
    assert cycles(edges) == []


def test_kft_holds_at_most_six_top_level_modules():
    top = sorted(p.name for p in KFT.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_subpackage_imports_only_itself_and_what_its_docstring_allows():
    assert {"kft.config", "kft.services", "kft.ui"} <= set(subpackages())
    wrong = []
    for package in subpackages():
        allowed = may_import(package) | {package}
        for module in (m for m in modules() if layer_of(m) == package):
            for target in sorted(kft_imports(module)):
                if layer_of(target) not in allowed:
                    wrong.append(f"{module} imports {target} ({package} may import: {sorted(allowed - {package})})")
    assert not wrong, "\n".join(wrong)


def test_nothing_outside_kft_ui_imports_gradio():
    wrong = [m for m in modules() if layer_of(m) != GUI
             for name in imported_names(m) if re.match(r"gradio(_client)?(\.|$)", name)]
    assert not wrong
    assert any(name.startswith("gradio") for name in imported_names("kft.ui.app"))  # the check can see one


def test_every_package_is_in_pyproject_so_an_install_carries_it():
    tomllib = pytest.importorskip("tomllib")
    listed = tomllib.loads((KFT.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    packages = sorted(_name(p.parent) for p in KFT.rglob("__init__.py") if "__pycache__" not in p.parts)
    assert sorted(listed) == packages
