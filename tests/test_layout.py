"""The package's shape: modules under 400 lines, functions under 60, imports down the flow (see docs/ARCHITECTURE.md)."""

import ast

import pytest

from conftest import ROOT

SOURCES = sorted((ROOT / "src" / "unetkit").rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT / "src")))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path.name} has {text.count(chr(10))} lines: split it by what it owns"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_every_subpackage_is_named_in_the_architecture_doc():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    packages = [p.parent.name for p in (ROOT / "src" / "unetkit").glob("*/__init__.py")]
    assert packages and all(f"{name}/" in doc for name in packages), packages
